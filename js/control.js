'use strict';
// The control socket (setting `control`, RS_CLUSTER_CONTROL, --control): a
// unix socket at a path, mode 0600, on which `rs-cluster status|reload|stop
// <path>` talk to a running primary: one JSON line each way. A peer of
// another user is refused by its kernel credentials (SO_PEERCRED), whatever
// the file's mode. Like the metrics endpoint, it never keeps the primary alive.

const fs = require('node:fs');
const net = require('node:net');

// The addon, loaded where a socket's credentials or fds are needed: the
// command loads this file without it (rs-cluster status, the fallback).
const native = () => require('./native');

const MAX_REQUEST = 4096;
// The control protocol's version: a primary taking over checks it.
const PROTOCOL = 1;

/**
 * What each command does; the primary sets them, the command replaces
 * reload and stop with its own (which log and notify as its signals do).
 * @type {{ status: () => object, reload: () => Promise<unknown>, stop: () => void, listeners: () => number[],
 *   handoff: () => Promise<void> }}
 */
const actions = {
  status: () => ({}),
  reload: () => Promise.resolve(),
  stop: () => {},
  // Duplicates of the listening sockets, for a primary taking over.
  listeners: () => [],
  // The primary that took over is ready: accept no more, hand out what was
  // accepted, then stop as `stop` does.
  handoff: () => Promise.resolve(),
};

/** @param {net.Socket} socket @param {object} body */
function send(socket, body) {
  if (!socket.destroyed) socket.write(`${JSON.stringify(body)}\n`);
}

/** @param {net.Socket} socket @param {string} line */
async function answer(socket, line) {
  let command;
  try {
    command = JSON.parse(line).command;
  } catch {
    return send(socket, { ok: false, error: 'not a JSON request' });
  }
  try {
    if (command === 'status') return send(socket, { ok: true, stats: actions.status() });
    if (command === 'reload') {
      await actions.reload();
      return send(socket, { ok: true });
    }
    if (command === 'listeners') {
      // The answer and the sockets in one message (the fds are closed once sent).
      const fds = actions.listeners();
      const fd = /** @type {any} */ (socket)._handle?.fd ?? -1;
      native().sendSockets(fd, `${JSON.stringify({ ok: true, protocol: PROTOCOL, sockets: fds.length })}\n`, fds);
      return;
    }
    if (command === 'handoff') {
      send(socket, { ok: true, stopping: true });
      return await actions.handoff();
    }
    if (command === 'stop') {
      // The answer comes now; the connection closes when the primary exits.
      send(socket, { ok: true, stopping: true });
      return actions.stop();
    }
    send(socket, { ok: false, error: `unknown command ${JSON.stringify(command)}: status, reload, stop, listeners or handoff` });
  } catch (err) {
    send(socket, { ok: false, error: err.message });
  }
}

/** @param {net.Socket} socket */
function onConnection(socket) {
  socket.unref();
  socket.on('error', () => {});
  const fd = /** @type {any} */ (socket)._handle?.fd ?? -1;
  const uid = native().peerUid(fd);
  if (uid !== null && typeof process.getuid === 'function' && uid !== process.getuid()) {
    send(socket, { ok: false, error: `refused: user ${uid} is not this primary's` });
    socket.end();
    return;
  }
  let buf = '';
  socket.setEncoding('utf8');
  socket.on('data', (d) => {
    buf += d;
    const nl = buf.indexOf('\n');
    if (nl < 0) {
      if (buf.length > MAX_REQUEST) socket.destroy();
      return;
    }
    const line = buf.slice(0, nl);
    buf = buf.slice(nl + 1);
    answer(socket, line);
  });
}

// Paths a primary taking over replaces though their primary still answers
// (it is draining, and keeps its own socket until it exits).
const replacing = new Set();

/** @param {string} path */
function replace(path) {
  replacing.add(path);
}

/**
 * Listens on `path` (0600). A socket file nobody answers on (a primary that
 * died) is replaced; one a live primary answers on is an EADDRINUSE error,
 * unless `replace(path)` said to take it. Errors go to `onError`, with
 * `control: true`.
 * @param {string} path
 * @param {(err: Error) => void} onError
 */
function serve(path, onError) {
  const server = net.createServer(onConnection);
  const fail = (/** @type {any} */ err) => onError(Object.assign(err, {
    control: true,
    message: `control socket ${path}: ${err.code === 'EADDRINUSE' ? 'in use by a running primary' : err.message}`,
  }));
  const listen = () => {
    if (replacing.delete(path)) {
      try {
        fs.unlinkSync(path);
      } catch {
        // Gone already.
      }
    }
    // Created with no access for others, not chmod'ed after: no window.
    const umask = process.umask(0o177);
    try {
      server.listen(path);
    } finally {
      process.umask(umask);
    }
  };
  server.on('error', (/** @type {any} */ err) => {
    if (err.code !== 'EADDRINUSE') return fail(err);
    const probe = net.connect(path);
    probe.on('connect', () => {
      probe.destroy();
      fail(err);
    });
    probe.on('error', (/** @type {any} */ e) => {
      if (e.code !== 'ECONNREFUSED') return fail(err);
      try {
        fs.unlinkSync(path);
      } catch {
        return fail(err);
      }
      listen();
    });
  });
  // The file goes at exit, unless a primary that took over made it anew.
  server.on('listening', () => {
    const ino = fs.statSync(path).ino;
    process.once('exit', () => {
      try {
        if (fs.statSync(path).ino === ino) fs.unlinkSync(path);
      } catch {
        // Gone already.
      }
    });
  });
  listen();
  server.unref();
  return server;
}

/**
 * Sends `command` to the primary at `path`: resolves with its answer, and
 * for `stop` once the primary has exited (the connection closes) unless
 * `untilExit` is false.
 * @param {string} path
 * @param {string} command
 * @returns {Promise<any>}
 */
function request(path, command, untilExit = true) {
  return new Promise((resolve, reject) => {
    const socket = net.connect(path);
    let buf = '';
    let answer = null;
    socket.setEncoding('utf8');
    socket.on('connect', () => socket.write(`${JSON.stringify({ command })}\n`));
    socket.on('data', (d) => {
      buf += d;
      const nl = buf.indexOf('\n');
      if (nl < 0 || answer !== null) return;
      try {
        answer = JSON.parse(buf.slice(0, nl));
      } catch {
        return reject(new Error(`${path} answered something that is not rs-cluster's control protocol`));
      }
      if (!(command === 'stop' && answer.ok && untilExit)) socket.end();
    });
    socket.on('error', (/** @type {any} */ err) => reject(new Error(`cannot reach a primary at ${path}: ${err.code ?? err.message}`)));
    socket.on('close', () => {
      if (answer !== null) resolve(answer);
      else reject(new Error(`the primary at ${path} closed the connection without answering`));
    });
  });
}

/**
 * The listening sockets of the primary at `path`, for this primary to take
 * over; throws with a one-line reason.
 * @param {string} path
 * @returns {number[]}
 */
function fetchListeners(path) {
  let got;
  try {
    got = native().fetchSockets(path, `${JSON.stringify({ command: 'listeners' })}\n`);
  } catch (err) {
    throw new Error(`cannot reach a primary at ${path}: ${err.code ?? err.message}`);
  }
  let answer = null;
  try {
    answer = JSON.parse(got.line);
  } catch {
    // Not ours: below.
  }
  if (answer === null || answer.ok !== true || answer.protocol !== PROTOCOL) {
    for (const fd of got.fds) native().closeFd(fd);
    const why = answer?.error ?? (answer?.protocol === undefined ? 'not an rs-cluster control socket' : `control protocol ${answer.protocol}, this rs-cluster speaks ${PROTOCOL}`);
    throw new Error(`the primary at ${path} cannot hand over: ${why}`);
  }
  return got.fds;
}

module.exports = { actions, serve, request, replace, fetchListeners, PROTOCOL };
