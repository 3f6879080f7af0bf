//! The primary's side of one worker: its control channel, the connections it
//! holds but has not acknowledged, and what is waiting to be written to it.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use crate::channel::Channel;
use crate::protocol::{encode_new_conns, Conn, Decoder, MAX_BATCH};

/// A connection sent to a worker. The primary keeps its copy of the fd until
/// the worker acknowledges it: if the worker refuses it or dies first, the
/// connection goes to another worker instead of being lost.
pub struct InFlight {
    pub handle: u32,
    pub fd: OwnedFd,
    pub refused_by: Vec<u32>,
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
}

impl Link {
    pub fn new(chan: Channel) -> Link {
        Link {
            chan,
            dec: Decoder::default(),
            inflight: HashMap::new(),
            batch: Vec::new(),
            unsent: Vec::new(),
            outbox: VecDeque::new(),
            routing: true,
            greeted: false,
        }
    }

    pub fn has_room(&self, window: usize) -> bool {
        self.routing && self.greeted && !self.wants_write() && self.inflight.len() < window
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
    pub fn flush_batch(
        &mut self,
        scratch: &mut Vec<u8>,
        fds: &mut Vec<i32>,
    ) -> io::Result<Flushed> {
        while !self.batch.is_empty() {
            if self.wants_write() {
                return Ok(Flushed::Blocked(self.take_back_batch()));
            }
            let n = self.batch.len().min(MAX_BATCH);
            scratch.clear();
            fds.clear();
            encode_new_conns(scratch, &self.batch[..n]);
            fds.extend(
                self.batch[..n]
                    .iter()
                    .map(|c| self.inflight[&c.seq].fd.as_raw_fd()),
            );
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
            .filter_map(|c| self.inflight.remove(&c.seq).map(|i| (c, i)))
            .collect()
    }
}
