'use strict';
// The primary's side of the cluster API. Process management and events
// follow node:cluster; server handles and connections belong to the Rust
// reactor (`PrimaryReactor`), which this file only feeds with workers.

const EventEmitter = require('node:events');
const { fork: forkProcess } = require('node:child_process');
const Worker = require('./worker');
const messages = require('./messages');
const { badPort, validatePort } = require('./errors');
const native = require('./native');
const { WORKER_ENV, CHANNEL_ENV } = require('./env');

const SCHED_NONE = 1;
const SCHED_RR = 2;

const cluster = new EventEmitter();
const intercom = new EventEmitter();

cluster.isWorker = false;
cluster.isMaster = true;
cluster.isPrimary = true;
cluster.Worker = Worker;
cluster.workers = {};
cluster.settings = {};
cluster.SCHED_NONE = SCHED_NONE;
cluster.SCHED_RR = SCHED_RR;

const envPolicy = process.env.NODE_CLUSTER_SCHED_POLICY;
cluster.schedulingPolicy = envPolicy === 'none' ? SCHED_NONE
  : envPolicy === 'rr' ? SCHED_RR
    : process.platform === 'win32' ? SCHED_NONE : SCHED_RR;

let nextId = 0;
let initialized = false;
let schedulingPolicy;
let reactor = null;

const INSPECT_ARG = /--inspect(?:-brk|-port)?|--debug-port/;
let inspectPortOffset = 1;

function usesInspector(execArgv) {
  return execArgv.some((a) => INSPECT_ARG.test(a)) || INSPECT_ARG.test(process.env.NODE_OPTIONS || '');
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
  const settings = {
    args: process.argv.slice(2),
    exec: process.argv[1],
    execArgv: process.execArgv,
    silent: false,
    ...cluster.settings,
    ...options,
  };
  // V8 profiles of several processes in one file are unusable.
  if (settings.execArgv.some((a) => a.startsWith('--prof')) &&
      !settings.execArgv.some((a) => a.startsWith('--logfile='))) {
    settings.execArgv = [...settings.execArgv, '--logfile=v8-%p.log'];
  }
  cluster.settings = settings;
  if (!initialized) {
    initialized = true;
    schedulingPolicy = cluster.schedulingPolicy;
    if (schedulingPolicy !== SCHED_NONE && schedulingPolicy !== SCHED_RR) {
      const err = new Error(`Bad cluster.schedulingPolicy: ${schedulingPolicy}`);
      err.code = 'ERR_INTERNAL_ASSERTION';
      throw err;
    }
  }
  process.nextTick(emitSetup, settings);
};
cluster.setupMaster = cluster.setupPrimary;

function getReactor() {
  if (reactor === null) {
    reactor = new native.PrimaryReactor(schedulingPolicy, onReactorEvent);
  }
  return reactor;
}

// A worker broke the control protocol; the reactor has already cut it off.
function onReactorEvent(event) {
  const worker = cluster.workers[event.workerId];
  const err = new Error(event.message);
  err.code = event.code;
  if (worker && worker.listenerCount('error') > 0) {
    worker.emit('error', err);
  } else {
    process.emitWarning(`rs-cluster: worker ${event.workerId}: ${event.message}`, {
      code: event.code,
    });
  }
}

// Our control channel rides after Node's stdio entries (including 'ipc').
function stdioWith(channelFd) {
  const { stdio, silent } = cluster.settings;
  let base;
  if (Array.isArray(stdio)) {
    base = [...stdio];
  } else if (typeof stdio === 'string') {
    base = [stdio, stdio, stdio, 'ipc'];
  } else if (stdio === undefined) {
    base = silent ? ['pipe', 'pipe', 'pipe', 'ipc'] : ['inherit', 'inherit', 'inherit', 'ipc'];
  } else {
    return { stdio, index: -1 };
  }
  const index = base.length;
  base.push(channelFd);
  return { stdio: base, index };
}

function createWorkerProcess(id, env, channelFd) {
  const settings = cluster.settings;
  const execArgv = [...settings.execArgv];
  if (settings.inspectPort === null) throw badPort('Port', null, true);
  if (usesInspector(settings.execArgv)) {
    execArgv.push(`--inspect-port=${nextInspectPort(settings.inspectPort)}`);
  }
  const { stdio, index } = stdioWith(channelFd);
  // Never NODE_UNIQUE_ID: that would start Node's own cluster worker.
  const workerEnv = { ...process.env, ...env, [WORKER_ENV]: `${id}`, [CHANNEL_ENV]: `${index}` };
  return forkProcess(settings.exec, settings.args, {
    cwd: settings.cwd,
    env: workerEnv,
    serialization: settings.serialization,
    silent: settings.silent,
    windowsHide: settings.windowsHide,
    execArgv,
    stdio,
    gid: settings.gid,
    uid: settings.uid,
  });
}

function removeWorker(worker) {
  delete cluster.workers[worker.id];
  if (Object.keys(cluster.workers).length === 0) intercom.emit('disconnect');
}

cluster.fork = function fork(env) {
  cluster.setupPrimary();
  const id = ++nextId;
  const r = getReactor();
  const [primaryEnd, workerEnd] = native.controlPair();
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
  r.addWorker(id, primaryEnd);

  const worker = new Worker({ id, process: child });
  worker.on('message', function onMessage(message, handle) {
    cluster.emit('message', this, message, handle);
  });

  child.once('exit', (exitCode, signalCode) => {
    r.workerExited(id);
    // It stays listed until both disconnect and exit have happened.
    if (!worker.isConnected()) removeWorker(worker);
    worker.exitedAfterDisconnect = !!worker.exitedAfterDisconnect;
    worker.state = 'dead';
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
  messages.send(this.process, { act: 'disconnect' });
  if (reactor !== null) reactor.stopRouting(this.id);
  removeWorker(this);
  return this;
};

Worker.prototype.destroy = function destroy(signo) {
  this.process.kill(signo || 'SIGTERM');
};

module.exports = cluster;
