//! The reactor's stats snapshot (`rs_cluster_core::primary::stats`) as plain
//! JS objects for `PrimaryReactor.stats()` and `.lags()`: js/stats.js builds
//! `cluster.stats()` from them, whose shape index.d.ts types. Counters are
//! u64 in the core; they reach JS as numbers (f64: exact up to 2^53, which no
//! counter here comes near), never BigInt. A `None` is `null`, as in the
//! public `cluster.stats()`.

use napi_derive::napi;
use rs_cluster_core::primary::stats::{ListenerStats, Rerouted, Stats, Totals, WorkerStats};

/// One worker's counters, as the reactor sees them.
#[napi(object, use_nullable = true)]
pub struct ReactorWorker {
    pub id: u32,
    /// False once it is disconnecting.
    pub routing: bool,
    /// Its loop stood still with connections waiting.
    pub stalled: bool,
    pub accepted: f64,
    pub pending: f64,
    pub active: f64,
    pub rerouted: f64,
    pub refused: f64,
    /// How far behind its event loop is, ns.
    pub lag_ns: f64,
    pub handoff_sum_ns: f64,
    /// Hand-offs per bucket (not cumulative), the last one +Inf.
    pub handoff: Vec<f64>,
}

/// One listener, as `cluster.stats().listeners` shows it.
#[napi(object, use_nullable = true)]
pub struct ReactorListener {
    pub id: u32,
    /// `host:port`, `[v6]:port`, or the unix socket's path.
    pub address: String,
    /// Its values are index.d.ts's `ListenerStats.policy`.
    #[napi(ts_type = "'none' | 'rr' | 'least' | 'sticky' | 'random'")]
    pub policy: String,
    /// Its values are index.d.ts's `ListenerStats.placement`.
    #[napi(ts_type = "'primary' | 'kernel' | 'shared'")]
    pub placement: String,
    pub workers: Vec<u32>,
    /// Accepted by the primary (when it accepts).
    pub accepted: Option<f64>,
    /// The kernel's accept queue and its limit (TCP on Linux).
    pub queue: Option<u32>,
    pub queue_limit: Option<u32>,
    pub waiting: u32,
    pub sticky_keys: u32,
}

/// Connections served by another worker than the one first chosen, by why.
#[napi(object)]
pub struct ReactorRerouted {
    pub died: f64,
    pub draining: f64,
    pub stalled: f64,
    pub busy: f64,
    pub refused: f64,
    pub out_of_fds: f64,
}

/// What departed workers counted.
#[napi(object)]
pub struct ReactorTotals {
    pub accepted: f64,
    pub handoff_sum_ns: f64,
    pub handoff: Vec<f64>,
}

#[napi(object)]
pub struct ReactorStats {
    pub workers: Vec<ReactorWorker>,
    pub listeners: Vec<ReactorListener>,
    pub rerouted: ReactorRerouted,
    pub retired: ReactorTotals,
    /// Upper bounds of the hand-off buckets, ns; +Inf follows.
    pub handoff_bounds_ns: Vec<f64>,
}

/// One worker's event-loop lag, for the hang watch.
#[napi(object)]
pub struct WorkerLag {
    pub id: u32,
    pub lag_ns: f64,
}

fn numbers(v: &[u64]) -> Vec<f64> {
    v.iter().map(|&n| n as f64).collect()
}

// usize counts of things held in memory: far below u32::MAX.
fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl From<&WorkerStats> for ReactorWorker {
    fn from(w: &WorkerStats) -> Self {
        ReactorWorker {
            id: w.id,
            routing: w.routing,
            stalled: w.stalled,
            accepted: w.accepted as f64,
            pending: w.pending as f64,
            active: w.active as f64,
            rerouted: w.rerouted as f64,
            refused: w.refused as f64,
            lag_ns: w.lag_ns as f64,
            handoff_sum_ns: w.handoff_sum_ns as f64,
            handoff: numbers(&w.handoff),
        }
    }
}

impl From<&ListenerStats> for ReactorListener {
    fn from(l: &ListenerStats) -> Self {
        ReactorListener {
            id: l.id,
            address: l.address.clone(),
            policy: l.policy.to_string(),
            placement: l.placement.to_string(),
            workers: l.workers.clone(),
            accepted: l.accepted.map(|n| n as f64),
            queue: l.queue,
            queue_limit: l.queue_limit,
            waiting: count(l.waiting),
            sticky_keys: count(l.sticky_keys),
        }
    }
}

impl From<&Rerouted> for ReactorRerouted {
    fn from(r: &Rerouted) -> Self {
        ReactorRerouted {
            died: r.died as f64,
            draining: r.draining as f64,
            stalled: r.stalled as f64,
            busy: r.busy as f64,
            refused: r.refused as f64,
            out_of_fds: r.out_of_fds as f64,
        }
    }
}

impl From<&Totals> for ReactorTotals {
    fn from(t: &Totals) -> Self {
        ReactorTotals {
            accepted: t.accepted as f64,
            handoff_sum_ns: t.handoff_sum_ns as f64,
            handoff: numbers(&t.handoff),
        }
    }
}

impl From<&Stats> for ReactorStats {
    fn from(s: &Stats) -> Self {
        ReactorStats {
            workers: s.workers.iter().map(ReactorWorker::from).collect(),
            listeners: s.listeners.iter().map(ReactorListener::from).collect(),
            rerouted: ReactorRerouted::from(&s.rerouted),
            retired: ReactorTotals::from(&s.retired),
            handoff_bounds_ns: numbers(&s.handoff_bounds_ns),
        }
    }
}
