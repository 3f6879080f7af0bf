//! The primary's event loop, on its own thread: it accepts on round-robin
//! listeners, hands connections to workers, reads their acknowledgements and
//! answers their server queries. Nothing here touches JavaScript; the primary's
//! JS thread only sends commands (worker added, disconnecting, exited) and
//! hears about misbehaving workers.
//!
//! `poll(2)` rather than epoll: the set is a handful of fds (workers plus
//! listeners), it is rebuilt cheaply each round, and it compiles everywhere.

use std::collections::HashMap;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::channel::{Channel, Received};
use crate::error::{uv_errno, Error, ProtocolError};
use crate::protocol::{encode_reply, Ack, Frame, Outcome, Query, Reply, VERSION};

use super::handles::{Handles, Kind};
use super::link::{Flushed, Link};
use super::round_robin::{Accepted, Queued};
use super::{Command, Config, Event, EventSink, Inbox};

/// How long accepting pauses after the process ran out of fds.
const OUT_OF_FDS_PAUSE: Duration = Duration::from_millis(20);

/// A connection a worker has not even read after this long is taken back
/// and given to another worker (see `board.rs`). A healthy worker reads its
/// channel every loop turn; but one warming up (JIT, GC) on a busy machine
/// can take 100 ms or more, and revoking from it then skews the share of a
/// burst of keep-alive connections for good, hence the margin.
const STALL: Duration = Duration::from_millis(500);

/// After a round that handed out several connections, listeners and worker
/// channels are left unread this long, so that the next round finds a batch
/// instead of one connection. Why: on this kind of machine every sleep and
/// wakeup of the reactor costs about 30 µs of CPU, several times an accept,
/// and under load a wakeup per connection or per acknowledgement made the
/// reactor the busiest thing in the primary. A round that found a single
/// connection rests not at all, so a lone client sees no added latency.
const REST: Duration = Duration::from_millis(1);

/// A round that handed out at least this many connections is followed by a
/// rest; so is one that handed out any right after a rest (still busy).
const BUSY_ROUND: usize = 2;

/// The worker's end of the channel is closed: that is the worker's exit,
/// which Node reports through 'exit', not as an error.
fn peer_gone(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EPIPE | libc::ECONNRESET))
}

fn pollfd(fd: i32, events: i16) -> libc::pollfd {
    libc::pollfd { fd, events, revents: 0 }
}

enum Target {
    Wake,
    Listener(u32),
    Link(u32),
}

pub struct Reactor {
    config: Config,
    handles: Handles,
    links: HashMap<u32, Link>,
    next_seq: u32,
    sink: EventSink,
    inbox: Arc<Inbox>,
    wake_rx: UnixStream,
    scratch: Vec<u8>,
    fd_scratch: Vec<i32>,
    touched: Vec<u32>,
    /// Until when listeners and acks are left unread (see `REST`).
    rest_until: Option<Instant>,
    /// Connections handed out in this round.
    round_sent: usize,
    /// Whether the last round was followed by a rest.
    rested: bool,
}

impl Reactor {
    pub fn new(config: Config, sink: EventSink, inbox: Arc<Inbox>, wake_rx: UnixStream) -> Reactor {
        Reactor {
            config,
            handles: Handles::default(),
            links: HashMap::new(),
            next_seq: 0,
            sink,
            inbox,
            wake_rx,
            scratch: Vec::with_capacity(4096),
            fd_scratch: Vec::with_capacity(crate::protocol::MAX_BATCH),
            touched: Vec::new(),
            rest_until: None,
            round_sent: 0,
            rested: false,
        }
    }

    /// Runs until shutdown. A panic (a bug) is reported instead of silently
    /// ending the thread, so the app learns its cluster stopped routing.
    pub fn run(self) {
        let sink = self.sink.clone();
        if let Err(payload) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.run_loop())) {
            sink(Event::Fatal {
                error: Error::from_panic(payload),
            });
        }
    }

    fn run_loop(mut self) {
        let mut targets: Vec<Target> = Vec::new();
        let mut pollfds: Vec<libc::pollfd> = Vec::new();
        loop {
            let resting = self.rest_until.filter(|&t| t > Instant::now());
            let timeout = self.build_poll_set(resting, &mut targets, &mut pollfds);
            let n = unsafe { libc::poll(pollfds.as_mut_ptr(), pollfds.len() as libc::nfds_t, timeout) };
            if n < 0 {
                if io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                return;
            }
            self.round_sent = 0;
            for (t, p) in targets.iter().zip(pollfds.iter()) {
                if p.revents == 0 {
                    continue;
                }
                match *t {
                    Target::Wake => {
                        if !self.take_commands() {
                            return;
                        }
                    }
                    Target::Listener(id) => self.dispatch(id),
                    Target::Link(id) => {
                        if p.revents & libc::POLLOUT != 0 {
                            self.flush_link(id);
                        }
                        if p.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
                            self.read_link(id);
                        }
                    }
                }
            }
            self.revoke_stalled();
            self.dispatch_queued();
            if resting.is_none() {
                self.rested = self.round_sent >= BUSY_ROUND || (self.rested && self.round_sent > 0);
                if self.rested {
                    self.rest_until = Some(Instant::now() + REST);
                }
            }
        }
    }

    /// Connections unread by a stalled worker go back on their handle's queue.
    fn revoke_stalled(&mut self) {
        let Some(deadline) = Instant::now().checked_sub(STALL) else {
            return;
        };
        let mut taken = Vec::new();
        let ready = self
            .links
            .values()
            .filter(|l| l.routing && l.greeted && !l.stalled)
            .count();
        for link in self.links.values_mut() {
            // Only worth it if someone else can take them.
            let others = ready - usize::from(link.routing && link.greeted && !link.stalled);
            if others > 0 && link.oldest_sent().is_some_and(|t| t < deadline) {
                link.revoke_older_than(deadline, &mut taken);
            }
        }
        for inflight in taken {
            self.requeue(
                inflight.handle,
                Queued {
                    fd: inflight.fd,
                    refused_by: inflight.refused_by,
                },
            );
        }
    }

    /// Listeners are polled only while some worker has room, so a full
    /// window leaves connections in the kernel backlog instead of in memory.
    /// While resting, only the JS thread's commands and pending writes are
    /// watched, until `rest`'s end.
    fn build_poll_set(&self, rest: Option<Instant>, targets: &mut Vec<Target>, pollfds: &mut Vec<libc::pollfd>) -> i32 {
        targets.clear();
        pollfds.clear();
        targets.push(Target::Wake);
        pollfds.push(pollfd(self.wake_rx.as_raw_fd(), libc::POLLIN));
        let now = Instant::now();
        let mut timeout: Option<Duration> = rest.map(|until| until.saturating_duration_since(now));
        let mut wake_by = |at: Instant| {
            let d = at.saturating_duration_since(now);
            timeout = Some(timeout.map_or(d, |t| t.min(d)));
        };
        if rest.is_none() {
            for h in self.handles.map.values() {
                let Kind::RoundRobin(rr) = &h.kind else {
                    continue;
                };
                if let Some(until) = rr.paused_until.filter(|&t| t > now) {
                    wake_by(until);
                } else if rr.queue.is_empty() && self.any_room(&h.workers) {
                    targets.push(Target::Listener(h.id));
                    pollfds.push(pollfd(rr.listener_fd().as_raw_fd(), libc::POLLIN));
                }
            }
        }
        for (&id, link) in &self.links {
            let mut events = if link.wants_write() { libc::POLLOUT } else { 0 };
            if rest.is_none() {
                events |= libc::POLLIN;
                if let Some(sent) = link.oldest_sent() {
                    wake_by(sent + STALL);
                }
            }
            if events != 0 {
                targets.push(Target::Link(id));
                pollfds.push(pollfd(link.chan.raw(), events));
            }
        }
        // Rounded up (poll's unit is the millisecond), and at least 1 ms: a
        // stall deadline already past but with nobody to revoke to must not spin.
        timeout.map_or(-1, |t| t.as_micros().div_ceil(1000).max(1) as i32)
    }

    fn any_room(&self, workers: &[u32]) -> bool {
        workers
            .iter()
            .any(|w| self.links.get(w).is_some_and(|l| l.has_room(self.config.window)))
    }

    /// Returns false on shutdown.
    fn take_commands(&mut self) -> bool {
        let mut buf = [0u8; 64];
        while matches!(self.wake_rx.read(&mut buf), Ok(n) if n > 0) {}
        let commands = std::mem::take(&mut *self.inbox.commands.lock().unwrap_or_else(|p| p.into_inner()));
        for c in commands {
            match c {
                Command::AddWorker { id, fd } => match Channel::new(fd).and_then(Link::new) {
                    Ok(link) => {
                        self.links.insert(id, link);
                    }
                    // Already exited (it could not even start): its 'exit' says so.
                    Err(e) if peer_gone(&e) => {}
                    Err(e) => (self.sink)(Event::WorkerError { id, error: e.into() }),
                },
                Command::StopRouting { id } => self.stop_routing(id),
                Command::WorkerExited { id } => {
                    self.read_link(id);
                    self.drop_link(id);
                }
                Command::SetWindow { window } => self.config.window = window.clamp(1, crate::board::SLOTS),
                Command::Shutdown => return false,
            }
        }
        true
    }

    fn read_link(&mut self, id: u32) {
        let result = self.read_frames(id);
        match result {
            Ok(true) => {}
            Ok(false) => self.drop_link(id),
            Err(Error::Io(e)) if peer_gone(&e) => self.drop_link(id),
            Err(error) => {
                (self.sink)(Event::WorkerError { id, error });
                self.drop_link(id);
            }
        }
    }

    /// Reads and handles every frame available. `Ok(false)` on end of stream.
    fn read_frames(&mut self, id: u32) -> Result<bool, Error> {
        loop {
            let Some(link) = self.links.get_mut(&id) else {
                return Ok(true);
            };
            let outcome = link.chan.recv(&mut link.dec)?;
            loop {
                let Some(link) = self.links.get_mut(&id) else {
                    return Ok(true);
                };
                let Some(frame) = link.dec.next_frame()? else {
                    break;
                };
                self.on_frame(id, frame)?;
            }
            match outcome {
                // Workers send no fds, so a short read emptied the socket:
                // another recvmsg would only say EAGAIN.
                Received::Data { drained: true } | Received::WouldBlock => return Ok(true),
                Received::Data { drained: false } => continue,
                Received::Eof => return Ok(false),
            }
        }
    }

    fn on_frame(&mut self, id: u32, frame: Frame) -> Result<(), Error> {
        let link = self.links.get_mut(&id).ok_or(Error::Closed)?;
        if !link.greeted {
            return match frame {
                Frame::Hello { version } if version == VERSION => {
                    link.greeted = true;
                    Ok(())
                }
                Frame::Hello { version } => Err(ProtocolError::Version(version).into()),
                _ => Err(ProtocolError::WrongDirection.into()),
            };
        }
        match frame {
            Frame::Query(q) => self.on_query(id, q),
            Frame::Ack(acks) => self.on_acks(id, &acks),
            Frame::Close { handle } => {
                self.handles.leave(handle, id);
                Ok(())
            }
            Frame::Hello { .. } | Frame::Reply { .. } | Frame::NewConn(_) | Frame::Board(_) => {
                Err(ProtocolError::WrongDirection.into())
            }
        }
    }

    fn on_query(&mut self, id: u32, q: Query) -> Result<(), Error> {
        let link = self.links.get_mut(&id).ok_or(Error::Closed)?;
        // A disconnecting worker gets no new servers (Node ignores its query too).
        if !link.routing {
            return Ok(());
        }
        let (reply, fd) = match self.handles.get_or_create(&q, self.config.policy) {
            // The asker's own data comes back, as Node's primary answers
            // with the data of the handle it just tried to create.
            Err(e) => (
                Reply {
                    seq: q.seq,
                    errno: uv_errno(&e),
                    handle: 0,
                    shared: false,
                    sockname: None,
                    data: q.data,
                },
                None,
            ),
            Ok(h) => {
                if !h.workers.contains(&id) {
                    h.workers.push(id);
                }
                if h.data.is_null() {
                    h.data = q.data;
                }
                let fd = match &h.kind {
                    Kind::Shared(s) => Some(s.dup_for_reply()?),
                    Kind::RoundRobin(_) => None,
                };
                let reply = Reply {
                    seq: q.seq,
                    errno: 0,
                    handle: h.id,
                    shared: fd.is_some(),
                    sockname: h.sockname.clone(),
                    data: h.data.clone(),
                };
                (reply, fd)
            }
        };
        let mut bytes = Vec::new();
        encode_reply(&mut bytes, &reply);
        link.send_control(bytes, fd)?;
        Ok(())
    }

    fn on_acks(&mut self, id: u32, acks: &[Ack]) -> Result<(), Error> {
        for a in acks {
            let link = self.links.get_mut(&id).ok_or(Error::Closed)?;
            if a.outcome == Outcome::Revoked {
                link.stalled = false;
                continue;
            }
            let inflight = link
                .settle(a.seq)
                .ok_or(ProtocolError::BadBody("ack for a connection never sent"))?;
            let slot = inflight.slot;
            if a.outcome == Outcome::Accepted {
                // Our copy goes first: the worker closes last (board.rs).
                drop(inflight);
                link.board.release(slot, a.seq);
            } else {
                link.board.release(slot, a.seq);
                let mut refused_by = inflight.refused_by;
                refused_by.push(id);
                self.requeue(
                    inflight.handle,
                    Queued {
                        fd: inflight.fd,
                        refused_by,
                    },
                );
            }
        }
        Ok(())
    }

    /// Puts a connection back on its handle's queue; dropped (closed) if the
    /// handle is gone.
    fn requeue(&mut self, handle: u32, q: Queued) {
        if let Some(h) = self.handles.map.get_mut(&handle) {
            if let Kind::RoundRobin(rr) = &mut h.kind {
                rr.queue.push_back(q);
            }
        }
    }

    fn stop_routing(&mut self, id: u32) {
        let Some(link) = self.links.get_mut(&id) else {
            return;
        };
        link.routing = false;
        for h in self.handles.ids_of(id) {
            self.handles.leave(h, id);
        }
    }

    /// The worker is gone: every connection it had not claimed goes to
    /// another worker of the same server, or is closed if none is left. One
    /// it claimed but had not yet acknowledged (workers acknowledge in
    /// batches) may already have been read, so it is closed, not re-routed:
    /// the same fate as the connections it had acknowledged.
    fn drop_link(&mut self, id: u32) {
        for h in self.handles.ids_of(id) {
            self.handles.leave(h, id);
        }
        let Some(link) = self.links.remove(&id) else {
            return;
        };
        for (seq, inflight) in link.inflight {
            if !link.board.revoke(inflight.slot, seq) {
                continue;
            }
            self.requeue(
                inflight.handle,
                Queued {
                    fd: inflight.fd,
                    refused_by: inflight.refused_by,
                },
            );
        }
    }

    fn flush_link(&mut self, id: u32) {
        let Some(link) = self.links.get_mut(&id) else {
            return;
        };
        if let Err(error) = link.flush_out() {
            self.fail_link(id, error);
        }
    }

    fn fail_link(&mut self, id: u32, error: io::Error) {
        if !peer_gone(&error) {
            (self.sink)(Event::WorkerError {
                id,
                error: error.into(),
            });
        }
        self.drop_link(id);
    }

    fn dispatch_queued(&mut self) {
        let queued: Vec<u32> = self
            .handles
            .map
            .values()
            .filter(|h| matches!(&h.kind, Kind::RoundRobin(rr) if !rr.queue.is_empty()))
            .map(|h| h.id)
            .collect();
        for id in queued {
            self.dispatch(id);
        }
    }

    /// Hands out queued connections, then accepts new ones while some worker
    /// has room, and sends each worker its batch in one `sendmsg`.
    fn dispatch(&mut self, id: u32) {
        let window = self.config.window;
        let Some(h) = self.handles.map.get_mut(&id) else {
            return;
        };
        let Kind::RoundRobin(rr) = &mut h.kind else {
            return;
        };
        let links = &mut self.links;
        let touched = &mut self.touched;
        let round_sent = &mut self.round_sent;
        let now = Instant::now();
        let mut assign = |links: &mut HashMap<u32, Link>, w: u32, fd, refused_by, seq: &mut u32| {
            *seq = seq.wrapping_add(1);
            *round_sent += 1;
            let link = links.get_mut(&w).expect("picked workers have links");
            link.assign(*seq, id, fd, refused_by, now);
            if !touched.contains(&w) {
                touched.push(w);
            }
        };
        while let Some(q) = rr.queue.pop_front() {
            if h.workers.iter().all(|w| q.refused_by.contains(w)) {
                continue;
            }
            let pick = rr.pick(&h.workers, |w| {
                !q.refused_by.contains(&w) && links.get(&w).is_some_and(|l| l.has_room(window))
            });
            let Some(w) = pick else {
                rr.queue.push_front(q);
                break;
            };
            assign(links, w, q.fd, q.refused_by, &mut self.next_seq);
        }
        if rr.queue.is_empty() && rr.paused_until.is_none_or(|t| t <= Instant::now()) {
            rr.paused_until = None;
            while h
                .workers
                .iter()
                .any(|w| links.get(w).is_some_and(|l| l.has_room(window)))
            {
                match rr.accept() {
                    Ok(Accepted::Conn(fd)) => {
                        let w = rr
                            .pick(&h.workers, |w| links.get(&w).is_some_and(|l| l.has_room(window)))
                            .expect("a worker with room exists");
                        assign(links, w, fd, Vec::new(), &mut self.next_seq);
                    }
                    Ok(Accepted::Drained) => break,
                    Ok(Accepted::OutOfFds) => {
                        rr.paused_until = Some(Instant::now() + OUT_OF_FDS_PAUSE);
                        break;
                    }
                    Err(_) => {
                        // The listener itself failed (closed under us): pause rather than spin.
                        rr.paused_until = Some(Instant::now() + OUT_OF_FDS_PAUSE);
                        break;
                    }
                }
            }
        }
        self.flush_touched();
    }

    fn flush_touched(&mut self) {
        let touched = std::mem::take(&mut self.touched);
        for &w in &touched {
            let Some(link) = self.links.get_mut(&w) else {
                continue;
            };
            match link.flush_batch(&mut self.scratch, &mut self.fd_scratch) {
                Ok(Flushed::All) => {}
                Ok(Flushed::Blocked(back)) => {
                    for (c, inflight) in back {
                        self.requeue(
                            c.handle,
                            Queued {
                                fd: inflight.fd,
                                refused_by: inflight.refused_by,
                            },
                        );
                    }
                }
                Err(e) => self.fail_link(w, e),
            }
        }
        self.touched = touched;
        self.touched.clear();
    }
}
