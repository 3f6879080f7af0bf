//! The primary's side of one worker: its control channel, the connections it
//! holds but has not acknowledged, and what is waiting to be written to it.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Instant;

use crate::board::{Board, SLOTS};

use crate::channel::Channel;
use crate::protocol::{encode_board, encode_new_conns, Conn, Decoder, MAX_BATCH};

/// A connection sent to a worker. The primary keeps its copy of the fd until
/// the worker acknowledges it: if the worker refuses it or dies first, the
/// connection goes to another worker instead of being lost.
pub struct InFlight {
    pub handle: u32,
    pub fd: OwnedFd,
    pub refused_by: Vec<u32>,
    pub slot: u16,
    pub sent_at: Instant,
}

pub enum Flushed {
    All,
    /// The socket is full: these conns were not sent and are back with the caller.
    Blocked(Vec<(Conn, InFlight)>),
}

pub struct Link {
    pub chan: Channel,
    pub dec: Decoder,
    pub inflight: HashMap<u32, InFlight>,
    /// Conns assigned in this round, sent together by `flush_batch`.
    pub batch: Vec<Conn>,
    /// The tail of a frame whose head (and fds) already went.
    unsent: Vec<u8>,
    /// Control frames waiting for the socket to drain, each owning its fd.
    outbox: VecDeque<(Vec<u8>, Option<OwnedFd>)>,
    /// False once the worker is disconnecting: it gets no new connections
    /// but its acknowledgements are still read until its channel closes.
    pub routing: bool,
    pub greeted: bool,
    pub board: Board,
    free_slots: Vec<u16>,
    /// Set when a connection had to be revoked from this worker; cleared by
    /// its next acknowledgement (a revoked connection is answered too, once
    /// the worker reads it). A stalled worker gets nothing new.
    pub stalled: bool,
}

impl Link {
    /// The worker's claim board goes out first, before any connection.
    pub fn new(chan: Channel) -> io::Result<Link> {
        let board = Board::create()?;
        let mut hello = Vec::new();
        encode_board(&mut hello);
        let board_fd = board.fd().try_clone()?;
        let mut link = Link {
            chan,
            dec: Decoder::refusing_fds(),
            inflight: HashMap::new(),
            batch: Vec::new(),
            unsent: Vec::new(),
            outbox: VecDeque::new(),
            routing: true,
            greeted: false,
            board,
            free_slots: (0..SLOTS as u16).rev().collect(),
            stalled: false,
        };
        link.send_control(hello, Some(board_fd))?;
        Ok(link)
    }

    pub fn has_room(&self, window: usize) -> bool {
        self.routing
            && self.greeted
            && !self.stalled
            && !self.wants_write()
            && !self.free_slots.is_empty()
            && self.inflight.len() < window
    }

    /// Records a connection for this round's batch; its fd stays ours until acknowledged.
    pub fn assign(&mut self, seq: u32, handle: u32, fd: OwnedFd, refused_by: Vec<u32>, now: Instant) {
        let slot = self.free_slots.pop().expect("has_room checked for a free slot");
        self.board.mark_sent(slot, seq);
        self.inflight.insert(
            seq,
            InFlight {
                handle,
                fd,
                refused_by,
                slot,
                sent_at: now,
            },
        );
        self.batch.push(Conn { handle, seq, slot });
    }

    /// The worker answered for `seq`: the slot is free again.
    pub fn settle(&mut self, seq: u32) -> Option<InFlight> {
        let inflight = self.inflight.remove(&seq)?;
        self.free_slots.push(inflight.slot);
        self.stalled = false;
        Some(inflight)
    }

    /// Takes back every connection sent before `deadline` that the worker has
    /// not claimed yet. Those it claimed in the meantime stay with it.
    pub fn revoke_older_than(&mut self, deadline: Instant, out: &mut Vec<InFlight>) {
        let stale: Vec<u32> = self
            .inflight
            .iter()
            .filter(|(_, i)| i.sent_at < deadline)
            .map(|(&seq, _)| seq)
            .collect();
        for seq in stale {
            let slot = self.inflight[&seq].slot;
            if self.board.revoke(slot, seq) {
                let inflight = self.inflight.remove(&seq).expect("listed above");
                self.free_slots.push(inflight.slot);
                self.stalled = true;
                out.push(inflight);
            }
        }
    }

    /// When the oldest unacknowledged connection was sent.
    pub fn oldest_sent(&self) -> Option<Instant> {
        self.inflight.values().map(|i| i.sent_at).min()
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
            let Some((bytes, fd)) = self.outbox.pop_front() else {
                return Ok(());
            };
            let fds: Vec<i32> = fd.iter().map(|f| f.as_raw_fd()).collect();
            match self.chan.send(&bytes, &fds) {
                Ok(n) => self.unsent.extend_from_slice(&bytes[n..]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.outbox.push_front((bytes, fd));
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    pub fn send_control(&mut self, bytes: Vec<u8>, fd: Option<OwnedFd>) -> io::Result<()> {
        self.outbox.push_back((bytes, fd));
        self.flush_out()
    }

    /// Sends this round's conns, `MAX_BATCH` per `sendmsg`.
    pub fn flush_batch(&mut self, scratch: &mut Vec<u8>, fds: &mut Vec<i32>) -> io::Result<Flushed> {
        while !self.batch.is_empty() {
            if self.wants_write() {
                return Ok(Flushed::Blocked(self.take_back_batch()));
            }
            let n = self.batch.len().min(MAX_BATCH);
            scratch.clear();
            fds.clear();
            encode_new_conns(scratch, &self.batch[..n]);
            fds.extend(self.batch[..n].iter().map(|c| self.inflight[&c.seq].fd.as_raw_fd()));
            match self.chan.send(scratch, fds) {
                Ok(sent) => {
                    self.unsent.extend_from_slice(&scratch[sent..]);
                    self.batch.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Ok(Flushed::Blocked(self.take_back_batch()));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(Flushed::All)
    }

    fn take_back_batch(&mut self) -> Vec<(Conn, InFlight)> {
        let batch = std::mem::take(&mut self.batch);
        batch
            .into_iter()
            .filter_map(|c| {
                let i = self.inflight.remove(&c.seq)?;
                self.free_slots.push(i.slot);
                Some((c, i))
            })
            .collect()
    }
}
