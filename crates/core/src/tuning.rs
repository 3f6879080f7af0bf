//! Every tuning value of the core in one table, with the rules that tie them
//! together checked by the compiler. Why each value is what it is lives here;
//! what it does lives where it is used.

use std::time::Duration;

/// How many connections may wait unread in a worker's hand-off queue. Node
/// hands over one at a time, a round trip per connection. The primary rests
/// between busy rounds (`REST`), so the window must hold a round's worth of
/// connections per worker; a stalled worker does not keep them, as the
/// primary takes back whatever it has not read.
pub const DEFAULT_WINDOW: usize = 32;

/// The largest window: well within what a hand-off socket's send buffer holds.
pub const MAX_WINDOW: usize = 64;

/// After a round that handed out several connections, listeners are left
/// unread this long, so the next round finds a batch: one `sendmmsg` per
/// worker for many connections instead of a wakeup and a send for each. A
/// lone connection rests not at all. 1 ms is poll(2)'s resolution.
pub const REST: Duration = Duration::from_millis(1);

/// A round that handed out at least this many connections is followed by a
/// rest; so is one that handed out any right after a rest (still busy).
pub const BUSY_ROUND: usize = 2;

/// How often the workers' counters are looked at again while every window is
/// full (nothing else wakes the reactor when one frees up).
pub const FULL_RECHECK: Duration = Duration::from_millis(1);

/// A process short of fds stops taking connections this long: the primary
/// after EMFILE on accept (a listener stays readable, so polling it again at
/// once would spin), a worker near its limit (it gives connections back).
/// A short pause is not noticed by clients once fds free up.
pub const FD_PAUSE: Duration = Duration::from_millis(20);

/// A worker gives connections back, and pauses, when an fd this close to
/// its open-files limit comes in: past the limit the kernel would drop the
/// next connection's fd. Fds are numbered lowest-free-first, so a received
/// fd near the limit means few are left; the margin covers what Node opens
/// between two reads.
pub const FD_RESERVE: u64 = 8;

/// A worker's loop turns at least this often (an unref'd timer), so the
/// primary can tell an idle worker from a stalled one well within `STALL`;
/// how late that timer fires is the loop's lag.
pub const TURN_AT_LEAST_EVERY: Duration = Duration::from_millis(100);

/// Connections unread by a worker whose loop has not taken any for this long
/// are taken back and served by another. A worker warming up (JIT, GC) on a
/// busy machine can pause a good fraction of this; taking back from it then
/// skews the share of a burst of keep-alive connections for good.
pub const STALL: Duration = Duration::from_millis(500);

/// How often the primary looks at a kernel-placed group (`group.rs`): who
/// may take work, and whose socket's queue waits with nothing accepted.
pub const PLACED_WATCH: Duration = Duration::from_millis(50);

/// Under `least`: a worker whose queue waited this long is busy if it ran
/// meanwhile. Long enough that a worker reading one connection per loop turn
/// is never suspected; short enough that a fast request does not wait out a
/// 20 ms one.
pub const BUSY: Duration = Duration::from_millis(2);

/// Connections waiting in the primary per listener (for a sticky key's full
/// worker), at most: past this the kernel's backlog holds the rest.
pub const MAX_WAITING: usize = 1024;

/// How long a connection may take to send its first request's head when the
/// sticky key is in it. A busy client (hundreds of sessions in one process)
/// takes up to about 90 ms; keying it by address instead would break its
/// session. A silent one is keyed by its address then, holding up only itself.
pub const PEEK_WAIT: Duration = Duration::from_secs(1);

/// Connections waiting for their head per listener, at most: past this the
/// one waiting longest is keyed by its address at once, so silent clients can
/// neither stop accepting nor use up the primary's fds. socket.io opens two
/// per client at once, and hundreds of clients may open theirs together.
pub const MAX_PEEKING: usize = 1024;

/// How often a head that came in part is looked at again (its unread bytes
/// keep the socket readable, so it cannot be polled).
pub const PARTIAL_RECHECK: Duration = Duration::from_millis(1);

/// The most of a request head that is looked at for a sticky key.
pub const MAX_HEAD: usize = 8192;

/// How long a connection's refusals are remembered. Refusals are rare (a
/// server closing, or at `maxConnections`) and a refused connection is
/// offered again at once, so this only bounds the memory of served ones.
pub const REFUSALS_KEPT: Duration = Duration::from_secs(10);

/// Sticky: no worker holds more than this factor times the average load when
/// a new key is placed (consistent hashing with bounded loads).
pub const BALANCE_FACTOR: f64 = 1.25;

/// Sticky keys remembered at most (the oldest go first): far more clients
/// than a cluster has connections at once.
pub const MAX_KEYS: usize = 100_000;

const fn ms(d: Duration) -> u128 {
    d.as_millis()
}

// The rules between the values above.
const _: () = {
    assert!(DEFAULT_WINDOW >= 1 && DEFAULT_WINDOW <= MAX_WINDOW);
    // A round's worth per worker fits: a rest lasts one poll tick, and a
    // round hands out at least `BUSY_ROUND` connections.
    assert!(DEFAULT_WINDOW >= 16 * BUSY_ROUND);
    // An idle worker's loop turns several times within a stall: never
    // mistaken for a stalled one.
    assert!(ms(STALL) >= 4 * ms(TURN_AT_LEAST_EVERY));
    // A stalled socket is seen within a tenth of a stall.
    assert!(ms(PLACED_WATCH) * 10 <= ms(STALL));
    // The busy rule acts long before the stall rule would.
    assert!(ms(BUSY) * 10 <= ms(STALL));
    // Rests and rechecks are one poll tick; none outlasts a stall.
    assert!(ms(REST) <= ms(FULL_RECHECK) && ms(PARTIAL_RECHECK) == ms(REST));
    assert!(ms(FD_PAUSE) < ms(STALL));
    // Peeked connections are among those a listener may hold.
    assert!(MAX_PEEKING <= MAX_WAITING);
    // A refusal is remembered longer than any connection waits for a head.
    assert!(ms(REFUSALS_KEPT) > ms(PEEK_WAIT));
};
