'use strict';
// cluster.metrics(): a stats snapshot (js/stats.js) as Prometheus text
// exposition, format 0.0.4. Base units (seconds, bytes); counters end in
// _total. Per-worker series come and go with their workers; the cluster-wide
// counters keep what departed workers counted, so they never go back.
//
// METRICS is the one list of what is exported: each family's name, type,
// labels, help, and where its samples come from in the snapshot. README's
// metrics table and index.d.ts's Stats are held to it by
// __test__/metrics-schema.test.js.

const { RESTART_REASONS } = require('./stats');

const STATES = ['none', 'online', 'listening', 'draining', 'disconnected', 'dead'];
const REROUTE_REASONS = { died: 'died', draining: 'draining', stalled: 'stalled', busy: 'busy', refused: 'refused', outOfFds: 'out_of_fds' };

/** @typedef {import('../index').Stats} Stats */
/** @typedef {[Record<string, string | number>, number | null] | [string, Record<string, string | number>, number | null]} Sample */
/**
 * @typedef {object} Metric
 * @property {string} name
 * @property {'counter' | 'gauge' | 'histogram'} type
 * @property {string[]} labels the label names its samples carry
 * @property {string} help
 * @property {(stats: Stats) => Sample[]} samples [labels, value], or for a histogram [name suffix, labels, value]; a null value is left out
 * @property {true} [native] counted by the native primary: no samples without it (cluster.native false)
 */

/** @param {Stats} stats @param {(w: Stats['workers'][number]) => number | null} pick @returns {Sample[]} */
const perWorker = (stats, pick) => stats.workers.map((w) => [{ worker: w.id }, pick(w)]);

/** @type {Metric[]} */
const METRICS = [
  {
    name: 'rs_cluster_connections_accepted_total', type: 'counter', labels: ['worker'], native: true,
    help: 'Connections a worker read from the primary or accepted itself; worker="retired" keeps those of workers that are gone.',
    samples: (s) => [...perWorker(s, (w) => w.accepted),
      [{ worker: 'retired' }, s.totals.accepted === null ? null : s.totals.accepted - s.workers.reduce((a, w) => a + (w.accepted ?? 0), 0)]],
  },
  {
    name: 'rs_cluster_connections_active', type: 'gauge', labels: ['worker'], native: true,
    help: 'Connections open in a worker\'s servers.',
    samples: (s) => perWorker(s, (w) => w.active),
  },
  {
    name: 'rs_cluster_connections_pending', type: 'gauge', labels: ['worker'], native: true,
    help: 'Connections handed to a worker that it has not taken yet.',
    samples: (s) => perWorker(s, (w) => w.pending),
  },
  {
    name: 'rs_cluster_connections_rerouted_total', type: 'counter', labels: ['reason'], native: true,
    help: 'Connections served by another worker than the one first chosen, by why.',
    samples: ({ rerouted }) => (rerouted === null ? []
      : Object.entries(REROUTE_REASONS).map(([key, reason]) => [{ reason }, rerouted[/** @type {keyof typeof rerouted} */ (key)]])),
  },
  {
    name: 'rs_cluster_handoff_seconds', type: 'histogram', labels: [], native: true,
    help: 'Time from accept in the primary to the connection event in the worker, all workers including departed ones.',
    samples: (s) => {
      const h = s.totals.handoff;
      if (h === null) return [];
      return [
        ...s.handoffBounds.map((le, i) => /** @type {Sample} */ (['_bucket', { le: number(le) }, h.buckets[i]])),
        ['_bucket', { le: '+Inf' }, h.count],
        ['_sum', {}, h.sum],
        ['_count', {}, h.count],
      ];
    },
  },
  {
    name: 'rs_cluster_event_loop_lag_seconds', type: 'gauge', labels: ['worker'], native: true,
    help: 'How far behind a worker\'s event loop is (grows while it is stuck).',
    samples: (s) => perWorker(s, (w) => w.eventLoopLag),
  },
  {
    name: 'rs_cluster_worker_resident_memory_bytes', type: 'gauge', labels: ['worker'],
    help: 'Resident set size of a worker process.',
    samples: (s) => perWorker(s, (w) => w.rss),
  },
  {
    name: 'rs_cluster_worker_cpu_seconds_total', type: 'counter', labels: ['worker'],
    help: 'User and system CPU time of a worker process.',
    samples: (s) => perWorker(s, (w) => w.cpu),
  },
  {
    name: 'rs_cluster_worker_restarts_total', type: 'counter', labels: ['reason'],
    help: 'Workers replaced by the supervisor, by why.',
    samples: (s) => RESTART_REASONS.map((reason) => [{ reason }, s.restarts[/** @type {keyof Stats['restarts']} */ (reason)]]),
  },
  {
    name: 'rs_cluster_workers', type: 'gauge', labels: ['state'],
    help: 'Worker processes by state.',
    samples: (s) => STATES.map((state) => [{ state }, s.workers.filter((w) => w.state === state).length]),
  },
  {
    name: 'rs_cluster_listen_queue', type: 'gauge', labels: ['listener'], native: true,
    help: 'Connections waiting in a listener\'s kernel accept queue.',
    samples: (s) => s.listeners.map((l) => [{ listener: l.address }, l.queue]),
  },
  {
    name: 'rs_cluster_listen_queue_limit', type: 'gauge', labels: ['listener'], native: true,
    help: 'The length limit of a listener\'s kernel accept queue (its backlog).',
    samples: (s) => s.listeners.map((l) => [{ listener: l.address }, l.queueLimit]),
  },
  {
    name: 'rs_cluster_listener_info', type: 'gauge', labels: ['listener', 'policy', 'placement'], native: true,
    help: 'A listener\'s scheduling policy and who places its connections (primary, kernel or shared); always 1.',
    samples: (s) => s.listeners.map((l) => [{ listener: l.address, policy: l.policy, placement: l.placement }, 1]),
  },
  {
    name: 'rs_cluster_reloads_total', type: 'counter', labels: [],
    help: 'Rolling reloads started.',
    samples: (s) => [[{}, s.reloads]],
  },
  {
    name: 'rs_cluster_info', type: 'gauge', labels: ['policy', 'sticky_key'],
    help: 'The scheduling policy in use (and the sticky key, with policy="sticky").',
    samples: ({ routing: { policy, sticky } }) => {
      /** @type {Record<string, string>} */
      const set = { policy };
      if (sticky !== null) set.sticky_key = sticky;
      return [[set, 1]];
    },
  },
];

/** @param {unknown} value */
function escapeLabel(value) {
  return `${value}`.replace(/[\\"\n]/g, (c) => (c === '\n' ? '\\n' : `\\${c}`));
}

/** @param {string} text */
function escapeHelp(text) {
  return text.replace(/[\\\n]/g, (c) => (c === '\n' ? '\\n' : '\\\\'));
}

/** @param {number} value */
function number(value) {
  if (value === Infinity) return '+Inf';
  if (value === -Infinity) return '-Inf';
  return Number.isNaN(value) ? 'NaN' : `${value}`;
}

/** @param {Record<string, string | number>} set */
function labels(set) {
  const pairs = Object.entries(set).map(([k, v]) => `${k}="${escapeLabel(v)}"`);
  return pairs.length === 0 ? '' : `{${pairs.join(',')}}`;
}

/** @param {Stats} stats */
function render(stats) {
  const out = [];
  // Without the native primary (its counters null), its families are not exported.
  const counted = stats.rerouted !== null;
  for (const m of METRICS) {
    if (m.native && !counted) continue;
    out.push(`# HELP ${m.name} ${escapeHelp(m.help)}`, `# TYPE ${m.name} ${m.type}`);
    for (const s of m.samples(stats)) {
      const [suffix, set, value] = s.length === 3 ? s : ['', s[0], s[1]];
      if (value != null) out.push(`${m.name}${suffix}${labels(set)} ${number(value)}`);
    }
  }
  return `${out.join('\n')}\n`;
}

module.exports = { render, METRICS };
