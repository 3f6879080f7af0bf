//! The primary's event loop, on its own thread: it accepts on round-robin
//! listeners, hands connections to workers, takes back what a stalled or
//! departed worker left unread, and answers server queries. Nothing here
//! touches JavaScript; the primary's JS thread only sends commands (worker
//! added, disconnecting, exited) and hears about failures.
//!
//! `poll(2)` rather than epoll: the set is a handful of fds (workers plus
//! listeners), it is rebuilt cheaply each round, and it compiles everywhere.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::channel::{Channel, Received};
use crate::error::{uv_errno, Context, Error, ProtocolError};
use crate::handoff::{self, Batch};
use crate::protocol::{encode_reply, Frame, Handoff, Query, Reply, Returned, VERSION};
use crate::worker::FD_PAUSE;

use super::busy::{Busy, CpuClock};
use super::handles::{Handles, Kind, Policy};
use super::link::Link;
use super::round_robin::{Accepted, Peek, Queued, RoundRobin};
use super::schedule::{self, Candidate, Placed};
use super::stats::{self, ListenerStats, Rerouted, Stats, Totals, WorkerStats};
use super::sticky::{Head, MAX_HEAD};
use super::{Command, Config, Event, EventSink, Inbox};

/// How long accepting pauses after the process ran out of fds: a listener
/// stays readable then, so polling it again at once would spin; a short
/// pause is not noticed by clients once fds free up.
const OUT_OF_FDS_PAUSE: Duration = Duration::from_millis(20);

/// After a round that handed out several connections, listeners are left
/// unread this long, so that the next round finds a batch: one `sendmmsg`
/// per worker for many connections instead of a wakeup and a send for each.
/// A round that found a single connection rests not at all, so a lone client
/// sees no added latency. 1 ms is poll(2)'s resolution.
const REST: Duration = Duration::from_millis(1);

/// A round that handed out at least this many connections is followed by a
/// rest; so is one that handed out any right after a rest (still busy).
const BUSY_ROUND: usize = 2;

/// How often the workers' counters are looked at again while every worker's
/// window is full (nothing else wakes the reactor when one frees up).
const FULL_RECHECK: Duration = Duration::from_millis(1);

/// Connections waiting in the primary per listener for a sticky key's full
/// worker, at most: past this the listener is left alone and the kernel's
/// backlog holds the rest.
const MAX_WAITING: usize = 1024;

/// How long a connection may take to send its first request's head when the
/// sticky key is in it. A client sends it with the connection, but a busy
/// one (hundreds of sessions in one process) was measured taking up to
/// 90 ms; routing it by address instead would break its session. One that
/// has sent nothing by then is keyed by its address, so a silent client
/// holds up nobody but itself, and itself only this long.
const PEEK_WAIT: Duration = Duration::from_secs(1);

/// Connections waiting for their head per listener, at most: past this the
/// one waiting longest is keyed by its address at once, so silent clients
/// can neither stop accepting nor use up the primary's fds. A long-polling
/// client may have two connections opening at once (socket.io's GET and
/// POST), and hundreds of clients may open theirs in the same instant.
pub(super) const MAX_PEEKING: usize = 1024;

/// How often a head that came in part is looked at again (its unread bytes
/// keep the socket readable, so it cannot be polled).
const PARTIAL_RECHECK: Duration = Duration::from_millis(1);

/// How long a connection's refusals are remembered. Refusals are rare (a
/// server closing, or at `maxConnections`) and a connection is re-offered at
/// once, so this only bounds the memory of ones that were then served.
const REFUSALS_KEPT: Duration = Duration::from_secs(10);

/// The worker's end of the control channel is closed: that is the worker's
/// exit, which Node reports through 'exit', not as an error.
fn peer_gone(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EPIPE | libc::ECONNRESET))
}

fn pollfd(fd: i32, events: i16) -> libc::pollfd {
    libc::pollfd { fd, events, revents: 0 }
}

/// Why connections are taken back from a worker.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Why {
    Died,
    Draining,
    Stalled,
    Busy,
    OutOfFds,
}

enum Target {
    Wake,
    Listener(u32),
    Control(u32),
    Handoff(u32),
    /// A connection waiting for its first request's head (sticky keys).
    Peek,
}

enum Choice {
    Worker(u32),
    /// A sticky key whose worker has no room now.
    Wait,
    Nobody,
}

/// The worker for `q` under `policy`, among `workers` that have not refused it.
fn choose(
    policy: &Policy,
    rr: &mut RoundRobin,
    workers: &[u32],
    links: &HashMap<u32, Link>,
    window: usize,
    q: &Queued,
    cands: &mut Vec<Candidate>,
) -> Choice {
    let unrefused = |w: &u32| !q.refused_by.contains(w);
    if *policy == Policy::RoundRobin {
        let pick = rr.pick(workers, |w| {
            unrefused(&w) && links.get(&w).is_some_and(|l| l.has_room(window))
        });
        return pick.map_or(Choice::Nobody, Choice::Worker);
    }
    cands.clear();
    cands.extend(workers.iter().filter(|w| unrefused(w)).filter_map(|&w| {
        let l = links.get(&w).filter(|l| l.placeable())?;
        Some(Candidate {
            id: w,
            slot: l.slot,
            load: l.load(),
            has_room: l.has_room(window),
        })
    }));
    if *policy == Policy::Least {
        return schedule::least(cands, &mut rr.next).map_or(Choice::Nobody, Choice::Worker);
    }
    match rr.sticky.place(q.key, q.follows, cands) {
        Placed::Worker(w) => Choice::Worker(w),
        Placed::Wait => Choice::Wait,
        Placed::None => Choice::Nobody,
    }
}

enum Peeked {
    Bytes(usize),
    Nothing,
    Closed,
}

/// The key of a connection waiting for its head, if it can be decided now.
fn decide(spec: &super::sticky::KeySpec, p: &mut Peek, buf: &mut [u8], now: Instant) -> Option<u64> {
    match peek(p.q.fd.as_raw_fd(), buf) {
        Peeked::Bytes(n) => match super::sticky::find_key(spec, &buf[..n]) {
            Head::Key(k) => {
                p.q.follows = spec.follows_address().then_some(p.q.key);
                Some(super::sticky::hash(k))
            }
            Head::NoKey => Some(p.q.key),
            Head::Partial if p.deadline <= now => Some(p.q.key),
            // Part of the head, still in time: looked at again shortly.
            Head::Partial => {
                p.partial = n > 0;
                None
            }
        },
        Peeked::Nothing if p.deadline > now => None,
        // Gone, failed, or silent too long: its address decides.
        Peeked::Nothing | Peeked::Closed => Some(p.q.key),
    }
}

/// Keys the connection that has waited longest for its head by its address.
fn evict_oldest_peek(rr: &mut RoundRobin) {
    if let Some(i) = (0..rr.peeking.len()).min_by_key(|&i| rr.peeking[i].deadline) {
        let p = rr.peeking.swap_remove(i);
        rr.queue.push_back(p.q);
    }
}

/// The start of a connection's bytes, left in place.
fn peek(fd: i32, buf: &mut [u8]) -> Peeked {
    // SAFETY: `buf` is a live buffer of the length given.
    match syscall!(recv(
        fd,
        buf.as_mut_ptr().cast(),
        buf.len(),
        libc::MSG_PEEK | libc::MSG_DONTWAIT
    )) {
        Ok(0) => Peeked::Closed,
        Ok(n) => Peeked::Bytes(n as usize),
        Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => Peeked::Nothing,
        Err(_) => Peeked::Closed,
    }
}

pub struct Reactor {
    config: Config,
    handles: Handles,
    links: HashMap<u32, Link>,
    next_seq: u32,
    sink: EventSink,
    inbox: Arc<Inbox>,
    wake_rx: UnixStream,
    batch: Batch,
    /// Fds of connections sent in this round, closed together after it.
    sent_fds: Vec<i32>,
    touched: Vec<u32>,
    /// Candidates for `choose`, reused.
    cands: Vec<Candidate>,
    /// Where a connection's first bytes are peeked into.
    peek_buf: Vec<u8>,
    /// Workers that refused a connection, by its seq (see `REFUSALS_KEPT`).
    refusals: HashMap<u32, (Vec<u32>, Instant)>,
    rerouted: Rerouted,
    /// What workers that are gone had counted.
    retired: Totals,
    /// Until when listeners are left unread (see `REST`).
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
            batch: Batch::default(),
            sent_fds: Vec::new(),
            touched: Vec::new(),
            cands: Vec::new(),
            peek_buf: vec![0; MAX_HEAD],
            refusals: HashMap::new(),
            rerouted: Rerouted::default(),
            retired: Stats::new().retired,
            rest_until: None,
            round_sent: 0,
            rested: false,
        }
    }

    /// Runs until shutdown. A failure or a panic (a bug) is reported instead
    /// of silently ending the thread, so the app learns its cluster stopped
    /// routing.
    pub fn run(self) {
        let sink = self.sink.clone();
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.run_loop())) {
            Ok(Ok(())) => {}
            Ok(Err(error)) => sink(Event::Fatal { error }),
            Err(payload) => sink(Event::Fatal {
                error: Error::from_panic(payload),
            }),
        }
    }

    fn run_loop(mut self) -> Result<(), Error> {
        let mut targets: Vec<Target> = Vec::new();
        let mut pollfds: Vec<libc::pollfd> = Vec::new();
        loop {
            let resting = self.rest_until.filter(|&t| t > Instant::now());
            let timeout = self.build_poll_set(resting, &mut targets, &mut pollfds);
            // SAFETY: `pollfds` is a live array of `len` pollfd structs.
            match syscall!(poll(pollfds.as_mut_ptr(), pollfds.len() as libc::nfds_t, timeout)) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                Err(e) => return Err(e).during("poll"),
            }
            self.round_sent = 0;
            let now = Instant::now();
            for link in self.links.values_mut() {
                link.observe(now);
            }
            let mut readable_peeks = Vec::new();
            for (t, p) in targets.iter().zip(pollfds.iter()) {
                if p.revents == 0 {
                    continue;
                }
                match *t {
                    Target::Peek => readable_peeks.push(p.fd),
                    Target::Wake => {
                        if !self.take_commands() {
                            return Ok(());
                        }
                    }
                    Target::Listener(id) => self.dispatch(id),
                    Target::Control(id) => {
                        if p.revents & libc::POLLOUT != 0 {
                            self.flush_link(id);
                        }
                        if p.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
                            self.read_link(id);
                        }
                    }
                    Target::Handoff(id) => {
                        if p.revents & libc::POLLOUT != 0 {
                            if let Some(link) = self.links.get_mut(&id) {
                                link.handoff_full = false;
                            }
                        }
                        if p.revents & libc::POLLIN != 0 {
                            self.read_returned(id);
                        }
                    }
                }
            }
            self.take_back_stalled(now);
            if self.config.policy == Policy::Least {
                self.take_back_busy(now);
            }
            readable_peeks.sort_unstable();
            self.settle_peeks(&readable_peeks, now);
            self.dispatch_queued();
            if resting.is_none() {
                self.rested = self.round_sent >= BUSY_ROUND || (self.rested && self.round_sent > 0);
                if self.rested {
                    self.rest_until = Some(Instant::now() + REST);
                }
            }
        }
    }

    /// Connections a stalled worker left unread go back on their handle's
    /// queue, if another worker can take them.
    fn take_back_stalled(&mut self, now: Instant) {
        let ready = |l: &Link| l.routing && l.greeted && !l.window.is_stalled();
        let ready_count = self.links.values().filter(|l| ready(l)).count();
        let stalled: Vec<u32> = self
            .links
            .iter()
            .filter(|(_, l)| ready_count > usize::from(ready(l)) && l.window.stall_deadline().is_some_and(|t| t <= now))
            .map(|(&id, _)| id)
            .collect();
        for id in stalled {
            self.take_back(id, Why::Stalled);
        }
    }

    /// Under `least`: what a busy worker (see `busy.rs`) has not read goes
    /// to the others, if one of them is free to take it.
    fn take_back_busy(&mut self, now: Instant) {
        let window = self.config.window;
        let mut busy = Vec::new();
        let mut free = false;
        for (&id, l) in self.links.iter_mut() {
            if !l.placeable() {
                continue;
            }
            if l.is_busy(now) {
                busy.push(id);
            } else {
                free |= l.has_room(window);
            }
        }
        if free {
            for id in busy {
                self.take_back(id, Why::Busy);
            }
        }
    }

    /// Reads back what worker `id` has not read and queues it for others.
    fn take_back(&mut self, id: u32, why: Why) {
        let Some(link) = self.links.get_mut(&id) else {
            return;
        };
        match link.take_back(matches!(why, Why::Stalled | Why::Busy)) {
            Ok(got) => {
                let n = got.len() as u64;
                match why {
                    Why::Died => self.rerouted.died += n,
                    Why::Draining => self.rerouted.draining += n,
                    Why::Stalled => self.rerouted.stalled += n,
                    Why::Busy => self.rerouted.busy += n,
                    Why::OutOfFds => self.rerouted.out_of_fds += n,
                }
                for (record, fd) in got {
                    self.requeue(record, fd, None);
                }
            }
            Err(error) => (self.sink)(Event::WorkerError { id, error }),
        }
    }

    fn stats(&self) -> Stats {
        let now_ns = crate::page::monotonic_ns();
        let every_ns = crate::worker::TURN_AT_LEAST_EVERY.as_nanos() as u64;
        let mut out = Stats::new();
        let mut ids: Vec<&u32> = self.links.keys().collect();
        ids.sort();
        for id in ids {
            let link = &self.links[id];
            let page = link.page.snapshot();
            out.workers.push(WorkerStats {
                id: *id,
                routing: link.routing,
                stalled: link.window.is_stalled(),
                accepted: page.taken,
                pending: link.window.queued(),
                active: page.active,
                rerouted: link.rerouted,
                refused: link.refused,
                lag_ns: stats::lag_ns(&page, now_ns, every_ns),
                handoff_sum_ns: page.handoff_sum_ns,
                handoff: page.handoff.to_vec(),
            });
        }
        let mut handles: Vec<_> = self.handles.map.values().collect();
        handles.sort_by_key(|h| h.id);
        for h in handles {
            let (policy, accepted, fd, waiting, sticky_keys) = match &h.kind {
                Kind::RoundRobin(rr) => (
                    "rr",
                    Some(rr.accepted),
                    rr.listener_fd(),
                    rr.queue.len() + rr.peeking.len(),
                    rr.sticky.keys(),
                ),
                Kind::Shared(s) => ("shared", None, s.fd.as_fd(), 0, 0),
            };
            let queue = stats::accept_queue(fd);
            out.listeners.push(ListenerStats {
                id: h.id,
                address: h.address(),
                policy,
                workers: h.workers.clone(),
                accepted,
                queue: queue.map(|q| q.0),
                queue_limit: queue.map(|q| q.1),
                waiting,
                sticky_keys,
            });
        }
        out.rerouted = self.rerouted.clone();
        out.retired = self.retired.clone();
        out
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
        for h in self.handles.map.values() {
            let Kind::RoundRobin(rr) = &h.kind else {
                continue;
            };
            for p in &rr.peeking {
                wake_by(if p.partial { now + PARTIAL_RECHECK } else { p.deadline });
                // While resting, heads are left to arrive, like connections
                // on the listeners: the next round looks at them all.
                if !p.partial && rest.is_none() {
                    targets.push(Target::Peek);
                    pollfds.push(pollfd(p.q.fd.as_raw_fd(), libc::POLLIN));
                }
            }
            if rest.is_some() {
                continue;
            }
            let room = self.any_room(&h.workers);
            if (!rr.queue.is_empty() || !room) && !h.workers.is_empty() {
                // Someone's window will free up without telling us.
                wake_by(now + FULL_RECHECK);
            }
            if let Some(until) = rr.paused_until.filter(|&t| t > now) {
                wake_by(until);
            } else if room && rr.queue.len() < MAX_WAITING {
                targets.push(Target::Listener(h.id));
                pollfds.push(pollfd(rr.listener_fd().as_raw_fd(), libc::POLLIN));
            }
        }
        for (&id, link) in &self.links {
            let mut events = if link.wants_write() { libc::POLLOUT } else { 0 };
            if rest.is_none() {
                events |= libc::POLLIN;
            }
            if events != 0 {
                targets.push(Target::Control(id));
                pollfds.push(pollfd(link.chan.raw(), events));
            }
            let mut events = if link.handoff_full { libc::POLLOUT } else { 0 };
            if rest.is_none() {
                events |= libc::POLLIN;
                if let Some(t) = link.window.stall_deadline() {
                    wake_by(t);
                }
                if let (Policy::Least, Some(t)) = (&self.config.policy, link.window.waiting_since()) {
                    wake_by(Busy::next_look(t, now));
                }
                if let Some(t) = link.paused_until {
                    wake_by(t);
                }
            }
            if events != 0 {
                targets.push(Target::Handoff(id));
                pollfds.push(pollfd(link.handoff_fd(), events));
            }
        }
        // Rounded up (poll's unit is the millisecond), and at least 1 ms: a
        // stall deadline already past but with nobody to take over must not spin.
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
                Command::AddWorker { id, fd, pid } => self.add_worker(id, fd, pid),
                Command::StopRouting { id } => self.stop_routing(id),
                Command::WorkerExited { id } => {
                    self.read_link(id);
                    self.drop_link(id);
                }
                Command::SetWindow { window } => self.config.window = window.clamp(1, super::MAX_WINDOW),
                Command::Inherit { from, to } => self.inherit(from, to),
                // The asker may have given up waiting: nothing to do then.
                Command::Stats { reply } => {
                    let _ = reply.try_send(self.stats());
                }
                Command::Shutdown => return false,
            }
        }
        true
    }

    fn add_worker(&mut self, id: u32, fd: OwnedFd, pid: u32) {
        // The lowest free slot: a worker respawned after one that died takes
        // its place, and with it its sticky keys.
        let slot = (0..)
            .find(|s| !self.links.values().any(|l| l.slot == *s))
            .expect("fewer workers than slots");
        let link = Channel::new(fd).during("fcntl").and_then(|chan| {
            let cpu = (self.config.policy == Policy::Least && pid != 0)
                .then(|| CpuClock::open(pid))
                .flatten();
            Link::new(chan, slot, cpu, Instant::now())
        });
        match link {
            Ok(link) => {
                self.links.insert(id, link);
            }
            // Already exited (it could not even start): its 'exit' says so.
            Err(Error::Os { source, .. }) if peer_gone(&source) => {}
            Err(error) => (self.sink)(Event::WorkerError { id, error }),
        }
    }

    /// Worker `to` takes worker `from`'s slot, so its sticky keys; `from`
    /// (about to drain) gets `to`'s.
    fn inherit(&mut self, from: u32, to: u32) {
        let (Some(a), Some(b)) = (
            self.links.get(&from).map(|l| l.slot),
            self.links.get(&to).map(|l| l.slot),
        ) else {
            return;
        };
        for (id, slot) in [(from, b), (to, a)] {
            if let Some(l) = self.links.get_mut(&id) {
                l.slot = slot;
            }
        }
    }

    fn read_link(&mut self, id: u32) {
        match self.read_frames(id) {
            Ok(true) => {}
            Ok(false) => self.drop_link(id),
            Err(Error::Os { source, .. }) if peer_gone(&source) => self.drop_link(id),
            Err(error) => self.cut_off(id, error),
        }
    }

    fn cut_off(&mut self, id: u32, error: Error) {
        (self.sink)(Event::WorkerError { id, error });
        self.drop_link(id);
    }

    /// Reads and handles every frame available. `Ok(false)` on end of stream.
    fn read_frames(&mut self, id: u32) -> Result<bool, Error> {
        loop {
            let Some(link) = self.links.get_mut(&id) else {
                return Ok(true);
            };
            let outcome = link.chan.recv(&mut link.dec).during("recvmsg")?;
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
            Frame::Close { handle } => {
                self.handles.leave(handle, id);
                Ok(())
            }
            Frame::Hello { .. } | Frame::Reply { .. } | Frame::Setup { .. } => {
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
        let (reply, fds) = match self.handles.get_or_create(&q, &self.config.policy) {
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
                Vec::new(),
            ),
            Ok(h) => {
                if !h.workers.contains(&id) {
                    h.workers.push(id);
                }
                if h.data.is_null() {
                    h.data = q.data;
                }
                let fds = match &h.kind {
                    Kind::Shared(s) => vec![s.dup_for_reply().during("dup")?],
                    Kind::RoundRobin(_) => Vec::new(),
                };
                let reply = Reply {
                    seq: q.seq,
                    errno: 0,
                    handle: h.id,
                    shared: !fds.is_empty(),
                    sockname: h.sockname.clone(),
                    data: h.data.clone(),
                };
                (reply, fds)
            }
        };
        let mut bytes = Vec::new();
        encode_reply(&mut bytes, &reply);
        link.send_control(bytes, fds).during("sendmsg")?;
        Ok(())
    }

    /// Connections worker `id` gave back: refused ones go to another worker;
    /// one given back for want of fds pauses the worker, and what it has not
    /// read is taken back too.
    fn read_returned(&mut self, id: u32) {
        let Some(link) = self.links.get_mut(&id) else {
            return;
        };
        let got = match link.returned() {
            Ok(got) => got,
            Err(error) => return self.cut_off(id, error),
        };
        let mut short_of_fds = false;
        for (record, fd) in got {
            match record.returned {
                Returned::Refused => {
                    self.rerouted.refused += 1;
                    self.requeue(record, fd, Some(id));
                }
                Returned::OutOfFds => {
                    short_of_fds = true;
                    self.rerouted.out_of_fds += 1;
                    self.requeue(record, fd, None);
                }
                Returned::None => return self.cut_off(id, ProtocolError::WrongDirection.into()),
            }
        }
        if short_of_fds {
            if let Some(link) = self.links.get_mut(&id) {
                link.paused_until = Some(Instant::now() + FD_PAUSE);
            }
            self.take_back(id, Why::OutOfFds);
        }
    }

    /// Puts a connection back on its handle's queue (closed if the handle is
    /// gone), remembering who refused it.
    fn requeue(&mut self, record: Handoff, fd: OwnedFd, refused_by: Option<u32>) {
        let refused_by = match refused_by {
            Some(w) => {
                let now = Instant::now();
                self.refusals
                    .retain(|_, (_, at)| now.duration_since(*at) < REFUSALS_KEPT);
                let entry = self.refusals.entry(record.seq).or_insert_with(|| (Vec::new(), now));
                entry.0.push(w);
                entry.0.clone()
            }
            None => self
                .refusals
                .get(&record.seq)
                .map(|(v, _)| v.clone())
                .unwrap_or_default(),
        };
        let q = Queued {
            fd,
            seq: record.seq,
            refused_by,
            accepted_ns: record.accepted_ns,
            key: record.key,
            follows: None,
        };
        self.push_queued(record.handle, q);
    }

    fn push_queued(&mut self, handle: u32, q: Queued) {
        if let Some(h) = self.handles.map.get_mut(&handle) {
            if let Kind::RoundRobin(rr) = &mut h.kind {
                rr.queue.push_back(q);
            }
        }
    }

    /// The worker is disconnecting: no new connections or servers, and what
    /// it has not read yet goes to the others now.
    fn stop_routing(&mut self, id: u32) {
        let Some(link) = self.links.get_mut(&id) else {
            return;
        };
        link.routing = false;
        for h in self.handles.ids_of(id) {
            self.handles.leave(h, id);
        }
        self.take_back(id, Why::Draining);
    }

    /// The worker is gone: every connection it had not read goes to another
    /// worker of the same server, or is closed if none is left.
    fn drop_link(&mut self, id: u32) {
        for h in self.handles.ids_of(id) {
            self.handles.leave(h, id);
        }
        self.take_back(id, Why::Died);
        if let Some(link) = self.links.remove(&id) {
            self.retired.add(&link.page.snapshot());
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
                error: Error::os("sendmsg", error),
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
    /// has room, and sends each worker its batch in one `sendmmsg`.
    fn dispatch(&mut self, id: u32) {
        let window = self.config.window;
        let policy = &self.config.policy;
        let Some(h) = self.handles.map.get_mut(&id) else {
            return;
        };
        let Kind::RoundRobin(rr) = &mut h.kind else {
            return;
        };
        let links = &mut self.links;
        let touched = &mut self.touched;
        let round_sent = &mut self.round_sent;
        let cands = &mut self.cands;
        // Accepted to wait for their head: busy all the same, so the round
        // that hands them out comes after a rest.
        let mut peeked = 0;
        let mut assign = |links: &mut HashMap<u32, Link>, w: u32, q: Queued| {
            *round_sent += 1;
            links
                .get_mut(&w)
                .expect("chosen workers have links")
                .batch
                .push((id, q));
            if !touched.contains(&w) {
                touched.push(w);
            }
        };
        // Connections waiting for a full sticky worker keep their place.
        let mut waiting = VecDeque::new();
        while let Some(q) = rr.queue.pop_front() {
            // Every worker refused it: closed, rather than passed around forever.
            if h.workers.iter().all(|w| q.refused_by.contains(w)) {
                self.refusals.remove(&q.seq);
                continue;
            }
            match choose(policy, rr, &h.workers, links, window, &q, cands) {
                Choice::Worker(w) => assign(links, w, q),
                Choice::Wait => waiting.push_back(q),
                Choice::Nobody => {
                    rr.queue.push_front(q);
                    break;
                }
            }
        }
        while let Some(q) = waiting.pop_back() {
            rr.queue.push_front(q);
        }
        let head_spec = match policy {
            Policy::Sticky(spec) if spec.needs_head() => Some(spec),
            _ => None,
        };
        let want_addr = matches!(policy, Policy::Sticky(_));
        if rr.paused_until.is_none_or(|t| t <= Instant::now()) {
            rr.paused_until = None;
            while rr.queue.len() < MAX_WAITING
                && h.workers
                    .iter()
                    .any(|w| links.get(w).is_some_and(|l| l.has_room(window)))
            {
                match rr.accept(want_addr) {
                    Ok(Accepted::Conn(fd, addr_key)) => {
                        self.next_seq = self.next_seq.wrapping_add(1);
                        let q = Queued {
                            fd,
                            seq: self.next_seq,
                            refused_by: Vec::new(),
                            accepted_ns: crate::page::monotonic_ns(),
                            // No address (a unix socket): any worker will do.
                            key: addr_key.unwrap_or_else(|| super::sticky::mix(self.next_seq as u64)),
                            follows: None,
                        };
                        let mut q = q;
                        if let Some(spec) = head_spec {
                            // Most clients have sent their head by now: look at once.
                            let mut p = Peek {
                                q,
                                deadline: Instant::now() + PEEK_WAIT,
                                partial: false,
                            };
                            match decide(spec, &mut p, &mut self.peek_buf, Instant::now()) {
                                Some(key) => {
                                    q = p.q;
                                    q.key = key;
                                }
                                None => {
                                    if rr.peeking.len() >= MAX_PEEKING {
                                        evict_oldest_peek(rr);
                                    }
                                    rr.peeking.push(p);
                                    peeked += 1;
                                    continue;
                                }
                            }
                        }
                        match choose(policy, rr, &h.workers, links, window, &q, cands) {
                            Choice::Worker(w) => assign(links, w, q),
                            Choice::Wait | Choice::Nobody => rr.queue.push_back(q),
                        }
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
        self.round_sent += peeked;
        self.flush_touched();
    }

    /// Looks at connections waiting for their first request's head: those
    /// that became readable, those with part of a head, and those out of
    /// time. Each that is decided joins its handle's queue with its key.
    /// `readable`: sorted.
    fn settle_peeks(&mut self, readable: &[i32], now: Instant) {
        let Policy::Sticky(spec) = &self.config.policy else {
            return;
        };
        let buf = &mut self.peek_buf;
        for h in self.handles.map.values_mut() {
            let Kind::RoundRobin(rr) = &mut h.kind else {
                continue;
            };
            let mut i = 0;
            while i < rr.peeking.len() {
                let p = &mut rr.peeking[i];
                if !(p.partial || p.deadline <= now || readable.binary_search(&p.q.fd.as_raw_fd()).is_ok()) {
                    i += 1;
                    continue;
                }
                match decide(spec, p, buf, now) {
                    Some(key) => {
                        let mut p = rr.peeking.swap_remove(i);
                        p.q.key = key;
                        rr.queue.push_back(p.q);
                    }
                    None => i += 1,
                }
            }
        }
    }

    fn flush_touched(&mut self) {
        let touched = std::mem::take(&mut self.touched);
        let now = Instant::now();
        for &w in &touched {
            let Some(link) = self.links.get_mut(&w) else {
                continue;
            };
            let (unsent, failed) = link.flush_batch(&mut self.batch, &mut self.sent_fds, now);
            for (handle, q) in unsent {
                self.push_queued(handle, q);
            }
            if let Some(e) = failed {
                self.fail_link(w, e);
            }
        }
        handoff::close_all(&mut self.sent_fds);
        self.touched = touched;
        self.touched.clear();
    }
}
