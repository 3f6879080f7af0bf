'use strict';
// cluster.metrics(): a stats snapshot (js/stats.js) as Prometheus text
// exposition, format 0.0.4. Base units (seconds, bytes); counters end in
// _total. Per-worker series come and go with their workers; the cluster-wide
// counters keep what departed workers counted, so they never go back.

const { RESTART_REASONS } = require('./stats');

const STATES = ['none', 'online', 'listening', 'draining', 'disconnected', 'dead'];
const REROUTE_REASONS = { died: 'died', draining: 'draining', stalled: 'stalled', busy: 'busy', refused: 'refused', outOfFds: 'out_of_fds' };

function escapeLabel(value) {
  return `${value}`.replace(/[\\"\n]/g, (c) => (c === '\n' ? '\\n' : `\\${c}`));
}

function escapeHelp(text) {
  return text.replace(/[\\\n]/g, (c) => (c === '\n' ? '\\n' : '\\\\'));
}

function number(value) {
  if (value === Infinity) return '+Inf';
  if (value === -Infinity) return '-Inf';
  return Number.isNaN(value) ? 'NaN' : `${value}`;
}

function labels(set) {
  const pairs = Object.entries(set).map(([k, v]) => `${k}="${escapeLabel(v)}"`);
  return pairs.length === 0 ? '' : `{${pairs.join(',')}}`;
}

// One family: HELP, TYPE, then its samples as [labels, value] (or, for a
// histogram, [name suffix, labels, value]); a null value is left out.
function family(out, name, type, help, samples) {
  out.push(`# HELP ${name} ${escapeHelp(help)}`, `# TYPE ${name} ${type}`);
  for (const s of samples) {
    const [suffix, set, value] = s.length === 3 ? s : ['', s[0], s[1]];
    if (value != null) out.push(`${name}${suffix}${labels(set)} ${number(value)}`);
  }
}

function render(stats) {
  const out = [];
  const perWorker = (pick) => stats.workers.map((w) => [{ worker: w.id }, pick(w)]);
  family(out, 'rs_cluster_connections_accepted_total', 'counter',
         'Connections a worker read from the primary or accepted itself; worker="retired" keeps those of workers that are gone.',
         [...perWorker((w) => w.accepted), [{ worker: 'retired' }, stats.totals.accepted - stats.workers.reduce((a, w) => a + w.accepted, 0)]]);
  family(out, 'rs_cluster_connections_active', 'gauge', 'Connections open in a worker\'s servers.',
         perWorker((w) => w.active));
  family(out, 'rs_cluster_connections_pending', 'gauge', 'Connections handed to a worker that it has not taken yet.',
         perWorker((w) => w.pending));
  family(out, 'rs_cluster_connections_rerouted_total', 'counter',
         'Connections served by another worker than the one first chosen, by why.',
         Object.entries(REROUTE_REASONS).map(([key, reason]) => [{ reason }, stats.rerouted[key]]));
  const h = stats.totals.handoff;
  family(out, 'rs_cluster_handoff_seconds', 'histogram',
         'Time from accept in the primary to the connection event in the worker, all workers including departed ones.', [
           ...stats.handoffBounds.map((le, i) => ['_bucket', { le: number(le) }, h.buckets[i]]),
           ['_bucket', { le: '+Inf' }, h.count],
           ['_sum', {}, h.sum],
           ['_count', {}, h.count],
         ]);
  family(out, 'rs_cluster_event_loop_lag_seconds', 'gauge',
         'How far behind a worker\'s event loop is (grows while it is stuck).', perWorker((w) => w.eventLoopLag));
  family(out, 'rs_cluster_worker_resident_memory_bytes', 'gauge', 'Resident set size of a worker process.',
         perWorker((w) => w.rss));
  family(out, 'rs_cluster_worker_cpu_seconds_total', 'counter', 'User and system CPU time of a worker process.',
         perWorker((w) => w.cpu));
  family(out, 'rs_cluster_worker_restarts_total', 'counter', 'Workers replaced by the supervisor, by why.',
         RESTART_REASONS.map((reason) => [{ reason }, stats.restarts[reason]]));
  family(out, 'rs_cluster_workers', 'gauge', 'Worker processes by state.',
         STATES.map((state) => [{ state }, stats.workers.filter((w) => w.state === state).length]));
  family(out, 'rs_cluster_listen_queue', 'gauge', 'Connections waiting in a listener\'s kernel accept queue.',
         stats.listeners.map((l) => [{ listener: l.address }, l.queue]));
  family(out, 'rs_cluster_listen_queue_limit', 'gauge', 'The length limit of a listener\'s kernel accept queue (its backlog).',
         stats.listeners.map((l) => [{ listener: l.address }, l.queueLimit]));
  family(out, 'rs_cluster_reloads_total', 'counter', 'Rolling reloads started.', [[{}, stats.reloads]]);
  const { policy, sticky } = stats.routing;
  family(out, 'rs_cluster_info', 'gauge', 'The scheduling policy in use (and the sticky key, with policy="sticky").',
         [[sticky === null ? { policy } : { policy, sticky_key: sticky }, 1]]);
  return `${out.join('\n')}\n`;
}

module.exports = { render };
