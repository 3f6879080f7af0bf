//! The primary's event loop, on its own thread: each round it polls the
//! workers' channels and the listeners, then lets each role act: commands
//! from the JS thread (below), Node's queryServer protocol (`query.rs`),
//! handing out connections (`dispatch.rs`), taking them back (`rescue.rs`),
//! sticky keys in request heads (`peek.rs`), stats (`snapshot.rs`). Nothing
//! here touches JavaScript.
//!
//! `poll(2)` rather than epoll: the set is a handful of fds (workers plus
//! listeners), it is rebuilt cheaply each round, and it compiles everywhere.

use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Context, Error};
use crate::tuning::{FULL_RECHECK, MAX_WINDOW, PLACED_WATCH};

use super::dispatch::Dispatch;
use super::handles::{Handles, Kind};
use super::inherited::Inherited;
use super::policy::Policy;
use super::rescue::{peer_gone, Rescue};
use super::workers::Workers;
use super::{query, snapshot, Command, Config, Event, EventSink, Inbox, Placement};

/// What a polled fd is.
enum Target {
    Wake,
    Listener(u32),
    Control(u32),
    Handoff(u32),
    /// A connection waiting for its first request's head (sticky keys).
    Peek,
    /// A left-out socket of a kernel-placed group: (listener, member).
    Rescue(u32, usize),
}

pub struct Reactor {
    policy: Policy,
    placement: Placement,
    window: usize,
    /// When kernel-placed groups are next looked at (`Group::watch`).
    next_watch: Instant,
    handles: Handles,
    workers: Workers,
    dispatch: Dispatch,
    rescue: Rescue,
    sink: EventSink,
    inbox: Arc<Inbox>,
    wake_rx: UnixStream,
}

fn pollfd(fd: i32, events: i16) -> libc::pollfd {
    libc::pollfd { fd, events, revents: 0 }
}

impl Reactor {
    pub fn new(config: Config, sink: EventSink, inbox: Arc<Inbox>, wake_rx: UnixStream) -> Reactor {
        Reactor {
            rescue: Rescue::new(sink.clone(), config.policy.info().takes_back_busy),
            policy: config.policy,
            placement: config.placement,
            window: config.window,
            next_watch: Instant::now(),
            handles: Handles::with_inherited(Inherited::new(config.inherited)),
            workers: Workers::default(),
            dispatch: Dispatch::new(),
            sink,
            inbox,
            wake_rx,
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
        let mut readable_peeks = Vec::new();
        loop {
            let resting = self.dispatch.resting(Instant::now());
            let timeout = self.build_poll_set(resting, &mut targets, &mut pollfds);
            // SAFETY: `pollfds` is a live array of `len` pollfd structs.
            match syscall!(poll(pollfds.as_mut_ptr(), pollfds.len() as libc::nfds_t, timeout)) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                Err(e) => return Err(e).during("poll"),
            }
            self.dispatch.begin_round();
            let now = Instant::now();
            self.workers.observe(now);
            readable_peeks.clear();
            for (t, p) in targets.iter().zip(pollfds.iter()) {
                if p.revents == 0 {
                    continue;
                }
                match *t {
                    Target::Peek => readable_peeks.push(p.fd),
                    Target::Rescue(id, member) => {
                        let (workers, handles, rescue) = (&mut self.workers, &mut self.handles, &mut self.rescue);
                        self.dispatch
                            .group(id, Some(member), self.window, handles, workers, rescue)
                    }
                    Target::Wake => {
                        if !self.take_commands() {
                            return Ok(());
                        }
                    }
                    Target::Listener(id) => {
                        let (workers, handles, rescue) = (&mut self.workers, &mut self.handles, &mut self.rescue);
                        self.dispatch.listener(id, self.window, handles, workers, rescue)
                    }
                    Target::Control(id) => {
                        if p.revents & libc::POLLOUT != 0 {
                            self.flush_link(id);
                        }
                        if p.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
                            query::read(
                                id,
                                (&self.policy, self.placement),
                                &mut self.workers,
                                &mut self.handles,
                                &mut self.rescue,
                            );
                        }
                    }
                    Target::Handoff(id) => {
                        if p.revents & libc::POLLOUT != 0 {
                            if let Some(link) = self.workers.get_mut(id) {
                                link.handoff_drained();
                            }
                        }
                        if p.revents & libc::POLLIN != 0 {
                            self.rescue.read_returned(id, &mut self.workers, &mut self.handles);
                        }
                    }
                }
            }
            self.watch_groups(now);
            self.rescue.take_back_stalled(now, &mut self.workers, &mut self.handles);
            self.rescue
                .take_back_busy(now, self.window, &mut self.workers, &mut self.handles);
            readable_peeks.sort_unstable();
            for h in self.handles.map.values_mut() {
                if let Kind::Accepting(a) = &mut h.kind {
                    a.settle_peeks(&readable_peeks, self.dispatch.peek_buf(), now);
                }
            }
            self.dispatch
                .queued(self.window, &mut self.handles, &mut self.workers, &mut self.rescue);
            self.dispatch.end_round(resting.is_some());
        }
    }

    /// Steers each kernel-placed group to the workers that may take work
    /// now; a failure to steer is reported, and tried again next time.
    fn watch_groups(&mut self, now: Instant) {
        let mut failed = None;
        for h in self.handles.map.values_mut() {
            if let Kind::Placed(g) = &mut h.kind {
                if let Err(e) = g.watch(&self.workers, now) {
                    failed = Some(e);
                }
            }
        }
        self.next_watch = now + PLACED_WATCH;
        if let Some(e) = failed {
            self.rescue.report(0, Error::os("setsockopt", e));
        }
    }

    /// Listeners are polled only while some worker has room, so a full
    /// window leaves connections in the kernel backlog instead of in memory.
    /// While resting, only the JS thread's commands and pending writes are
    /// watched, until the rest's end.
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
            let a = match &h.kind {
                Kind::Accepting(a) => a,
                Kind::Placed(g) => {
                    wake_by(self.next_watch);
                    if rest.is_some() {
                        continue;
                    }
                    if let Some(until) = g.paused_until(now) {
                        wake_by(until);
                    } else if g.has_queue() {
                        wake_by(now + FULL_RECHECK);
                    } else if self.workers.any_room(&h.workers, self.window) {
                        for (i, fd) in g.left_out() {
                            targets.push(Target::Rescue(h.id, i));
                            pollfds.push(pollfd(fd.as_raw_fd(), libc::POLLIN));
                        }
                    }
                    continue;
                }
                Kind::Shared(_) => continue,
            };
            for (fd, due) in a.peeking().watch(now) {
                wake_by(due);
                // While resting, heads are left to arrive, like connections
                // on the listeners: the next round looks at them all.
                if let (Some(fd), None) = (fd, rest) {
                    targets.push(Target::Peek);
                    pollfds.push(pollfd(fd, libc::POLLIN));
                }
            }
            if rest.is_some() {
                continue;
            }
            let room = self.workers.any_room(&h.workers, self.window);
            if (a.has_queue() || !room) && !h.workers.is_empty() {
                // Someone's window will free up without telling us.
                wake_by(now + FULL_RECHECK);
            }
            if let Some(until) = a.paused_until(now) {
                wake_by(until);
            } else if room && a.has_space() && self.dispatch.accepting() {
                targets.push(Target::Listener(h.id));
                pollfds.push(pollfd(a.listener_fd().as_raw_fd(), libc::POLLIN));
            }
        }
        for (id, link) in self.workers.iter() {
            let mut events = if link.wants_write() { libc::POLLOUT } else { 0 };
            if rest.is_none() {
                events |= libc::POLLIN;
            }
            if events != 0 {
                targets.push(Target::Control(id));
                pollfds.push(pollfd(link.control_fd(), events));
            }
            let mut events = if link.handoff_full() { libc::POLLOUT } else { 0 };
            if rest.is_none() {
                events |= libc::POLLIN;
                let window = link.window();
                for due in [
                    window.stall_deadline(),
                    self.rescue.busy_look(window.waiting_since(), now),
                    link.paused_until(),
                ]
                .into_iter()
                .flatten()
                {
                    wake_by(due);
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

    /// Returns false on shutdown.
    fn take_commands(&mut self) -> bool {
        let mut buf = [0u8; 64];
        while matches!(self.wake_rx.read(&mut buf), Ok(n) if n > 0) {}
        let commands = std::mem::take(&mut *self.inbox.commands.lock().unwrap_or_else(|p| p.into_inner()));
        for c in commands {
            let (workers, handles, rescue) = (&mut self.workers, &mut self.handles, &mut self.rescue);
            match c {
                Command::AddWorker { id, fd, pid } => self.add_worker(id, fd, pid),
                Command::StopRouting { id } => rescue.stop_routing(id, workers, handles),
                Command::WorkerExited { id } => {
                    query::read(id, (&self.policy, self.placement), workers, handles, rescue);
                    rescue.drop_worker(id, workers, handles);
                }
                Command::SetWindow { window } => self.window = window.clamp(1, MAX_WINDOW),
                Command::Inherit { from, to } => workers.swap_slots(from, to),
                // The asker may have given up waiting: nothing to do then.
                Command::Stats { reply } => {
                    let _ = reply.try_send(snapshot::collect(self.policy.info().name, workers, handles, rescue));
                }
                Command::StopAccepting => self.dispatch.stop_accepting(),
                Command::Export { reply } => {
                    let _ = reply.try_send(handles.export());
                }
                Command::Lags { reply } => {
                    let _ = reply.try_send(snapshot::lags(workers));
                }
                Command::Shutdown => return false,
            }
        }
        true
    }

    fn add_worker(&mut self, id: u32, fd: OwnedFd, pid: u32) {
        match self.workers.add(id, fd, Instant::now()) {
            Ok(()) => self.rescue.watch(id, pid),
            // Already exited (it could not even start): its 'exit' says so.
            Err(Error::Os { source, .. }) if peer_gone(&source) => {}
            Err(error) => self.rescue.report(id, error),
        }
    }

    fn flush_link(&mut self, id: u32) {
        let Some(link) = self.workers.get_mut(id) else {
            return;
        };
        if let Err(error) = link.flush_out() {
            self.rescue
                .write_failed(id, error, &mut self.workers, &mut self.handles);
        }
    }
}
