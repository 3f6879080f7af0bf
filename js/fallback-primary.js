'use strict';
// The primary's additions on node:cluster itself, for a primary without the
// native addon (js/fallback.js): the supervisor (respawn, reload, drain
// timeout, maxMemory, waitReady, the reload signal), stats, metrics and the
// endpoint. They hook node:cluster's own setupPrimary, fork, disconnect and
// Worker methods; node:cluster still accepts and shares every connection.
// Connection counters, hand-off times and event-loop lags live in the Rust
// primary: here they are null in cluster.stats() and absent from /metrics.

const settingsSpec = require('./settings');
const { createSupervisor } = require('./supervisor');
const stats = require('./stats');
const { nativeRequired, NATIVE_POLICIES } = require('./fallback');
// Loaded now, not at a fork that may be short of fds.
const metricsServer = require('./metrics-server');
const prometheus = require('./prometheus');

// The settings only the Rust primary carries out, with what to call them.
/** @type {[string, (value: any) => boolean, string][]} */
const NATIVE_SETTINGS = [
  ['sticky', (v) => v !== undefined, 'The sticky setting (policy sticky)'],
  ['placement', (v) => v === 'kernel', 'Kernel placement (placement: \'kernel\')'],
  ['hangTimeout', (v) => v > 0, 'Hang detection (hangTimeout), which reads each worker\'s page shared with the Rust primary,'],
  ['control', (v) => v !== undefined, 'The control socket (control), which checks its peers and hands sockets over natively,'],
];

/**
 * @param {import('node:cluster').Cluster & Record<string, any>} cluster node:cluster's own object
 * @returns {import('./index').ClusterObject}
 */
function extend(cluster) {
  const original = {
    setupPrimary: cluster.setupPrimary,
    fork: cluster.fork,
    disconnect: cluster.disconnect,
    workerDisconnect: cluster.Worker.prototype.disconnect,
    workerDestroy: cluster.Worker.prototype.destroy,
  };
  let stopping = false;
  // The workers forked through us: one forked before rs-cluster was
  // loaded has no supervisor state.
  const ours = new WeakSet();

  // rs-cluster's own policies: their constants say why they are not here.
  for (const name of NATIVE_POLICIES) {
    const constant = `SCHED_${name.toUpperCase()}`;
    Object.defineProperty(cluster, constant, {
      get() { throw nativeRequired(`cluster.${constant}`); }, enumerable: false, configurable: true,
    });
  }

  const supervisor = createSupervisor(/** @type {any} */ (cluster), {
    inherit() {}, // no sticky keys to move
    lags: () => new Map(), // hangTimeout is refused
  });

  const probes = {
    health: () => (Object.values(cluster.workers ?? {}).some((w) => /** @type {any} */ (w)?.state === 'listening') ? null : 'no worker listens'),
    ready: () => (stopping ? 'stopping: no new work' : probes.health()),
  };

  const routing = () => ({ policy: /** @type {'rr' | 'none'} */ (cluster.schedulingPolicy === cluster.SCHED_RR ? 'rr' : 'none'), sticky: null });
  const snapshot = () => stats.snapshot(null, routing());
  const define = (name, value) => Object.defineProperty(cluster, name, { value, writable: true, configurable: true });
  define('reload', supervisor.reload);
  define('stats', snapshot);
  define('metrics', () => prometheus.render(snapshot()));

  // Asked of the first setupPrimary: node:cluster reads the variable once, when it loads.
  function checkPolicyEnv() {
    const name = process.env.NODE_CLUSTER_SCHED_POLICY;
    if (NATIVE_POLICIES.includes(/** @type {string} */ (name))) throw nativeRequired(`NODE_CLUSTER_SCHED_POLICY=${name}`);
  }

  cluster.setupPrimary = function setupPrimary(options) {
    if (options != null) settingsSpec.validate(options);
    checkPolicyEnv();
    const merged = { ...supervisor.settingsFromEnv(), ...cluster.settings, ...options };
    for (const [key, asks, what] of NATIVE_SETTINGS) {
      if (asks(merged[key])) throw nativeRequired(what);
    }
    original.setupPrimary.call(cluster, merged);
    metricsServer.follow(cluster, probes, cluster.settings);
  };
  cluster.setupMaster = cluster.setupPrimary;

  cluster.fork = function fork(env) {
    const worker = original.fork.call(cluster, env);
    ours.add(worker);
    stats.track(worker);
    supervisor.forked(worker, env);
    worker.on('online', () => supervisor.online(worker));
    worker.on('listening', (address) => supervisor.listening(worker, address));
    worker.on('message', (message) => supervisor.message(worker, message));
    // After node:cluster's own, which marks the worker dead first.
    worker.process.once('exit', (code, signal) => {
      stats.untrack(worker);
      supervisor.exited(worker, code, signal);
    });
    return worker;
  };

  cluster.disconnect = function disconnect(cb) {
    stopping = true;
    supervisor.disconnectingAll();
    return original.disconnect.call(cluster, cb);
  };

  // The drain timeout starts when a worker is told to go.
  cluster.Worker.prototype.disconnect = function disconnect() {
    if (ours.has(this)) supervisor.disconnecting(this);
    return original.workerDisconnect.call(this);
  };

  cluster.Worker.prototype.destroy = function destroy(signo) {
    if (ours.has(this)) supervisor.destroying(this);
    return original.workerDestroy.call(this, signo);
  };

  return /** @type {any} */ (cluster);
}

module.exports = { extend };
