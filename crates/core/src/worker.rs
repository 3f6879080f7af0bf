//! The worker's intake of connections, as a plain state machine: it decides,
//! the libuv shell in the binding (`src/worker_shell.rs`) carries out. Time
//! comes in as `CLOCK_MONOTONIC` ns (`page::monotonic_ns`), so every rule
//! here is tested without a clock, a loop or a socket.
//!
//! A connection's life on the worker side: queued in the hand-off channel
//! (still the primary's to take back) → read, one per loop turn (now this
//! worker's: counted in the shared page) → handed to Node's `onconnection`,
//! or given back to the primary when this worker cannot take it.
//!
//! One per loop turn: what sits unread in the channel is taken back by the
//! primary if this worker's loop stalls, so reading only what it is about to
//! serve means a stall strands at most the connection read just before it,
//! the same bound as node:cluster's one-at-a-time hand-off.

use std::os::fd::RawFd;

use crate::protocol::Returned;
use crate::tuning::{FD_PAUSE, FD_RESERVE, TURN_AT_LEAST_EVERY};

const FD_PAUSE_NS: u64 = FD_PAUSE.as_nanos() as u64;
const TURN_NS: u64 = TURN_AT_LEAST_EVERY.as_nanos() as u64;

/// What to do now that the hand-off channel is readable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Turn {
    /// Read the control channel dry first. The primary answers a query
    /// before it routes that server's first connection, so reading replies
    /// first means a connection never arrives for a server this worker does
    /// not know yet.
    pub replies_first: bool,
    /// Read one connection (not while short of fds).
    pub read_one: bool,
}

/// What one read of the hand-off channel brought.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Got {
    /// A connection, which the kernel gave fd number `fd` here.
    Conn {
        fd: RawFd,
    },
    /// A connection whose fd the kernel dropped (no fd left for it here).
    Lost,
    Empty,
    /// The primary closed the channel: nothing more will come.
    Closed,
}

impl Got {
    /// A connection came off the channel: this worker's now, counted as
    /// taken in the page even if its fd was lost or it goes back.
    pub fn is_connection(self) -> bool {
        matches!(self, Got::Conn { .. } | Got::Lost)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Hand it to the server in JS.
    Deliver,
    /// Send it back to the primary, which serves it elsewhere.
    GiveBack(Returned),
    /// Nothing to hand over.
    Nothing,
}

/// What became of a connection handed to JS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handed {
    /// A server took it, this long after the primary accepted it.
    Opened { latency_ns: u64 },
    /// No server took it (closed here, or at `maxConnections`).
    GiveBack(Returned),
}

#[derive(Debug)]
pub struct Intake {
    /// The soft `RLIMIT_NOFILE` (Node raises it to the hard limit at start).
    fd_limit: u64,
    /// Server queries sent whose reply has not been read yet.
    awaiting: u32,
    /// Short of fds: no reading before then.
    paused_until: Option<u64>,
    /// The hand-off channel exists (after the primary's setup) and has not ended.
    open: bool,
    /// Whether the hand-off channel is to be polled now.
    reading: bool,
    /// JS's wrapping counts of closed and of kernel-placed connections, as
    /// last counted.
    closed_seen: u32,
    placed_seen: u32,
    /// When the turn timer should fire next.
    timer_due_ns: u64,
}

impl Intake {
    pub fn new(fd_limit: u64, now_ns: u64) -> Intake {
        Intake {
            fd_limit,
            awaiting: 0,
            paused_until: None,
            open: false,
            reading: false,
            closed_seen: 0,
            placed_seen: 0,
            timer_due_ns: now_ns + TURN_NS,
        }
    }

    /// Every this many ms the shell's timer fires (`on_timer`).
    pub fn timer_period_ms() -> u64 {
        TURN_AT_LEAST_EVERY.as_millis() as u64
    }

    pub fn query_sent(&mut self) {
        self.awaiting += 1;
    }

    pub fn reply_received(&mut self) {
        self.awaiting = self.awaiting.saturating_sub(1);
    }

    /// The primary's setup brought the hand-off channel: reading starts.
    pub fn set_up(&mut self) {
        self.open = true;
        self.reading = true;
    }

    /// Whether the hand-off channel is to be polled now; the shell starts or
    /// stops its poll to match after each event.
    pub fn reading(&self) -> bool {
        self.reading
    }

    /// The hand-off channel is readable.
    pub fn on_readable(&mut self, now_ns: u64) -> Turn {
        let read_one = match self.paused_until {
            Some(t) if t > now_ns => false,
            _ => {
                self.paused_until = None;
                true
            }
        };
        self.reading = read_one && self.open;
        Turn {
            replies_first: self.awaiting > 0,
            read_one: self.reading,
        }
    }

    /// One read of the hand-off channel brought `got`. Every connection read,
    /// even one lost or given back, is this worker's to count as taken.
    pub fn on_read(&mut self, got: Got, now_ns: u64) -> Step {
        match got {
            Got::Conn { fd } if (fd as u64).saturating_add(FD_RESERVE) >= self.fd_limit => {
                self.pause(now_ns);
                Step::GiveBack(Returned::OutOfFds)
            }
            Got::Conn { .. } => Step::Deliver,
            Got::Lost => {
                self.pause(now_ns);
                Step::Nothing
            }
            Got::Empty => Step::Nothing,
            Got::Closed => {
                self.open = false;
                self.reading = false;
                Step::Nothing
            }
        }
    }

    fn pause(&mut self, now_ns: u64) {
        self.paused_until = Some(now_ns + FD_PAUSE_NS);
        self.reading = false;
    }

    /// JS was handed a connection the primary accepted at `accepted_ns`;
    /// `taken` says whether one of its servers took the fd.
    pub fn on_handed(&self, taken: bool, accepted_ns: u64, now_ns: u64) -> Handed {
        if taken {
            Handed::Opened {
                latency_ns: now_ns.saturating_sub(accepted_ns),
            }
        } else {
            Handed::GiveBack(Returned::Refused)
        }
    }

    /// Once per loop turn: JS's wrapping counts of closed connections and
    /// of connections its servers accepted from kernel-placed sockets read
    /// `closed` and `placed`; returns how many of each since the last turn.
    pub fn on_turn(&mut self, closed: i32, placed: i32) -> (u32, u32) {
        (
            since(closed, &mut self.closed_seen),
            since(placed, &mut self.placed_seen),
        )
    }

    /// The turn timer fired: returns how late (the loop's lag), and resumes
    /// reading if a pause is over.
    pub fn on_timer(&mut self, now_ns: u64) -> u64 {
        let lag = now_ns.saturating_sub(self.timer_due_ns);
        self.timer_due_ns = now_ns + TURN_NS;
        if self.open && !self.reading && self.paused_until.is_none_or(|t| t <= now_ns) {
            self.paused_until = None;
            self.reading = true;
        }
        lag
    }
}

/// How far a wrapping counter moved since `seen`, which it then becomes.
fn since(counter: i32, seen: &mut u32) -> u32 {
    let counter = counter as u32;
    let n = counter.wrapping_sub(*seen);
    *seen = counter;
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;
    const T0: u64 = 1_000 * MS;

    fn reading(limit: u64) -> Intake {
        let mut i = Intake::new(limit, T0);
        i.set_up();
        i
    }

    const ONE: Turn = Turn {
        replies_first: false,
        read_one: true,
    };

    #[test]
    fn nothing_is_read_before_the_primary_sets_the_channel_up() {
        let mut i = Intake::new(1024, T0);
        assert!(!i.reading());
        assert!(!i.on_readable(T0).read_one);
        i.on_timer(T0 + 100 * MS);
        assert!(!i.reading(), "the timer does not start what does not exist");
        i.set_up();
        assert!(i.reading());
    }

    #[test]
    fn one_connection_per_readable_event_is_delivered_while_fds_are_plenty() {
        let mut i = reading(1024);
        assert_eq!(i.on_readable(T0), ONE);
        assert_eq!(i.on_read(Got::Conn { fd: 20 }, T0), Step::Deliver);
        assert_eq!(i.on_readable(T0), ONE);
        let last = (1024 - FD_RESERVE - 1) as RawFd;
        assert_eq!(i.on_read(Got::Conn { fd: last }, T0), Step::Deliver);
        assert_eq!(i.on_read(Got::Empty, T0), Step::Nothing);
        assert!(i.reading());
    }

    #[test]
    fn near_the_fd_limit_a_connection_goes_back_and_reading_pauses_until_the_timer_resumes_it() {
        let mut i = reading(64);
        assert_eq!(
            i.on_read(
                Got::Conn {
                    fd: (64 - FD_RESERVE) as RawFd
                },
                T0
            ),
            Step::GiveBack(Returned::OutOfFds)
        );
        assert!(!i.reading(), "the shell stops polling");
        assert!(!i.on_readable(T0 + FD_PAUSE_NS / 2).read_one);
        i.on_timer(T0 + FD_PAUSE_NS / 2);
        assert!(!i.reading(), "not before the pause is over");
        i.on_timer(T0 + FD_PAUSE_NS);
        assert!(i.reading(), "the timer resumes reading once the pause is over");
        assert_eq!(i.on_readable(T0 + FD_PAUSE_NS), ONE);
    }

    #[test]
    fn a_readable_event_after_the_pause_reads_again() {
        let mut i = reading(64);
        i.on_read(Got::Lost, T0);
        assert!(!i.reading());
        assert!(!i.on_readable(T0 + 1).read_one);
        assert_eq!(i.on_readable(T0 + FD_PAUSE_NS), ONE);
        assert!(i.reading());
    }

    #[test]
    fn a_lost_fd_pauses_reading() {
        let mut i = reading(64);
        assert_eq!(i.on_read(Got::Lost, T0), Step::Nothing);
        assert!(!i.reading());
        i.on_timer(T0 + FD_PAUSE_NS);
        assert!(i.reading());
    }

    #[test]
    fn a_closed_hand_off_channel_is_never_read_again() {
        let mut i = reading(64);
        assert_eq!(i.on_read(Got::Closed, T0), Step::Nothing);
        assert!(!i.reading());
        i.on_timer(T0 + 10 * TURN_NS);
        assert!(!i.reading());
        assert!(!i.on_readable(T0 + 10 * TURN_NS).read_one);
    }

    #[test]
    fn replies_are_read_first_while_a_query_is_unanswered() {
        let mut i = reading(1024);
        assert!(!i.on_readable(T0).replies_first);
        i.query_sent();
        i.query_sent();
        i.reply_received();
        assert!(i.on_readable(T0).replies_first);
        i.reply_received();
        assert!(!i.on_readable(T0).replies_first);
        i.reply_received();
        assert!(!i.on_readable(T0).replies_first, "a stray reply does not underflow");
    }

    #[test]
    fn a_connection_no_server_took_goes_back_refused() {
        let i = reading(1024);
        assert_eq!(i.on_handed(false, T0, T0 + MS), Handed::GiveBack(Returned::Refused));
        assert_eq!(i.on_handed(true, T0, T0 + MS), Handed::Opened { latency_ns: MS });
        assert_eq!(
            i.on_handed(true, T0 + MS, T0),
            Handed::Opened { latency_ns: 0 },
            "another process's clock reading a little ahead is no negative latency"
        );
    }

    #[test]
    fn counted_connections_are_counted_once_each_across_the_counter_wrapping() {
        let mut i = reading(1024);
        let closed = |i: &mut Intake, c| i.on_turn(c, 0).0;
        assert_eq!(closed(&mut i, 0), 0);
        assert_eq!(closed(&mut i, 3), 3);
        assert_eq!(closed(&mut i, 3), 0);
        assert_eq!(closed(&mut i, i32::MAX), (i32::MAX - 3) as u32);
        assert_eq!(closed(&mut i, i32::MIN + 1), 2, "JS's `(n + 1) | 0` wraps to negative");
        assert_eq!(closed(&mut i, -1), (i32::MAX - 1) as u32);
        assert_eq!(closed(&mut i, 1), 2);
        assert_eq!(i.on_turn(1, 5), (0, 5), "the two counts are apart");
        assert_eq!(i.on_turn(2, -1), (1, u32::MAX - 5));
    }

    #[test]
    fn the_timer_measures_how_late_it_fires() {
        let mut i = Intake::new(1024, T0);
        assert_eq!(i.on_timer(T0 + TURN_NS), 0);
        assert_eq!(i.on_timer(T0 + 2 * TURN_NS + 30 * MS), 30 * MS);
        assert_eq!(i.on_timer(T0 + 3 * TURN_NS), 0, "early is no lag");
    }
}
