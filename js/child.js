'use strict';
// The worker's side of the cluster API. Node's `net` and `dgram` ask the
// built-in cluster module whether they run in a worker and, if so, call its
// `_getServer(server, query, cb)` with fully normalised arguments; this file
// answers those calls through the primary's Rust reactor. Replies to its
// queries arrive on the control channel, connections on the hand-off
// channel, both read on this process's own event loop by `WorkerChannel`;
// a connection enters Node's server through its own `onconnection`.

const EventEmitter = require('node:events');
const os = require('node:os');
const path = require('node:path');
const Worker = require('./worker');
const messages = require('./messages');
const native = require('./native');
const handles = require('./handles');
const builtin = require('./builtin');
const { WORKER_ENV, CHANNEL_ENV, PRELOAD_ENV, ADDON_ENV } = require('./env');

const cluster = /** @type {import('./index').ClusterObject} */ (new EventEmitter());
cluster.isWorker = true;
cluster.isMaster = false;
cluster.isPrimary = false;
cluster.worker = null;
cluster.Worker = Worker;
Object.defineProperty(cluster, 'native', { value: true, enumerable: false, configurable: true });

// Per-process state, as in Node's child.js.
const servers = new Map(); // primary handle id -> { handle, obj, kind, rr }
const indexes = new Map(); // `address:port:addressType:fd` -> { next, live }
const pending = new Map(); // query seq -> { obj, cb, indexesKey, index, family }
let querySeq = 0;
/** @type {import('../binding.js').WorkerChannel | null} */
let channel = null;
let channelClosing = false;

// Shared with Rust, by the names of its `ConnSlot`s: the connection it
// offers (one per loop turn: its server's HANDLE and its FD), TAKEN = 1 when
// this process owns the fd, and how many connections have CLOSED and how many
// its servers accepted themselves from kernel-placed sockets (PLACED), both
// wrapping, which Rust copies into the page once per loop turn: no call into
// the addon per connection.
const { ConnSlot } = native;
const HANDLE = ConnSlot.Handle;
const FD = ConnSlot.Fd;
const TAKEN = ConnSlot.Taken;
const CLOSED = ConnSlot.Closed;
const PLACED = ConnSlot.Placed;
const conn = new Int32Array(PLACED + 1);

// The channel keeps the process alive only while a round-robin server
// listens (and is ref'd) or a query waits for its answer.
let refs = 0;
function addRef() {
  if (++refs === 1 && channel !== null) channel.ref();
}
function dropRef() {
  if (--refs === 0 && channel !== null) channel.unref();
}

// libuv 1.51 (Node 22) made readableAll/writableAll set the socket file's
// mode exactly instead of adding to it; the primary chmods as this Node would.
const PIPE_MODE = (() => {
  const [major, minor] = process.versions.uv.split('.').map(Number);
  return major > 1 || (major === 1 && minor >= 51) ? 'exact' : 'add';
})();

function familyOf(options) {
  if (options.addressType === 'udp4' || options.addressType === 'udp6') return options.addressType;
  if (typeof options.fd === 'number' && options.fd >= 0) return 'fd';
  if (options.addressType === -1 || options.port < 0) return 'pipe';
  return options.addressType === 6 ? 'tcp6' : 'tcp4';
}

function intOr(value, fallback) {
  return typeof value === 'number' && Number.isInteger(value) ? value : fallback;
}

function releaseIndex(indexesKey, index) {
  const set = indexes.get(indexesKey);
  if (!set) return;
  set.live.delete(index);
  if (set.live.size === 0) indexes.delete(indexesKey);
}

// Called by net.Server#listen and dgram.Socket#bind in this worker.
function getServer(obj, options, cb) {
  let address = options.address;
  if (options.port < 0 && typeof address === 'string' && process.platform !== 'win32') {
    address = path.resolve(address);
  }
  const indexesKey = `${address}:${options.port}:${options.addressType}:${options.fd}`;
  let set = indexes.get(indexesKey);
  if (set === undefined) {
    set = { next: 0, live: new Set() };
    indexes.set(indexesKey, set);
  }
  const index = set.next++;
  set.live.add(index);

  const seq = ++querySeq;
  const family = familyOf(options);
  const udp = family === 'udp4' || family === 'udp6';
  const query = {
    seq,
    key: `${indexesKey}:${index}`,
    family,
    address: typeof address === 'string' ? address : undefined,
    // dgram leaves the port as given (bind() without one: undefined) and
    // binds `port || 0`, as Node's primary does.
    port: udp ? Math.trunc(+options.port) || 0 : intOr(options.port, -1),
    fd: intOr(options.fd, -1),
    flags: options.flags | 0,
    backlog: options.backlog | 0,
    readableAll: !!options.readableAll,
    pipeMode: PIPE_MODE,
    writableAll: !!options.writableAll,
    data: (typeof obj._getServerData === 'function' ? obj._getServerData() : null) ?? null,
  };
  pending.set(seq, { obj, cb, indexesKey, index, family });
  addRef();
  try {
    channel.query(query);
  } catch (err) {
    pending.delete(seq);
    dropRef();
    releaseIndex(indexesKey, index);
    throw err;
  }

  obj.once('listening', () => {
    // A short-lived server may be closed already.
    if (!indexes.has(indexesKey)) return;
    cluster.worker.state = 'listening';
    const bound = obj.address();
    messages.send(process, {
      act: 'listening',
      address,
      port: (bound && bound.port) || options.port,
      addressType: options.addressType,
      fd: options.fd,
    });
  });
}

function onReply(reply) {
  const p = pending.get(reply.seq);
  if (p === undefined) {
    if (reply.fd >= 0) native.closeFd(reply.fd);
    return;
  }
  pending.delete(reply.seq);
  dropRef();
  if (typeof p.obj._setServerData === 'function') p.obj._setServerData(reply.data);
  if (reply.errno) return p.cb(reply.errno, null);
  // The listening fd was dropped by the kernel: this process is out of fds.
  if (reply.shared && reply.fd < 0) return p.cb(-os.constants.errno.EMFILE, null);
  if (reply.shared) return listenShared(p, reply);
  listenRoundRobin(p, reply);
}

function forget(id, p) {
  if (!servers.has(id)) return;
  servers.delete(id);
  releaseIndex(p.indexesKey, p.index);
  if (channel !== null && !channelClosing) {
    try {
      channel.closeHandle(id);
    } catch {
      // The primary is gone; it has forgotten this handle already.
    }
  }
}

// SCHED_NONE (and UDP): the primary sent its bound socket; this worker
// listens and accepts on it directly.
function listenShared(p, reply) {
  const kind = p.family === 'udp4' || p.family === 'udp6' ? 'udp' : reply.sockname ? 'tcp' : 'pipe';
  let handle;
  try {
    handle = handles.listener(kind, reply.fd);
  } catch (err) {
    native.closeFd(reply.fd);
    return p.cb(err.errno ?? -os.constants.errno.EBADF, null);
  }
  const id = reply.handle;
  const close = handle.close;
  handle.close = function closeShared(...args) {
    forget(id, p);
    return close.apply(this, args);
  };
  if (reply.placed) countPlaced(handle);
  // A kernel-placed server also takes what the primary rescues from a
  // worker that could not (onConnection), as a round-robin one does.
  servers.set(id, { handle, obj: p.obj, kind, rr: reply.placed, placed: reply.placed });
  p.cb(0, handle);
}

// net's own `onconnection` of a kernel-placed server, kept aside.
const NET_ONCONNECTION = Symbol('net onconnection');

// The server's handle counts each connection it accepts itself, and that
// connection's close, for the page: net's `onconnection` (set after this)
// is kept aside and called through `onPlacedConnection`.
function countPlaced(handle) {
  Object.defineProperty(handle, 'onconnection', {
    configurable: true,
    enumerable: true,
    get() {
      return onPlacedConnection;
    },
    set(fn) {
      this[NET_ONCONNECTION] = fn;
    },
  });
}

/** @this {any} the server's handle; `client` is Node's own, made in C++ */
function onPlacedConnection(err, client) {
  if (client) {
    conn[PLACED] = (conn[PLACED] + 1) | 0;
    client.close = closePlaced;
  }
  return this[NET_ONCONNECTION](err, client);
}

// Set, never deleted, so every placed connection keeps one shape.
/** @this {any} */
function closePlaced(callback) {
  this.close = Object.getPrototypeOf(this).close;
  countClose();
  return this.close(callback);
}

// SCHED_RR: the primary listens; this server gets a stand-in handle whose
// `onconnection` (installed by net) receives the connections it hands out.
function listenRoundRobin(p, reply) {
  const id = reply.handle;
  let refed = false;
  const setRef = (on) => {
    if (on === refed) return;
    refed = on;
    if (on) addRef();
    else dropRef();
  };
  const faux = {
    close() {
      if (!servers.has(id)) return;
      setRef(false);
      forget(id, p);
    },
    listen() {
      return 0;
    },
    ref() {
      setRef(true);
    },
    unref() {
      setRef(false);
    },
  };
  if (reply.sockname) {
    faux.getsockname = (out) => {
      if (servers.has(id)) Object.assign(out, reply.sockname);
      return 0;
    };
  }
  servers.set(id, { handle: faux, obj: p.obj, kind: reply.sockname ? 'tcp' : 'pipe', rr: true });
  faux.ref();
  p.cb(0, faux);
}

// A connection read off the hand-off channel is this worker's (a worker
// that dies now loses it, as Node's would). One its server cannot take
// (closed, or at maxConnections) goes back to the primary, which gives it
// to another worker.
function onConnection() {
  const entry = servers.get(conn[HANDLE]);
  const ok = entry !== undefined && entry.rr === true &&
    typeof entry.handle.onconnection === 'function' &&
    (entry.obj.maxConnections == null || (entry.obj._connections | 0) < entry.obj.maxConnections);
  if (!ok) return;
  const handle = handles.connection(entry.kind, conn[FD]);
  conn[TAKEN] = 1;
  // Counted as handed over, not as placed.
  if (entry.placed) entry.handle[NET_ONCONNECTION](0, handle);
  else entry.handle.onconnection(0, handle);
}

// A connection's handle closed: it leaves the worker's live connections.
function countClose() {
  conn[CLOSED] = (conn[CLOSED] + 1) | 0;
}
handles.onConnectionClose(countClose);

function onControl(replies, error) {
  if (replies !== null) {
    for (const r of replies) onReply(r);
  }
  if (error !== null) onChannelLost();
}

// The primary closed our channel: it exited, or it cut this worker off.
// A worker cannot serve without it. Leaving through the IPC disconnect gives
// the same 'disconnect' then exit(0) as Node's worker whose primary is gone
// (this channel's EOF can arrive before the IPC channel's).
function onChannelLost() {
  channel = null;
  if (channelClosing || cluster.worker.exitedAfterDisconnect) return;
  if (process.connected) process.disconnect();
}

function closeChannel() {
  if (channel === null) return;
  channelClosing = true;
  channel.close();
  channel = null;
}

function disconnect(primaryInitiated) {
  this.exitedAfterDisconnect = true;
  let waiting = 1;
  const done = () => {
    if (--waiting !== 0) return;
    closeChannel();
    if (primaryInitiated) process.disconnect();
    else messages.send(process, { act: 'exitedAfterDisconnect' }, () => process.disconnect());
  };
  for (const entry of [...servers.values()]) {
    waiting++;
    if (entry.obj && typeof entry.obj.close === 'function') entry.obj.close(done);
    else entry.handle.close(done);
  }
  done();
}

Worker.prototype.disconnect = function disconnectWorker() {
  if (this.state !== 'disconnecting' && this.state !== 'destroying') {
    this.state = 'disconnecting';
    disconnect.call(this, false);
  }
  return this;
};

Worker.prototype.destroy = function destroy() {
  if (this.state === 'destroying') return;
  this.exitedAfterDisconnect = true;
  if (!this.isConnected()) {
    process.exit(0);
  } else {
    this.state = 'destroying';
    messages.send(process, { act: 'exitedAfterDisconnect' }, () => process.disconnect());
    process.once('disconnect', () => process.exit(0));
  }
};

function setup() {
  const id = +process.env[WORKER_ENV] | 0;
  const fd = +process.env[CHANNEL_ENV];
  // Our children are not workers of this cluster.
  delete process.env[WORKER_ENV];
  delete process.env[CHANNEL_ENV];
  delete process.env[ADDON_ENV];
  // primary.js preloaded us through NODE_OPTIONS: restore the worker's own.
  const ownOptions = process.env[PRELOAD_ENV];
  if (ownOptions !== undefined) {
    delete process.env[PRELOAD_ENV];
    const own = JSON.parse(ownOptions);
    if (own === null) delete process.env.NODE_OPTIONS;
    else process.env.NODE_OPTIONS = own;
  }

  native.setCloexec(fd);
  channel = new native.WorkerChannel(fd, conn, onConnection, onControl);
  channel.unref();

  const worker = new Worker({ id, process, state: 'online' });
  cluster.worker = worker;

  process.once('disconnect', () => {
    closeChannel();
    worker.emit('disconnect');
    // The primary went away without asking: leave at once, as Node does.
    if (!worker.exitedAfterDisconnect) process.exit(0);
  });
  process.on('internalMessage', messages.onInternal(worker, (w, message) => {
    if (message.act !== 'disconnect') return;
    // Loaded only then: it costs every worker's start nothing.
    if (message.drain) for (const { obj } of servers.values()) require('./drain')(obj);
    disconnect.call(w, true);
  }));

  // net and dgram consult the built-in module; make it route through us.
  builtin.isWorker = true;
  builtin.isPrimary = false;
  builtin.isMaster = false;
  builtin.worker = worker;
  builtin._getServer = getServer;

  messages.send(process, { act: 'online' });
}

setup();
module.exports = cluster;
