//! The primary's side of one worker: its control channel, its hand-off
//! channel (both ends: see `handoff.rs`), the page it shares with the worker,
//! and how many connections wait unread in its queue. The reactor changes it
//! only through these methods.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, AsRawFd, IntoRawFd, OwnedFd};
use std::time::Instant;

use crate::channel::{Channel, Received as Read};
use crate::error::{Context, Error};
use crate::handoff::{self, Batch, Received};
use crate::page::{Page, Snapshot};
use crate::protocol::{encode_setup, Decoder, Frame, Handoff, Returned};
use crate::tuning::FD_PAUSE;

use super::acceptor::Queued;
use super::window::Window;

pub struct Link {
    chan: Channel,
    dec: Decoder,
    /// The primary's end of the hand-off channel: sends connections, and
    /// receives those the worker gives back.
    handoff: OwnedFd,
    /// A copy of the worker's end, kept to take back what it has not read.
    worker_end: OwnedFd,
    page: Page,
    window: Window,
    /// Connections assigned in this round, sent together by `flush_batch`.
    batch: Vec<(u32, Queued)>,
    /// The hand-off socket was full: nothing more until it drains.
    handoff_full: bool,
    /// The tail of a control frame whose head (and fds) already went.
    unsent: Vec<u8>,
    /// Control frames waiting for the socket to drain, each owning its fds.
    outbox: VecDeque<(Vec<u8>, Vec<OwnedFd>)>,
    /// False once the worker is disconnecting: it gets no new connections
    /// or servers, but its channel is still read until it closes.
    routing: bool,
    greeted: bool,
    /// The worker gave a connection back for want of fds: nothing new until then.
    paused_until: Option<Instant>,
    /// Its place for sticky keys; a replacement inherits it.
    slot: u32,
    /// Connections taken back from it unread, and given back by it.
    rerouted: u64,
    refused: u64,
}

impl Link {
    /// The worker's page and hand-off end go out first, before any reply.
    pub fn new(chan: Channel, slot: u32, now: Instant) -> Result<Link, Error> {
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
        };
        link.send_control(setup, fds).during("sendmsg")?;
        Ok(link)
    }

    pub fn control_fd(&self) -> i32 {
        self.chan.raw()
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

    pub fn window(&self) -> &Window {
        &self.window
    }

    pub fn page(&self) -> &Page {
        &self.page
    }

    pub fn snapshot(&self) -> Snapshot {
        self.page.snapshot()
    }

    pub fn slot(&self) -> u32 {
        self.slot
    }

    pub fn set_slot(&mut self, slot: u32) {
        self.slot = slot;
    }

    pub fn routing(&self) -> bool {
        self.routing
    }

    /// Taken back from it unread, and given back by it.
    pub fn rerouted_refused(&self) -> (u64, u64) {
        (self.rerouted, self.refused)
    }

    /// The worker is disconnecting: nothing new for it.
    pub fn stop_routing(&mut self) {
        self.routing = false;
    }

    /// Whether it said hello in this protocol version.
    pub fn greeted(&self) -> bool {
        self.greeted
    }

    pub fn greet(&mut self) {
        self.greeted = true;
    }

    /// The hand-off socket has room again.
    pub fn handoff_drained(&mut self) {
        self.handoff_full = false;
    }

    pub fn handoff_full(&self) -> bool {
        self.handoff_full
    }

    /// It gave a connection back for want of fds: nothing new for a while.
    pub fn pause(&mut self, now: Instant) {
        self.paused_until = Some(now + FD_PAUSE);
    }

    pub fn paused_until(&self) -> Option<Instant> {
        self.paused_until
    }

    /// Whether new connections (and sticky keys) may be placed on it at all.
    pub fn placeable(&self) -> bool {
        self.routing && self.greeted && !self.window.is_stalled()
    }

    /// Its live connections, and those sent or assigned but not yet read.
    pub fn load(&self) -> u64 {
        self.page.active() + self.window.queued() + self.batch.len() as u64
    }

    pub fn has_room(&self, window: usize) -> bool {
        self.routing
            && self.greeted
            && !self.handoff_full
            && self.paused_until.is_none()
            && !self.wants_write()
            && self.window.has_room(window, self.batch.len())
    }

    /// Assigns a connection of listener `handle`, sent with this round's batch.
    pub fn assign(&mut self, handle: u32, q: Queued) {
        self.batch.push((handle, q));
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
    /// `stalled` marks the worker stalled (or busy) until its loop turns again.
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

    /// Reads the control channel once into `frames`. `Ok(true)` if there may
    /// be more to read, `Ok(false)` at end of stream or once it is empty;
    /// `ended` tells which.
    pub fn read_control(&mut self, frames: &mut Vec<Frame>) -> Result<ControlRead, Error> {
        let outcome = self.chan.recv(&mut self.dec).during("recvmsg")?;
        while let Some(frame) = self.dec.next_frame()? {
            frames.push(frame);
        }
        Ok(match outcome {
            // Workers send no fds, so a short read emptied the socket:
            // another recvmsg would only say EAGAIN.
            Read::Data { drained: true } | Read::WouldBlock => ControlRead::Drained,
            Read::Data { drained: false } => ControlRead::More,
            Read::Eof => ControlRead::Ended,
        })
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

pub enum ControlRead {
    More,
    Drained,
    Ended,
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
