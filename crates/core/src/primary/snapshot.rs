//! Collects `stats::Stats` on the reactor thread, when asked: each worker's
//! page and link, each listener's counters and the kernel's accept queue.

use std::os::fd::AsFd;

use crate::tuning::TURN_AT_LEAST_EVERY;

use super::handles::{Handles, Kind};
use super::rescue::Rescue;
use super::stats::{self, ListenerStats, Stats, WorkerStats};
use super::workers::Workers;

pub fn collect(policy_name: &'static str, workers: &Workers, handles: &Handles, rescue: &Rescue) -> Stats {
    let now_ns = crate::page::monotonic_ns();
    let every_ns = TURN_AT_LEAST_EVERY.as_nanos() as u64;
    let mut out = Stats::new();
    for id in workers.ids() {
        let link = workers.get(id).expect("listed ids have links");
        let page = link.snapshot();
        let (rerouted, refused) = link.rerouted_refused();
        out.workers.push(WorkerStats {
            id,
            routing: link.routing(),
            stalled: link.window().is_stalled(),
            accepted: page.taken + page.placed,
            pending: link.window().queued(),
            active: page.active,
            rerouted,
            refused,
            lag_ns: stats::lag_ns(&page, now_ns, every_ns),
            handoff_sum_ns: page.handoff_sum_ns,
            handoff: page.handoff.to_vec(),
        });
    }
    let mut listeners: Vec<_> = handles.map.values().collect();
    listeners.sort_by_key(|h| h.id);
    for h in listeners {
        let (policy, accepted, queue, waiting, sticky_keys) = match &h.kind {
            Kind::Accepting(a) => (
                policy_name,
                Some(a.accepted()),
                stats::accept_queue(a.listener_fd()),
                a.waiting(),
                a.keys(),
            ),
            Kind::Placed(g) => (policy_name, Some(g.rescued()), g.accept_queue(), g.waiting(), 0),
            Kind::Shared(s) => ("none", None, stats::accept_queue(s.fd.as_fd()), 0, 0),
        };
        out.listeners.push(ListenerStats {
            id: h.id,
            address: h.address(),
            policy,
            placement: h.kind.placement(),
            workers: h.workers.clone(),
            accepted,
            queue: queue.map(|q| q.0),
            queue_limit: queue.map(|q| q.1),
            waiting,
            sticky_keys,
        });
    }
    out.rerouted = rescue.rerouted().clone();
    out.retired = rescue.retired().clone();
    out
}

/// Each worker's event-loop lag (ns), by id: what the hang watch reads,
/// without a whole snapshot.
pub fn lags(workers: &Workers) -> Vec<(u32, u64)> {
    let now_ns = crate::page::monotonic_ns();
    let every_ns = TURN_AT_LEAST_EVERY.as_nanos() as u64;
    workers
        .ids()
        .into_iter()
        .map(|id| {
            let page = workers.get(id).expect("listed ids have links").snapshot();
            (id, stats::lag_ns(&page, now_ns, every_ns))
        })
        .collect()
}
