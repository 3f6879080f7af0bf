//! A snapshot of the primary's counters, for `cluster.stats()` and the
//! metrics endpoint: per worker (from its link and its page) and per
//! listener (from the reactor and the kernel's accept queue). Taken on the
//! reactor thread when asked; nothing here runs per connection. The binding
//! (src/stats.rs) turns it into the JS objects js/stats.js reads.

use std::os::fd::{AsRawFd, BorrowedFd};

use crate::page::{Snapshot, HANDOFF_BOUNDS_NS, HANDOFF_BUCKETS};

#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub workers: Vec<WorkerStats>,
    pub listeners: Vec<ListenerStats>,
    /// Connections served by another worker than the one first chosen, by reason.
    pub rerouted: Rerouted,
    /// Totals of workers that are gone, so cluster-wide sums never go back.
    pub retired: Totals,
    /// Upper bounds of the hand-off histogram's buckets (ns); +Inf follows.
    pub handoff_bounds_ns: Vec<u64>,
}

#[derive(Clone, Debug, Default)]
pub struct Rerouted {
    /// Unread by a worker that exited.
    pub died: u64,
    /// Unread by a worker that started disconnecting.
    pub draining: u64,
    /// Unread by a worker whose event loop stood still.
    pub stalled: u64,
    /// Unread by a worker busy in a long callback, under `least`.
    pub busy: u64,
    /// Given back by a worker's server (closed, or at `maxConnections`).
    pub refused: u64,
    /// Given back by a worker short of fds.
    pub out_of_fds: u64,
}

/// Counters that add up across workers.
#[derive(Clone, Debug, Default)]
pub struct Totals {
    /// Connections a worker read off its hand-off channel.
    pub accepted: u64,
    pub handoff_sum_ns: u64,
    pub handoff: Vec<u64>,
}

impl Totals {
    pub fn add(&mut self, s: &Snapshot) {
        self.accepted += s.taken + s.placed;
        self.handoff_sum_ns += s.handoff_sum_ns;
        self.handoff.resize(HANDOFF_BUCKETS, 0);
        for (t, v) in self.handoff.iter_mut().zip(s.handoff) {
            *t += v;
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct WorkerStats {
    pub id: u32,
    /// False once it is disconnecting.
    pub routing: bool,
    /// Its loop stood still with connections waiting; it gets none until it turns.
    pub stalled: bool,
    /// Connections it has read.
    pub accepted: u64,
    /// Sent to it, not read yet.
    pub pending: u64,
    /// Open in its servers.
    pub active: u64,
    /// Taken back from it unread (it died, drained, stalled or ran short of fds).
    pub rerouted: u64,
    /// Given back by it (its server closed, at `maxConnections`, or short of fds).
    pub refused: u64,
    /// How far behind its event loop is: how late its timer last fired, or,
    /// if the loop has not turned for longer than that, the time since.
    pub lag_ns: u64,
    pub handoff_sum_ns: u64,
    /// Per bucket, not cumulative.
    pub handoff: Vec<u64>,
}

#[derive(Clone, Debug, Default)]
pub struct ListenerStats {
    pub id: u32,
    /// `host:port`, or the unix socket's path.
    pub address: String,
    /// Its scheduling policy's name ("none" where the workers share a socket).
    pub policy: &'static str,
    /// Who places its connections: "primary" (the primary accepts and hands
    /// each over), "kernel" (a steered group, one socket per worker) or
    /// "shared" (the workers accept on one socket).
    pub placement: &'static str,
    pub workers: Vec<u32>,
    /// Accepted by the primary: all of them under placement "primary", those
    /// it rescued from left-out sockets under "kernel"; none if "shared".
    pub accepted: Option<u64>,
    /// The kernel's accept queue: connections waiting, and its limit (TCP only).
    pub queue: Option<u32>,
    pub queue_limit: Option<u32>,
    /// Waiting in the primary: for a sticky worker's room, or a request head.
    pub waiting: usize,
    /// Sticky keys remembered.
    pub sticky_keys: usize,
}

impl Stats {
    pub fn new() -> Stats {
        Stats {
            handoff_bounds_ns: HANDOFF_BOUNDS_NS.to_vec(),
            retired: Totals {
                handoff: vec![0; HANDOFF_BUCKETS],
                ..Totals::default()
            },
            ..Stats::default()
        }
    }
}

/// The lag a page shows at `now_ns`; `every_ns` is how often the worker's
/// timer should fire.
pub fn lag_ns(s: &Snapshot, now_ns: u64, every_ns: u64) -> u64 {
    let since_turn = now_ns.saturating_sub(s.turn_ns);
    // A worker that has not turned yet (no page write) is not lagging.
    if s.turn_ns == 0 {
        return s.lag_ns;
    }
    s.lag_ns.max(since_turn.saturating_sub(every_ns))
}

/// A listening TCP socket's accept queue (length, limit), from TCP_INFO:
/// for a listener Linux reports them in `tcpi_unacked` and `tcpi_sacked`.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub fn accept_queue(fd: BorrowedFd) -> Option<(u32, u32)> {
    // SAFETY: tcp_info is plain data; all-zero is valid.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: `info` and `len` are valid out-pointers of the sizes given.
    let r = syscall!(getsockopt(
        fd.as_raw_fd(),
        libc::IPPROTO_TCP,
        libc::TCP_INFO,
        (&mut info as *mut libc::tcp_info).cast(),
        &mut len
    ));
    // Not TCP (a unix socket), or not listening (TCP_LISTEN, from linux/tcp.h).
    const TCP_LISTEN: u8 = 10;
    if r.is_err() || info.tcpi_state != TCP_LISTEN {
        return None;
    }
    Some((info.tcpi_unacked, info.tcpi_sacked))
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub fn accept_queue(_fd: BorrowedFd) -> Option<(u32, u32)> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn lag_is_the_timer_delay_or_the_time_since_the_loop_turned() {
        let s = Snapshot {
            turn_ns: 1_000,
            lag_ns: 5,
            ..Snapshot::default()
        };
        assert_eq!(lag_ns(&s, 1_050, 100), 5, "turned recently: the timer's lag");
        assert_eq!(
            lag_ns(&s, 2_000, 100),
            900,
            "stuck: how long since it turned, less the timer's period"
        );
        assert_eq!(lag_ns(&Snapshot::default(), 9_999, 100), 0, "not started yet");
    }

    #[test]
    fn a_listeners_accept_queue_is_read_from_the_kernel() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let _c: Vec<_> = (0..3)
            .map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).unwrap())
            .collect();
        std::thread::sleep(std::time::Duration::from_millis(50));
        let (queued, limit) = accept_queue(l.as_fd()).expect("a TCP listener");
        assert_eq!(queued, 3);
        assert!(limit >= 3, "limit {limit}");
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        assert_eq!(accept_queue(a.as_fd()), None, "not TCP");
    }
}
