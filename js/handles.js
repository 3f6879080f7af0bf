'use strict';
// Turns fds from the primary into Node's own stream/UDP handles, so a
// received connection goes through net's normal `onconnection` path.
//
// Node does not export its handle classes. Each one is learned once from a
// handle Node itself builds around an fd we give it, then reused: no
// `--expose-internals`, no `process.binding`.

const net = require('node:net');
const native = require('./native');

// Values of tcp_wrap/pipe_wrap's `constants` (SOCKET, SERVER), stable since Node 0.x.
const SOCKET = 0;
const SERVER = 1;

const ctors = { tcp: null, pipe: null, udp: null };

function streamCtor(kind) {
  if (ctors[kind] === null) {
    const socket = new net.Socket({ fd: native.probeSocket(kind), readable: false, writable: false });
    ctors[kind] = /** @type {any} */ (socket)._handle.constructor;
    socket.destroy();
  }
  return ctors[kind];
}

function udpCtor() {
  if (ctors.udp === null) {
    // Required here: only a worker that binds UDP has dgram loaded already.
    const socket = require('node:dgram').createSocket('udp4');
    const state = Object.getOwnPropertySymbols(socket)
      .map((s) => socket[s])
      .find((v) => v && typeof v === 'object' && v.handle && typeof v.handle.recvStart === 'function');
    if (!state) throw new Error('rs-cluster: cannot find the UDP handle class of this Node version');
    ctors.udp = state.handle.constructor;
    socket.close();
  }
  return ctors.udp;
}

function open(handle, fd) {
  const err = handle.open(fd);
  if (err) {
    handle.close();
    throw Object.assign(new Error(`rs-cluster: cannot open fd ${fd}`), { errno: err });
  }
  return handle;
}

// Connection handles that call `onClose` on their first close. A subclass
// rather than a `close` set on each handle: every connection keeps one
// shape, so V8's inline caches in net and http stay monomorphic.
const counted = { tcp: null, pipe: null };
const open_ = Symbol('open');
let onClose = () => {};

function onConnectionClose(fn) {
  onClose = fn;
}

function countedCtor(kind) {
  if (counted[kind] === null) {
    counted[kind] = class extends streamCtor(kind) {
      constructor() {
        super(SOCKET);
        this[open_] = true;
      }

      close(callback) {
        if (this[open_]) {
          this[open_] = false;
          onClose();
        }
        return super.close(callback);
      }
    };
  }
  return counted[kind];
}

// `kind` is 'tcp' or 'pipe'.
function connection(kind, fd) {
  const Ctor = countedCtor(kind);
  return open(new Ctor(), fd);
}

function listener(kind, fd) {
  if (kind === 'udp') {
    const Ctor = udpCtor();
    return open(new Ctor(), fd);
  }
  const Ctor = streamCtor(kind);
  return open(new Ctor(SERVER), fd);
}

module.exports = { connection, listener, onConnectionClose };
