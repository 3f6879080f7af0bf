//! How many connections wait unread in a worker's hand-off queue, and
//! whether the worker is stalled: pure accounting, fed by the counters of the
//! page it shares with the primary.

use std::time::Instant;

use crate::tuning::STALL;

#[derive(Debug)]
pub struct Window {
    sent: u64,
    taken_back: u64,
    /// The page's `taken` when last looked at.
    taken: u64,
    /// When `taken` last moved, or the queue last went from empty to not.
    progress_at: Instant,
    /// Set when connections had to be taken back from a stalled worker: when
    /// its loop had last turned, by the page. It gets nothing new until the
    /// loop turns again.
    stalled_at_turn: Option<u64>,
}

impl Window {
    pub fn new(now: Instant) -> Window {
        Window {
            sent: 0,
            taken_back: 0,
            taken: 0,
            progress_at: now,
            stalled_at_turn: None,
        }
    }

    /// Sent but neither read by the worker nor taken back. The worker's
    /// counter is trusted only as far as it is plausible.
    pub fn queued(&self) -> u64 {
        self.sent.saturating_sub(self.taken_back).saturating_sub(self.taken)
    }

    /// The worker's counters, read from the page.
    pub fn observe(&mut self, taken: u64, turn_ns: u64, now: Instant) {
        if taken != self.taken {
            self.taken = taken;
            self.progress_at = now;
        }
        if self.stalled_at_turn.is_some_and(|t| t != turn_ns) {
            self.stalled_at_turn = None;
        }
    }

    pub fn sent(&mut self, n: usize, now: Instant) {
        if self.queued() == 0 {
            self.progress_at = now;
        }
        self.sent += n as u64;
    }

    /// `n` connections were read back out of the worker's queue; `stalled_at`
    /// is when its loop last turned, if they were taken back for a stall.
    pub fn took_back(&mut self, n: usize, stalled_at: Option<u64>) {
        self.taken_back += n as u64;
        if stalled_at.is_some() {
            self.stalled_at_turn = stalled_at;
        }
    }

    pub fn is_stalled(&self) -> bool {
        self.stalled_at_turn.is_some()
    }

    /// Since when the worker has read nothing of a non-empty queue.
    pub fn waiting_since(&self) -> Option<Instant> {
        (self.queued() > 0).then_some(self.progress_at)
    }

    /// When, if nothing moves, its queue counts as stalled.
    pub fn stall_deadline(&self) -> Option<Instant> {
        self.waiting_since().map(|t| t + STALL)
    }

    /// Room for one more, counting `pending` assigned but not yet sent.
    pub fn has_room(&self, window: usize, pending: usize) -> bool {
        !self.is_stalled() && self.queued() + (pending as u64) < window as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_window_counts_what_waits_unread() {
        let t0 = Instant::now();
        let mut w = Window::new(t0);
        assert!(w.has_room(2, 0));
        w.sent(2, t0);
        assert_eq!(w.queued(), 2);
        assert!(!w.has_room(2, 0), "a full window");
        w.observe(1, 0, t0);
        assert!(w.has_room(2, 0));
        assert!(!w.has_room(2, 1), "assigned but unsent counts");
        w.took_back(1, None);
        assert_eq!(w.queued(), 0);
        w.observe(1_000, 0, t0);
        assert_eq!(w.queued(), 0, "an implausible count never underflows");
    }

    #[test]
    fn a_queue_that_does_not_move_is_stalled_until_the_loop_turns() {
        let t0 = Instant::now();
        let mut w = Window::new(t0);
        assert_eq!(w.stall_deadline(), None, "nothing queued, nothing to stall");
        w.sent(3, t0);
        assert_eq!(w.stall_deadline(), Some(t0 + STALL));
        let t1 = t0 + STALL / 2;
        w.observe(1, 7, t1);
        assert_eq!(w.stall_deadline(), Some(t1 + STALL), "progress moves the deadline");
        w.took_back(2, Some(7));
        assert!(w.is_stalled());
        assert!(!w.has_room(8, 0));
        w.observe(1, 7, t1 + STALL);
        assert!(w.is_stalled(), "the loop has not turned");
        w.observe(1, 8, t1 + STALL);
        assert!(!w.is_stalled());
        assert!(w.has_room(8, 0));
    }

    #[test]
    fn sending_to_an_idle_worker_starts_its_clock() {
        let t0 = Instant::now();
        let mut w = Window::new(t0);
        let later = t0 + Duration::from_secs(5);
        w.sent(1, later);
        assert_eq!(w.stall_deadline(), Some(later + STALL));
    }
}
