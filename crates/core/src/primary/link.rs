//! The primary's side of one worker: its control channel, its hand-off
//! channel (both ends: see `handoff.rs`), the page it shares with the worker,
//! and how many connections wait unread in its queue.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, AsRawFd, IntoRawFd, OwnedFd};
use std::time::{Duration, Instant};

use crate::channel::Channel;
use crate::error::{Context, Error};
use crate::handoff::{self, Batch, Received};
use crate::page::Page;
use crate::protocol::{encode_setup, Decoder, Handoff, Returned};

use super::busy::{Busy, CpuClock};
use super::round_robin::Queued;

/// Connections unread by a worker whose loop has not taken any for this long
/// are taken back and served by another worker. A healthy worker reads one
/// every loop turn; one warming up (JIT, GC) on a busy machine can pause for
/// a good fraction of this, and taking back from it then skews the share of a
/// burst of keep-alive connections for good, hence the margin.
pub const STALL: Duration = Duration::from_millis(500);

/// How many connections wait unread in a worker's hand-off queue, and
/// whether it is stalled: pure accounting, fed by the page's counters.
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

pub struct Link {
    pub chan: Channel,
    pub dec: Decoder,
    /// The primary's end of the hand-off channel: sends connections, and
    /// receives those the worker gives back.
    handoff: OwnedFd,
    /// A copy of the worker's end, kept to take back what it has not read.
    worker_end: OwnedFd,
    pub page: Page,
    pub window: Window,
    /// Connections assigned in this round, sent together by `flush_batch`.
    pub batch: Vec<(u32, Queued)>,
    /// The hand-off socket was full: nothing more until it drains.
    pub handoff_full: bool,
    /// The tail of a control frame whose head (and fds) already went.
    unsent: Vec<u8>,
    /// Control frames waiting for the socket to drain, each owning its fds.
    outbox: VecDeque<(Vec<u8>, Vec<OwnedFd>)>,
    /// False once the worker is disconnecting: it gets no new connections
    /// or servers, but its channel is still read until it closes.
    pub routing: bool,
    pub greeted: bool,
    /// The worker gave a connection back for want of fds: nothing new until then.
    pub paused_until: Option<Instant>,
    /// Its place for sticky keys; a replacement inherits it.
    pub slot: u32,
    /// Connections taken back from it unread, and given back by it.
    pub rerouted: u64,
    pub refused: u64,
    /// Under `least`: its CPU time, and whether it is busy.
    pub cpu: Option<CpuClock>,
    pub busy: Busy,
}

impl Link {
    /// The worker's page and hand-off end go out first, before any reply.
    pub fn new(chan: Channel, slot: u32, cpu: Option<CpuClock>, now: Instant) -> Result<Link, Error> {
        let page = Page::create().during("memfd_create")?;
        let (handoff, worker_end) = handoff::pair().during("socketpair")?;
        let mut setup = Vec::new();
        encode_setup(&mut setup);
        let fds = vec![
            page.fd().try_clone().during("dup")?,
            worker_end.try_clone().during("dup")?,
        ];
        let mut link = Link {
            chan,
            dec: Decoder::refusing_fds(),
            handoff,
            worker_end,
            page,
            window: Window::new(now),
            batch: Vec::new(),
            handoff_full: false,
            unsent: Vec::new(),
            outbox: VecDeque::new(),
            routing: true,
            greeted: false,
            paused_until: None,
            slot,
            rerouted: 0,
            refused: 0,
            cpu,
            busy: Busy::default(),
        };
        link.send_control(setup, fds).during("sendmsg")?;
        Ok(link)
    }

    pub fn handoff_fd(&self) -> i32 {
        self.handoff.as_raw_fd()
    }

    pub fn observe(&mut self, now: Instant) {
        self.window.observe(self.page.taken(), self.page.turn_ns(), now);
        if self.paused_until.is_some_and(|t| t <= now) {
            self.paused_until = None;
        }
    }

    /// Whether new connections (and sticky keys) may be placed on it at all.
    pub fn placeable(&self) -> bool {
        self.routing && self.greeted && !self.window.is_stalled()
    }

    /// Its live connections, and those sent or assigned but not yet read.
    pub fn load(&self) -> u64 {
        self.page.active() + self.window.queued() + self.batch.len() as u64
    }

    /// Under `least`: busy in a long callback (see `busy.rs`).
    pub fn is_busy(&mut self, now: Instant) -> bool {
        let cpu = &self.cpu;
        self.busy.check(self.window.waiting_since(), now, || {
            cpu.as_ref().and_then(CpuClock::on_cpu_ns)
        })
    }

    pub fn has_room(&self, window: usize) -> bool {
        self.routing
            && self.greeted
            && !self.handoff_full
            && self.paused_until.is_none()
            && !self.wants_write()
            && self.window.has_room(window, self.batch.len())
    }

    /// Sends this round's connections; what the socket did not take comes
    /// back, with the error if it failed. The fds of those sent go to
    /// `to_close` (the messages hold the sockets open).
    pub fn flush_batch(
        &mut self,
        scratch: &mut Batch,
        to_close: &mut Vec<i32>,
        now: Instant,
    ) -> (Vec<(u32, Queued)>, Option<io::Error>) {
        if self.batch.is_empty() {
            return (Vec::new(), None);
        }
        scratch.clear();
        for (handle, q) in &self.batch {
            let record = Handoff {
                handle: *handle,
                seq: q.seq,
                returned: Returned::None,
                accepted_ns: q.accepted_ns,
                key: q.key,
            };
            scratch.push(&record, q.fd.as_raw_fd());
        }
        let sent = match scratch.send(self.handoff.as_fd()) {
            Ok(n) => n,
            Err(e) => return (std::mem::take(&mut self.batch), Some(e)),
        };
        self.window.sent(sent, now);
        let rest = self.batch.split_off(sent);
        to_close.extend(self.batch.drain(..).map(|(_, q)| q.fd.into_raw_fd()));
        if !rest.is_empty() {
            self.handoff_full = true;
        }
        (rest, None)
    }

    /// Reads back every connection still unread in the worker's queue.
    /// `stalled` marks the worker stalled (or busy, under `least`) until its
    /// loop turns again.
    pub fn take_back(&mut self, stalled: bool) -> Result<Vec<(Handoff, OwnedFd)>, Error> {
        let got = drain(self.worker_end.as_fd())?;
        self.rerouted += got.len() as u64;
        let turn = stalled.then(|| self.page.turn_ns());
        self.window.took_back(got.len(), turn);
        Ok(got)
    }

    /// Connections the worker gave back.
    pub fn returned(&mut self) -> Result<Vec<(Handoff, OwnedFd)>, Error> {
        let got = drain(self.handoff.as_fd())?;
        self.refused += got.len() as u64;
        Ok(got)
    }

    pub fn wants_write(&self) -> bool {
        !self.unsent.is_empty() || !self.outbox.is_empty()
    }

    fn send_tail(&mut self) -> io::Result<bool> {
        while !self.unsent.is_empty() {
            match self.chan.send(&self.unsent, &[]) {
                Ok(n) => {
                    self.unsent.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Writes what is pending: the tail of a short write, then control frames.
    pub fn flush_out(&mut self) -> io::Result<()> {
        while self.send_tail()? {
            let Some((bytes, fds)) = self.outbox.pop_front() else {
                return Ok(());
            };
            let raw: Vec<i32> = fds.iter().map(|f| f.as_raw_fd()).collect();
            match self.chan.send(&bytes, &raw) {
                Ok(n) => self.unsent.extend_from_slice(&bytes[n..]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.outbox.push_front((bytes, fds));
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    pub fn send_control(&mut self, bytes: Vec<u8>, fds: Vec<OwnedFd>) -> io::Result<()> {
        self.outbox.push_back((bytes, fds));
        self.flush_out()
    }
}

/// Every connection queued on `end`. A connection whose fd could not be
/// installed here (the primary is out of fds) is gone; the kernel closed it.
fn drain(end: std::os::fd::BorrowedFd) -> Result<Vec<(Handoff, OwnedFd)>, Error> {
    let mut got = Vec::new();
    loop {
        match handoff::recv_one(end)? {
            Received::Conn(record, fd) => got.push((record, fd)),
            Received::Lost(_) => {}
            Received::Empty | Received::Closed => return Ok(got),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
