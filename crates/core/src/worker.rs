//! The worker's intake of connections, as a plain state machine; the libuv
//! shell in the binding (`src/worker_channel.rs`) drives it and does the I/O.
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
use std::time::{Duration, Instant};

use crate::protocol::Returned;

/// Connections are given back, and reading pauses, when an fd this close to
/// the open-files limit comes in: past the limit the kernel would drop the
/// next connection's fd instead of handing it over (`handoff::Received::Lost`).
/// Fds are numbered lowest-free-first, so a received fd near the limit means
/// few are left. The margin covers what Node opens between two reads.
pub const FD_RESERVE: u64 = 8;

/// How long a worker short of fds reads no connections before it looks again.
pub const FD_PAUSE: Duration = Duration::from_millis(20);

/// A worker's loop turns at least this often (an unref'd timer), so that the
/// primary, which watches when it last turned, can tell an idle worker from
/// a stalled one well within `primary::link::STALL`; how late that timer
/// fires is the loop's lag.
pub const TURN_AT_LEAST_EVERY: Duration = Duration::from_millis(100);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Hand it to the server in JS.
    Deliver,
    /// Send it back to the primary, which serves it elsewhere.
    GiveBack(Returned),
}

#[derive(Debug)]
pub struct Intake {
    /// The soft `RLIMIT_NOFILE` (Node raises it to the hard limit at start).
    fd_limit: u64,
    /// Server queries sent whose reply has not been read yet.
    awaiting: u32,
    paused_until: Option<Instant>,
}

impl Intake {
    pub fn new(fd_limit: u64) -> Intake {
        Intake {
            fd_limit,
            awaiting: 0,
            paused_until: None,
        }
    }

    pub fn query_sent(&mut self) {
        self.awaiting += 1;
    }

    pub fn reply_received(&mut self) {
        self.awaiting = self.awaiting.saturating_sub(1);
    }

    /// Whether to read the control channel before the next connection. The
    /// primary answers a query before it routes that server's first
    /// connection, so reading replies first means a connection never arrives
    /// for a server this worker does not know yet.
    pub fn replies_first(&self) -> bool {
        self.awaiting > 0
    }

    /// Whether to read a connection now (not while short of fds).
    pub fn may_read(&mut self, now: Instant) -> bool {
        match self.paused_until {
            Some(t) if t > now => false,
            Some(_) => {
                self.paused_until = None;
                true
            }
            None => true,
        }
    }

    /// When reading may start again, if paused.
    pub fn paused_until(&self) -> Option<Instant> {
        self.paused_until
    }

    /// A connection was read, and the kernel gave it fd number `fd`.
    pub fn received(&mut self, fd: RawFd, now: Instant) -> Step {
        if (fd as u64).saturating_add(FD_RESERVE) >= self.fd_limit {
            self.paused_until = Some(now + FD_PAUSE);
            return Step::GiveBack(Returned::OutOfFds);
        }
        Step::Deliver
    }

    /// A connection's fd was dropped by the kernel (no fd left for it).
    pub fn lost_one(&mut self, now: Instant) {
        self.paused_until = Some(now + FD_PAUSE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_delivered_while_fds_are_plenty() {
        let mut i = Intake::new(1024);
        let now = Instant::now();
        assert!(i.may_read(now));
        assert_eq!(i.received(20, now), Step::Deliver);
        assert_eq!(i.received((1024 - FD_RESERVE - 1) as RawFd, now), Step::Deliver);
    }

    #[test]
    fn near_the_fd_limit_a_connection_goes_back_and_reading_pauses() {
        let mut i = Intake::new(64);
        let now = Instant::now();
        assert_eq!(
            i.received((64 - FD_RESERVE) as RawFd, now),
            Step::GiveBack(Returned::OutOfFds)
        );
        assert!(!i.may_read(now));
        assert!(!i.may_read(now + FD_PAUSE / 2));
        assert_eq!(i.paused_until(), Some(now + FD_PAUSE));
        assert!(i.may_read(now + FD_PAUSE), "reads again once the pause is over");
        assert_eq!(i.paused_until(), None);
    }

    #[test]
    fn a_lost_fd_pauses_reading() {
        let mut i = Intake::new(64);
        let now = Instant::now();
        i.lost_one(now);
        assert!(!i.may_read(now));
        assert!(i.may_read(now + FD_PAUSE));
    }

    #[test]
    fn replies_are_read_first_while_a_query_is_unanswered() {
        let mut i = Intake::new(1024);
        assert!(!i.replies_first());
        i.query_sent();
        i.query_sent();
        i.reply_received();
        assert!(i.replies_first());
        i.reply_received();
        assert!(!i.replies_first());
        i.reply_received();
        assert!(!i.replies_first(), "a stray reply does not underflow");
    }
}
