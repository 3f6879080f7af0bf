//! Taking connections back: what a worker left unread in its hand-off queue
//! goes to another worker when it died, started draining, stalled, ran
//! short of fds, or (under `least` and `random`) sits busy in a long
//! callback; what a worker gave back goes to another, never to one that
//! refused it. The kernel's hand-off channel makes "never served twice" hold:
//! a connection is either read by the worker or read back here, not both.

use std::collections::HashMap;
use std::io;
use std::os::fd::OwnedFd;
use std::time::Instant;

use crate::error::{Error, ProtocolError};
use crate::protocol::{Handoff, Returned};
use crate::tuning::REFUSALS_KEPT;

use super::acceptor::Queued;
use super::busy::{Busy, CpuClock};
use super::handles::{Handles, Kind};
use super::link::Link;
use super::stats::{Rerouted, Stats, Totals};
use super::workers::Workers;
use super::{Event, EventSink};

/// Why connections are taken back from a worker.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Why {
    Died,
    Draining,
    Stalled,
    Busy,
    OutOfFds,
}

/// A worker's CPU clock and busy suspicion (`busy.rs`).
struct Watch {
    cpu: Option<CpuClock>,
    busy: Busy,
}

pub struct Rescue {
    sink: EventSink,
    /// Workers that refused a connection, by its seq (see `REFUSALS_KEPT`).
    refusals: HashMap<u32, (Vec<u32>, Instant)>,
    rerouted: Rerouted,
    /// What workers that are gone had counted.
    retired: Totals,
    /// Busy watches by worker, when the policy takes back from busy workers.
    busy: Option<HashMap<u32, Watch>>,
}

/// The worker's end of the control channel is closed: that is the worker's
/// exit, which Node reports through 'exit', not as an error.
pub fn peer_gone(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EPIPE | libc::ECONNRESET))
}

impl Rescue {
    pub fn new(sink: EventSink, takes_back_busy: bool) -> Rescue {
        Rescue {
            sink,
            refusals: HashMap::new(),
            rerouted: Rerouted::default(),
            retired: Stats::new().retired,
            busy: takes_back_busy.then(HashMap::new),
        }
    }

    pub fn rerouted(&self) -> &Rerouted {
        &self.rerouted
    }

    pub fn retired(&self) -> &Totals {
        &self.retired
    }

    pub fn report(&self, id: u32, error: Error) {
        (self.sink)(Event::WorkerError { id, error });
    }

    /// Starts watching a new worker's CPU time, if the policy asks for it.
    pub fn watch(&mut self, id: u32, pid: u32) {
        if let Some(busy) = &mut self.busy {
            let cpu = (pid != 0).then(|| CpuClock::open(pid)).flatten();
            busy.insert(
                id,
                Watch {
                    cpu,
                    busy: Busy::default(),
                },
            );
        }
    }

    /// When the busy rule next needs a look at a queue waiting since `since`.
    pub fn busy_look(&self, since: Option<Instant>, now: Instant) -> Option<Instant> {
        self.busy.as_ref()?;
        since.map(|t| Busy::next_look(t, now))
    }

    /// Connections a stalled worker left unread go back on their listener's
    /// queue, if another worker can take them.
    pub fn take_back_stalled(&mut self, now: Instant, workers: &mut Workers, handles: &mut Handles) {
        let ready = |l: &Link| l.routing() && l.greeted() && !l.window().is_stalled();
        let ready_count = workers.iter().filter(|(_, l)| ready(l)).count();
        let stalled: Vec<u32> = workers
            .iter()
            .filter(|(_, l)| {
                ready_count > usize::from(ready(l)) && l.window().stall_deadline().is_some_and(|t| t <= now)
            })
            .map(|(id, _)| id)
            .collect();
        for id in stalled {
            self.take_back(id, Why::Stalled, workers, handles);
        }
    }

    /// What a busy worker (see `busy.rs`) has not read goes to the others,
    /// if one of them is free to take it.
    pub fn take_back_busy(&mut self, now: Instant, window: usize, workers: &mut Workers, handles: &mut Handles) {
        let Some(watches) = &mut self.busy else {
            return;
        };
        let mut busy = Vec::new();
        let mut free = false;
        for (id, l) in workers.iter() {
            if !l.placeable() {
                continue;
            }
            let is_busy = watches.get_mut(&id).is_some_and(|w| {
                let cpu = &w.cpu;
                w.busy.check(l.window().waiting_since(), now, || {
                    cpu.as_ref().and_then(CpuClock::on_cpu_ns)
                })
            });
            if is_busy {
                busy.push(id);
            } else {
                free |= l.has_room(window);
            }
        }
        if free {
            for id in busy {
                self.take_back(id, Why::Busy, workers, handles);
            }
        }
    }

    /// Reads back what worker `id` has not read and queues it for others.
    pub fn take_back(&mut self, id: u32, why: Why, workers: &mut Workers, handles: &mut Handles) {
        let Some(link) = workers.get_mut(id) else {
            return;
        };
        match link.take_back(matches!(why, Why::Stalled | Why::Busy)) {
            Ok(got) => {
                self.count(why, got.len() as u64);
                for (record, fd) in got {
                    self.requeue(record, fd, None, handles);
                }
            }
            Err(error) => self.report(id, error),
        }
    }

    /// `n` connections went to another worker than the one meant, for `why`.
    pub fn count(&mut self, why: Why, n: u64) {
        let counter = match why {
            Why::Died => &mut self.rerouted.died,
            Why::Draining => &mut self.rerouted.draining,
            Why::Stalled => &mut self.rerouted.stalled,
            Why::Busy => &mut self.rerouted.busy,
            Why::OutOfFds => &mut self.rerouted.out_of_fds,
        };
        *counter += n;
    }

    /// Connections worker `id` gave back: refused ones go to another worker;
    /// one given back for want of fds pauses the worker, and what it has not
    /// read is taken back too.
    pub fn read_returned(&mut self, id: u32, workers: &mut Workers, handles: &mut Handles) {
        let Some(link) = workers.get_mut(id) else {
            return;
        };
        let got = match link.returned() {
            Ok(got) => got,
            Err(error) => return self.cut_off(id, error, workers, handles),
        };
        let mut short_of_fds = false;
        for (record, fd) in got {
            match record.returned {
                Returned::Refused => {
                    self.rerouted.refused += 1;
                    self.requeue(record, fd, Some(id), handles);
                }
                Returned::OutOfFds => {
                    short_of_fds = true;
                    self.rerouted.out_of_fds += 1;
                    self.requeue(record, fd, None, handles);
                }
                Returned::None => return self.cut_off(id, ProtocolError::WrongDirection.into(), workers, handles),
            }
        }
        if short_of_fds {
            if let Some(link) = workers.get_mut(id) {
                link.pause(Instant::now());
            }
            self.take_back(id, Why::OutOfFds, workers, handles);
        }
    }

    /// Puts a connection back on its listener's queue (closed if the
    /// listener is gone), remembering who refused it.
    pub fn requeue(&mut self, record: Handoff, fd: OwnedFd, refused_by: Option<u32>, handles: &mut Handles) {
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
        push_queued(handles, record.handle, q);
    }

    /// A connection every worker refused is closed: its refusals go too.
    pub fn forget(&mut self, seq: u32) {
        self.refusals.remove(&seq);
    }

    /// The worker is disconnecting: no new connections or servers, and what
    /// it has not read yet goes to the others now.
    pub fn stop_routing(&mut self, id: u32, workers: &mut Workers, handles: &mut Handles) {
        let Some(link) = workers.get_mut(id) else {
            return;
        };
        link.stop_routing();
        for h in handles.ids_of(id) {
            handles.leave(h, id);
        }
        self.take_back(id, Why::Draining, workers, handles);
    }

    /// The worker is gone: every connection it had not read goes to another
    /// worker of the same listener, or is closed if none is left.
    pub fn drop_worker(&mut self, id: u32, workers: &mut Workers, handles: &mut Handles) {
        for h in handles.ids_of(id) {
            handles.leave(h, id);
        }
        self.take_back(id, Why::Died, workers, handles);
        if let Some(link) = workers.remove(id) {
            self.retired.add(&link.snapshot());
        }
        if let Some(busy) = &mut self.busy {
            busy.remove(&id);
        }
    }

    /// The worker broke the protocol or its channel failed: cut off.
    pub fn cut_off(&mut self, id: u32, error: Error, workers: &mut Workers, handles: &mut Handles) {
        self.report(id, error);
        self.drop_worker(id, workers, handles);
    }

    /// Writing to the worker failed: it is gone (not reported) or broken.
    pub fn write_failed(&mut self, id: u32, error: io::Error, workers: &mut Workers, handles: &mut Handles) {
        if !peer_gone(&error) {
            self.report(id, Error::os("sendmsg", error));
        }
        self.drop_worker(id, workers, handles);
    }
}

/// Queues a connection on listener `handle`; dropped (closed) if it is gone.
pub fn push_queued(handles: &mut Handles, handle: u32, q: Queued) {
    if let Some(h) = handles.map.get_mut(&handle) {
        match &mut h.kind {
            Kind::Accepting(a) => a.push(q),
            Kind::Placed(g) => g.push(q),
            Kind::Shared(_) => {}
        }
    }
}
