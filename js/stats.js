'use strict';
// cluster.stats(): one snapshot of the cluster, taken when asked. The
// connection counters come from the Rust reactor (crates/core/src/primary/
// stats.rs), which reads each worker's shared page: no message to any worker.
// Pid, state, memory and CPU come from the primary's side. Restarts and
// reloads are counted here by the supervisor, which does them.

const { processInfo } = require('./procinfo');
const { quantile } = require('./status/view');

const NS = 1e9;

// Workers whose process has not exited, by id: cluster.workers drops a
// worker as soon as it is told to disconnect, but it still serves what it has.
const live = new Map();
// The restarts behind each worker: its predecessor's, plus one.
const restartsOf = new WeakMap();
// Restarts by why (the 'restart' event's reasons), in the order exported.
/** @type {import('../index').Stats['restarts']} */
const restarts = { crash: 0, hang: 0, memory: 0, reload: 0 };
const RESTART_REASONS = Object.keys(restarts);
let reloads = 0;

function track(worker) {
  live.set(worker.id, worker);
}

function untrack(worker) {
  live.delete(worker.id);
}

// The supervisor forked `worker` to replace `previous` for `reason`.
function countRestart(reason, previous, worker) {
  restarts[reason]++;
  restartsOf.set(worker, (restartsOf.get(previous) ?? 0) + 1);
}

function countReload() {
  reloads++;
}

// What the reactor reports before it exists (no fork yet).
const NO_REACTOR = {
  workers: [],
  listeners: [],
  rerouted: { died: 0, draining: 0, stalled: 0, busy: 0, refused: 0, outOfFds: 0 },
  retired: { accepted: 0, handoffSumNs: 0, handoff: [] },
  handoffBoundsNs: [],
};

/**
 * @param {import('../binding').PrimaryReactor | null} reactor
 * @returns {import('../binding').ReactorStats}
 */
function readReactor(reactor) {
  if (reactor === null) return NO_REACTOR;
  const raw = reactor.stats();
  if (raw === null) {
    throw Object.assign(new Error('rs-cluster: the primary\'s reactor did not answer for stats within 1 s'), { code: 'ETIMEDOUT' });
  }
  return raw;
}

// A hand-off histogram in seconds: quantiles, count, sum, and the buckets
// cumulative (Prometheus' `le` buckets, matching `handoffBounds`, then +Inf).
function histogram(bounds, counts, sumNs) {
  const total = counts.reduce((a, b) => a + b, 0);
  let running = 0;
  return {
    p50: quantile(0.5, bounds, counts, total),
    p90: quantile(0.9, bounds, counts, total),
    p99: quantile(0.99, bounds, counts, total),
    count: total,
    sum: sumNs / NS,
    buckets: counts.map((c) => (running += c)),
  };
}

// What node:cluster calls the worker's state, with 'draining' for a worker
// told to disconnect that still serves what it has.
function stateOf(worker, routing) {
  if (worker === undefined) return 'dead';
  if (!routing && (worker.state === 'none' || worker.state === 'online' || worker.state === 'listening')) return 'draining';
  return worker.state;
}

// What the primary's side knows of a worker, for `stateOf` and `processInfo`.
function known(w) {
  const worker = live.get(w.id);
  const pid = worker === undefined ? null : worker.process.pid;
  const info = pid == null ? null : processInfo(pid);
  return {
    own: { id: w.id, pid, state: stateOf(worker, w.routing) },
    proc: { rss: info?.rss ?? null, cpu: info?.cpu ?? null, restarts: (worker && restartsOf.get(worker)) ?? 0 },
  };
}

// The reactor's counters per worker and for the cluster.
/** @param {import('../binding').ReactorStats} raw */
function counted(raw) {
  const bounds = raw.handoffBoundsNs.map((ns) => ns / NS);
  const counts = [...raw.retired.handoff];
  let sumNs = raw.retired.handoffSumNs;
  const sums = { accepted: raw.retired.accepted, active: 0, pending: 0 };
  const workers = raw.workers.map((w) => {
    const { own, proc } = known(w);
    w.handoff.forEach((c, i) => { counts[i] = (counts[i] ?? 0) + c; });
    sumNs += w.handoffSumNs;
    sums.accepted += w.accepted;
    sums.active += w.active;
    sums.pending += w.pending;
    return {
      ...own,
      stalled: w.stalled,
      accepted: w.accepted,
      active: w.active,
      pending: w.pending,
      rerouted: w.rerouted,
      refused: w.refused,
      handoff: histogram(bounds, w.handoff, w.handoffSumNs),
      eventLoopLag: w.lagNs / NS,
      ...proc,
    };
  });
  return { workers, listeners: raw.listeners, rerouted: raw.rerouted, sums, handoff: histogram(bounds, counts, sumNs), bounds };
}

// A primary without the Rust reactor (js/fallback-primary.js): its live
// workers, and null where the reactor would have counted.
function uncounted() {
  const workers = [...live.values()].map((worker) => {
    const { own, proc } = known({ id: worker.id, routing: worker.isConnected() && !worker.exitedAfterDisconnect });
    return { ...own, stalled: null, accepted: null, active: null, pending: null, rerouted: null, refused: null,
             handoff: null, eventLoopLag: null, ...proc };
  });
  return { workers, listeners: [], rerouted: null, sums: { accepted: null, active: null, pending: null }, handoff: null, bounds: [] };
}

// `raw`: the reactor's counters (readReactor), or null for a primary without
// it. `routing`: { policy: 'rr' | 'none' | 'least' | 'sticky' | 'random',
// sticky: key or null }. The shape is index.d.ts's `Stats`, checked against
// it by tsc and at run time by __test__/metrics-schema.test.js.
/**
 * @param {import('../binding').ReactorStats | null} raw
 * @param {import('../index').Stats['routing']} routing
 * @returns {import('../index').Stats}
 */
function snapshot(raw, routing) {
  const c = raw === null ? uncounted() : counted(raw);
  const cpu = process.cpuUsage();
  return {
    time: Date.now(),
    primary: { pid: process.pid, uptime: process.uptime(), rss: process.memoryUsage.rss(), cpu: (cpu.user + cpu.system) / 1e6 },
    routing,
    workers: c.workers,
    listeners: c.listeners,
    rerouted: c.rerouted,
    restarts: { ...restarts },
    reloads,
    totals: {
      workers: c.workers.length,
      ...c.sums,
      rss: c.workers.reduce((a, w) => a + (w.rss ?? 0), 0),
      cpu: c.workers.reduce((a, w) => a + (w.cpu ?? 0), 0),
      handoff: c.handoff,
    },
    handoffBounds: c.bounds,
  };
}

module.exports = { snapshot, readReactor, track, untrack, countRestart, countReload, RESTART_REASONS };
