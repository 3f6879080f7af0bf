'use strict';
// The primary's side of the cluster API. Process management and events
// follow node:cluster; server handles and connections belong to the Rust
// reactor (`PrimaryReactor`), which this file only feeds with workers.

const EventEmitter = require('node:events');
const { fork: forkProcess, ChildProcess } = require('node:child_process');
const Worker = require('./worker');
const messages = require('./messages');
const { badPort, validatePort, internalAssertion } = require('./errors');
const native = require('./native');
const settingsSpec = require('./settings');
const { createSupervisor } = require('./supervisor');
const { explainDeniedPreload } = require('./preload-access');
const stats = require('./stats');
const { WORKER_ENV, CHANNEL_ENV, PRELOAD_ENV, WINDOW_ENV, ADDON_ENV } = require('./env');

// The scheduling policies, from the Rust table (crates/core/src/primary/
// policy/mod.rs): name -> cluster.SCHED_* value. rs-cluster's own values are
// far from Node's, so a value node:cluster rejects (3, 4 …) is rejected here too.
const POLICY_TABLE = native.policies();
const POLICIES = Object.fromEntries(POLICY_TABLE.map((p) => [p.name, p.sched]));
const SCHED_NONE = POLICIES.none;
const SCHED_RR = POLICIES.rr;

const cluster = /** @type {import('./index').ClusterObject} */ (new EventEmitter());
const intercom = new EventEmitter();

cluster.isWorker = false;
cluster.isMaster = true;
cluster.isPrimary = true;
cluster.Worker = Worker;
cluster.workers = {};
cluster.settings = {};
cluster.SCHED_NONE = SCHED_NONE;
cluster.SCHED_RR = SCHED_RR;
// rs-cluster's own are not enumerable, so the cluster object's keys stay node:cluster's.
for (const { constant, sched } of POLICY_TABLE) {
  if (sched !== SCHED_NONE && sched !== SCHED_RR) Object.defineProperty(cluster, constant, { value: sched, enumerable: false });
}

// Respawn, drain, reload and memory limits (js/supervisor.js), all opt-in.
// `reload` is not enumerable: the object's keys stay node:cluster's.
const supervisor = createSupervisor(cluster, {
  // A replacement takes over its predecessor's sticky keys.
  inherit(from, to) {
    if (reactor !== null) reactor.inherit(from.id, to.id);
  },
  // Only the lags, not a stats snapshot: this runs up to every 50 ms.
  lags() {
    const lags = reactor === null ? null : reactor.lags();
    return new Map((lags ?? []).map((w) => [w.id, w.lagNs / 1e6]));
  },
});
Object.defineProperty(cluster, 'reload', { value: supervisor.reload, writable: true, configurable: true });
// Observability (js/stats.js, js/prometheus.js); the endpoint only if asked.
/** @returns {import('../index').Stats['routing']} */
function routingInfo() {
  const policy = initialized ? schedulingPolicy : cluster.schedulingPolicy;
  const name = /** @type {import('../index').Stats['routing']['policy']} */ (
    Object.keys(POLICIES).find((k) => POLICIES[k] === policy) ?? 'none');
  return { policy: name, sticky: name === 'sticky' ? cluster.settings.sticky ?? 'ip' : null };
}
Object.defineProperty(cluster, 'stats', {
  value: () => stats.snapshot(reactor, routingInfo()), writable: true, configurable: true,
});
Object.defineProperty(cluster, 'metrics', {
  value: () => require('./prometheus').render(stats.snapshot(reactor, routingInfo())), writable: true, configurable: true,
});
let metricsServer = null;
let metricsAddress;

const envPolicy = process.env.NODE_CLUSTER_SCHED_POLICY;
cluster.schedulingPolicy = Object.hasOwn(POLICIES, envPolicy) ? POLICIES[envPolicy]
  : process.platform === 'win32' ? SCHED_NONE : SCHED_RR;

let nextId = 0;
let initialized = false;
let schedulingPolicy;
/** @type {import('../binding.js').PrimaryReactor | null} */
let reactor = null;

const INSPECT_ARG = /--inspect(?:-brk|-port)?|--debug-port/;
let inspectPortOffset = 1;

// Array-likes and non-string entries are handled as node:cluster handles them.
const some = (list, fn) => Array.prototype.some.call(list, fn);
const startsWith = (value, prefix) => String.prototype.startsWith.call(value, prefix);

// Decided once per execArgv array, as node:cluster does: flags pushed onto
// the same array after a fork do not change the answer.
const inspectorUse = new WeakMap();
function usesInspector(execArgv) {
  let uses = inspectorUse.get(execArgv);
  if (uses === undefined) {
    uses = some(execArgv, (a) => INSPECT_ARG.test(a)) || INSPECT_ARG.test(process.env.NODE_OPTIONS || '');
    inspectorUse.set(execArgv, uses);
  }
  return uses;
}

// Each worker gets its own inspector port, counting up from the primary's.
function nextInspectPort(inspectPort) {
  let port = inspectPort;
  if (typeof port === 'function') {
    port = port();
  } else if (port == null) {
    port = process.debugPort + inspectPortOffset;
    if (port > 65535) port = port - 65535 + 1024 - 1;
    inspectPortOffset++;
  }
  validatePort(port);
  return port;
}

function emitSetup(settings) {
  cluster.emit('setup', settings);
}

cluster.setupPrimary = function setupPrimary(options) {
  if (options != null) settingsSpec.validate(options);
  const settings = {
    args: process.argv.slice(2),
    exec: process.argv[1],
    execArgv: process.execArgv,
    silent: false,
    ...supervisor.settingsFromEnv(),
    ...cluster.settings,
    ...options,
  };
  // V8 profiles of several processes in one file are unusable.
  if (some(settings.execArgv, (a) => startsWith(a, '--prof')) &&
      !some(settings.execArgv, (a) => startsWith(a, '--logfile='))) {
    settings.execArgv = [...settings.execArgv, '--logfile=v8-%p.log'];
  }
  cluster.settings = settings;
  serveMetrics(settings.metrics);
  serveControl(settings.control);
  if (!initialized) {
    initialized = true;
    schedulingPolicy = cluster.schedulingPolicy;
    // The bad value stays frozen, as in node:cluster (which then shares handles).
    if (!Object.values(POLICIES).includes(schedulingPolicy)) {
      throw internalAssertion(`Bad cluster.schedulingPolicy: ${schedulingPolicy}`);
    }
  }
  process.nextTick(emitSetup, settings);
};
cluster.setupMaster = cluster.setupPrimary;

// Opens, moves or closes the metrics endpoint to match the `metrics` setting.
// A listen error (EADDRINUSE) is the cluster's 'error', thrown if nobody
// listens for it, as a server's own listen error is.
function serveMetrics(address) {
  if (address === metricsAddress) return;
  metricsAddress = address;
  if (metricsServer !== null) metricsServer.close();
  metricsServer = address === undefined ? null
    : require('./metrics-server').serve(settingsSpec.parseAddress(`${address}`), cluster, probes,
                                        (err) => cluster.emit('error', err), () => cluster.settings.metricsToken);
}

// Opens the control socket once, if the `control` setting names one.
let controlServer = null;
function serveControl(path) {
  if (path === undefined || controlServer !== null) return;
  const control = require('./control');
  control.actions.status = () => cluster.stats();
  control.actions.reload = () => cluster.reload();
  control.actions.listeners = () => (reactor === null ? [] : reactor.exportListeners() ?? []);
  control.actions.handoff = async () => {
    if (reactor !== null) {
      reactor.stopAccepting();
      // What this primary accepted goes to its workers before they drain.
      for (let i = 0; i < 100; i++) {
        const s = cluster.stats();
        if (s.listeners.every((l) => l.waiting === 0) && s.workers.every((w) => w.pending === 0)) break;
        await new Promise((r) => setTimeout(r, 20));
      }
    }
    control.actions.stop();
  };
  // As SIGTERM would: the app's (or the command's) own handler, else a graceful stop.
  control.actions.stop = () => (process.listenerCount('SIGTERM') > 0 ? process.emit('SIGTERM', 'SIGTERM') : cluster.disconnect());
  controlServer = control.serve(path, (err) => cluster.emit('error', err));
}

// Set by cluster.disconnect() (a graceful stop): from then on the cluster
// is not ready for new work, though it still serves what it has.
let stopping = false;

// What /healthz and /readyz answer: null when all is well, else why not.
const probes = {
  health() {
    if (reactor === null || reactor.lags() === null) return 'the primary\'s reactor does not answer';
    const listening = Object.values(cluster.workers).some((w) => w.state === 'listening');
    return listening ? null : 'no worker listens';
  },
  ready() {
    return stopping ? 'stopping: no new work' : probes.health();
  },
};

function getReactor() {
  if (reactor === null) {
    // An unknown policy (frozen after its assertion) shares handles, as
    // node:cluster does with anything but SCHED_RR.
    const policy = Object.values(POLICIES).includes(schedulingPolicy) ? schedulingPolicy : SCHED_NONE;
    reactor = new native.PrimaryReactor({
      policy,
      sticky: cluster.settings.sticky,
      placement: cluster.settings.placement,
      inherited: require('./systemd').adopt(),
    }, onReactorEvent);
    // Connections that may wait unread in a worker's queue (README, "Additions").
    const window = Number.parseInt(process.env[WINDOW_ENV], 10);
    if (window > 0) reactor.setWindow(window);
  }
  return reactor;
}

// A worker broke the control protocol (the reactor has already cut it off),
// or the reactor itself failed ('fatal').
function onReactorEvent(event) {
  const err = /** @type {NodeJS.ErrnoException} */ (new Error(event.message));
  err.code = event.code;
  if (event.errno != null) err.errno = event.errno;
  if (event.syscall != null) err.syscall = event.syscall;
  if (event.kind === 'fatal') {
    if (cluster.listenerCount('error') > 0) cluster.emit('error', err);
    else process.emitWarning(`rs-cluster: ${event.message}`, { code: event.code });
    return;
  }
  const worker = cluster.workers[event.workerId];
  if (worker && worker.listenerCount('error') > 0) {
    worker.emit('error', err);
  } else {
    process.emitWarning(`rs-cluster: worker ${event.workerId}: ${event.message}`, {
      code: event.code,
    });
  }
}

const STDIO_STRINGS = new Set(['pipe', 'ignore', 'inherit', 'overlapped']);

// Our control channel rides after Node's stdio entries (including 'ipc').
// Anything else is read as child_process.fork reads it: a string names all
// three streams, and a value that is neither string nor array means the
// default chosen by `silent`.
function stdioWith(channelFd) {
  const { stdio, silent } = cluster.settings;
  let base;
  if (Array.isArray(stdio)) {
    base = [...stdio];
  } else if (typeof stdio === 'string') {
    // An unknown string goes to fork as is, which rejects it with its own error.
    if (!STDIO_STRINGS.has(stdio)) return { stdio, index: -1 };
    base = [stdio, stdio, stdio, 'ipc'];
  } else {
    base = silent ? ['pipe', 'pipe', 'pipe', 'ipc'] : ['inherit', 'inherit', 'inherit', 'ipc'];
  }
  const index = base.length;
  base.push(channelFd);
  return { stdio: base, index };
}

// Every worker loads rs-cluster before its own code, as Node sets up its
// worker at bootstrap: a worker script that never mentions cluster still
// goes online, and its servers are still shared. NODE_OPTIONS carries the
// preload so the worker's execArgv (and our spawnargs) stay node:cluster's;
// child.js puts the worker's own NODE_OPTIONS back from PRELOAD_ENV at once.
const PRELOAD_FILE = require.resolve('./index.js');
const PRELOAD = `--require "${PRELOAD_FILE.replace(/["\\]/g, '\\$&')}"`;

function addPreload(workerEnv) {
  const own = workerEnv.NODE_OPTIONS;
  workerEnv[PRELOAD_ENV] = JSON.stringify(own === undefined ? null : `${own}`);
  workerEnv.NODE_OPTIONS = own === undefined || `${own}` === '' ? PRELOAD : `${own} ${PRELOAD}`;
  return workerEnv;
}

function createWorkerProcess(id, env, channelFd) {
  // Spread from `cluster.settings` itself: a non-iterable fails with the same
  // TypeError text as node:cluster's.
  const execArgv = [...cluster.settings.execArgv];
  const settings = cluster.settings;
  if (settings.inspectPort === null) throw badPort('Port', null, true);
  if (usesInspector(settings.execArgv)) {
    execArgv.push(`--inspect-port=${nextInspectPort(settings.inspectPort)}`);
  }
  const { stdio, index } = stdioWith(channelFd);
  // Never NODE_UNIQUE_ID: that would start Node's own cluster worker.
  const workerEnv = addPreload({ ...process.env, ...env, [WORKER_ENV]: `${id}`, [CHANNEL_ENV]: `${index}` });
  if (native.addonFile !== null) workerEnv[ADDON_ENV] = native.addonFile;
  // windowsHide: fork passes it on to spawn, though ForkOptions omits it.
  /** @type {import('node:child_process').ForkOptions & { windowsHide?: boolean }} */
  const options = {
    cwd: settings.cwd,
    env: workerEnv,
    serialization: settings.serialization,
    silent: settings.silent,
    windowsHide: settings.windowsHide,
    execArgv,
    stdio,
    gid: settings.gid,
    uid: settings.uid,
  };
  const child = forkProcess(settings.exec, settings.args, options);
  explainDeniedPreload(PRELOAD_FILE, child, stdio, settings);
  return child;
}

function removeWorker(worker) {
  delete cluster.workers[worker.id];
  if (Object.keys(cluster.workers).length === 0) intercom.emit('disconnect');
}

// A fork that cannot even get its channel for want of fds fails as Node's
// own spawn does then: the Worker is returned, and its process emits
// 'error' (EMFILE or ENFILE, syscall `spawn <file>`) on the next tick, with
// no 'exit'.
function failedSpawn(err) {
  const file = process.execPath;
  const args = [...cluster.settings.execArgv, cluster.settings.exec, ...(cluster.settings.args || [])];
  const child = new ChildProcess();
  // Read-only for apps, set here as spawn sets them.
  Object.assign(child, { spawnfile: file, spawnargs: [file, ...args] });
  const spawnErr = new Error(`spawn ${file} ${err.code}`);
  Object.assign(spawnErr, { errno: err.errno, code: err.code, syscall: `spawn ${file}`, path: file, spawnargs: args });
  process.nextTick(() => child.emit('error', spawnErr));
  return child;
}

const OUT_OF_FDS = new Set(['EMFILE', 'ENFILE']);

cluster.fork = function fork(env) {
  cluster.setupPrimary();
  const id = ++nextId;
  let r;
  let primaryEnd;
  let workerEnd;
  try {
    r = getReactor();
    [primaryEnd, workerEnd] = native.controlPair();
  } catch (err) {
    if (!OUT_OF_FDS.has(err.code)) throw err;
    const worker = new Worker({ id, process: failedSpawn(err) });
    process.nextTick(() => cluster.emit('fork', worker));
    cluster.workers[worker.id] = worker;
    return worker;
  }
  let child;
  try {
    child = createWorkerProcess(id, env, workerEnd);
  } catch (err) {
    native.closeFd(primaryEnd);
    native.closeFd(workerEnd);
    throw err;
  }
  // The child has its copy; keeping ours would hide the worker's exit.
  native.closeFd(workerEnd);
  r.addWorker(id, primaryEnd, child.pid ?? 0);

  const worker = new Worker({ id, process: child });
  stats.track(worker);
  supervisor.forked(worker, env);
  worker.on('message', function onMessage(message, handle) {
    supervisor.message(this, message);
    cluster.emit('message', this, message, handle);
  });

  child.once('exit', (exitCode, signalCode) => {
    r.workerExited(id);
    stats.untrack(worker);
    // It stays listed until both disconnect and exit have happened.
    if (!worker.isConnected()) removeWorker(worker);
    worker.exitedAfterDisconnect = !!worker.exitedAfterDisconnect;
    worker.state = 'dead';
    supervisor.exited(worker, exitCode, signalCode);
    worker.emit('exit', exitCode, signalCode);
    cluster.emit('exit', worker, exitCode, signalCode);
  });

  child.once('disconnect', () => {
    r.stopRouting(id);
    if (worker.isDead()) removeWorker(worker);
    worker.exitedAfterDisconnect = !!worker.exitedAfterDisconnect;
    worker.state = 'disconnected';
    worker.emit('disconnect');
    cluster.emit('disconnect', worker);
  });

  child.on('internalMessage', messages.onInternal(worker, onWorkerMessage));
  process.nextTick(() => cluster.emit('fork', worker));
  cluster.workers[worker.id] = worker;
  return worker;
};

function onWorkerMessage(worker, message) {
  switch (message.act) {
    case 'online':
      worker.state = 'online';
      supervisor.online(worker);
      worker.emit('online');
      cluster.emit('online', worker);
      break;
    case 'listening': {
      const info = {
        addressType: message.addressType,
        address: message.address,
        port: message.port,
        fd: message.fd,
      };
      worker.state = 'listening';
      supervisor.listening(worker, info);
      worker.emit('listening', info);
      cluster.emit('listening', worker, info);
      break;
    }
    case 'exitedAfterDisconnect':
      worker.exitedAfterDisconnect = true;
      messages.send(worker.process, { ack: message.seq });
      break;
    default:
      break;
  }
}

cluster.disconnect = function disconnect(cb) {
  stopping = true;
  supervisor.disconnectingAll();
  const workers = Object.values(cluster.workers);
  if (workers.length === 0) {
    process.nextTick(() => intercom.emit('disconnect'));
  } else {
    for (const worker of workers) {
      if (worker.isConnected()) worker.disconnect();
    }
  }
  if (typeof cb === 'function') intercom.once('disconnect', cb);
};

Worker.prototype.disconnect = function disconnect() {
  this.exitedAfterDisconnect = true;
  // `drain`: close idle keep-alive connections, none kept alive after (js/drain.js).
  messages.send(this.process, { act: 'disconnect', drain: supervisor.disconnecting(this) });
  if (reactor !== null) reactor.stopRouting(this.id);
  removeWorker(this);
  return this;
};

Worker.prototype.destroy = function destroy(signo) {
  supervisor.destroying(this);
  this.process.kill(signo || 'SIGTERM');
};

module.exports = cluster;
