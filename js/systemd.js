'use strict';
// A service manager's two protocols (systemd's, or anything that speaks
// them), both off unless the environment asks: listening sockets handed
// over at start (LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES: socket activation)
// and notifications of the primary's state (NOTIFY_SOCKET). The datagram is
// sent from Rust (Node's dgram has no unix datagram sockets), whose addon
// is loaded only when needed: the command reads LISTEN_FDS without it.

// SD_LISTEN_FDS_START: the first inherited socket.
const FIRST_FD = 3;
const LISTEN_VARS = ['LISTEN_FDS', 'LISTEN_PID', 'LISTEN_FDNAMES'];

/**
 * The sockets LISTEN_FDS hands this process: { fds, names }, or { error }
 * saying why they are not for it.
 * @param {NodeJS.ProcessEnv} [env]
 * @returns {{ fds: number[], names: string[], error?: string }}
 */
function listenFds(env = process.env) {
  const count = env.LISTEN_FDS;
  if (count === undefined || count === '') return { fds: [], names: [] };
  if (!/^[1-9]\d{0,3}$/.test(count)) return { fds: [], names: [], error: `LISTEN_FDS must be a count of sockets. Received '${count}'` };
  if (env.LISTEN_PID !== `${process.pid}`) {
    return { fds: [], names: [], error: `LISTEN_PID (${env.LISTEN_PID ?? 'unset'}) names another process than this primary (${process.pid}): its sockets are not for it` };
  }
  const names = (env.LISTEN_FDNAMES ?? '').split(':');
  return { fds: Array.from({ length: +count }, (_, i) => FIRST_FD + i), names };
}

/** @type {{ fd: number, name: string, address: string | null }[]} */
let adopted = [];
// Sockets a primary handed over to this one (`rs-cluster --takeover`).
/** @type {number[]} */
let handedOver = [];
// Whether LISTEN_FDS is this primary's to take: only the rs-cluster command
// says so. An app's own primary may handle socket activation itself, and
// with nothing set rs-cluster is node:cluster.
let takesListenFds = false;

function useListenFds() {
  takesListenFds = true;
}

/** @param {number[]} fds */
function handOver(fds) {
  handedOver = fds;
}

/**
 * Once, when the primary's reactor starts: the sockets handed over, and
 * under the command the inherited ones, become the reactor's; the variables
 * then leave the environment, so no worker (nor its children) takes them
 * for its own. Sockets meant for another process are left alone, with a
 * warning.
 * @returns {number[]}
 */
function adopt() {
  if (!takesListenFds) {
    const fds = handedOver;
    handedOver = [];
    return fds;
  }
  const found = listenFds();
  for (const name of LISTEN_VARS) delete process.env[name];
  const fromPrimary = handedOver;
  handedOver = [];
  if (found.error !== undefined) {
    process.emitWarning(found.error, { code: 'RS_CLUSTER_LISTEN_FDS' });
    return fromPrimary;
  }
  adopted = found.fds.map((fd, i) => ({ fd, name: found.names[i] ?? '', address: require('./native').socketName(fd) }));
  return [...found.fds, ...fromPrimary];
}

/**
 * Inherited sockets that no listener uses, reported once, by a warning.
 * @param {string[]} listening the listeners' addresses (cluster.stats())
 */
function reportUnclaimed(listening) {
  const unused = adopted.filter((s) => s.address === null || !listening.includes(s.address));
  adopted = [];
  for (const s of unused) {
    const what = `${s.address ?? 'an unbound socket'}${s.name ? ` (${s.name})` : ''}`;
    process.emitWarning(`inherited socket ${what}, fd ${s.fd}, is used by no server`, { code: 'RS_CLUSTER_UNCLAIMED_SOCKET' });
  }
}

/**
 * A function sending `KEY=value` lines to the service manager, or null when
 * NOTIFY_SOCKET is not set. The variable leaves the environment: the
 * workers are not the service. A failed send is warned about once.
 * @returns {((fields: string) => void) | null}
 */
let notifySocket;

/** NOTIFY_SOCKET as it was, for a new primary taking over from this one. */
function notifyEnv() {
  return notifySocket ? { NOTIFY_SOCKET: notifySocket } : {};
}

function notifier() {
  const socket = process.env.NOTIFY_SOCKET;
  notifySocket = socket;
  delete process.env.NOTIFY_SOCKET;
  if (!socket) return null;
  let warned = false;
  return (fields) => {
    try {
      require('./native').sdNotify(socket, fields);
    } catch (err) {
      if (!warned) process.emitWarning(`cannot notify ${socket}: ${err.message}`, { code: 'RS_CLUSTER_NOTIFY' });
      warned = true;
    }
  };
}

/**
 * Half of WATCHDOG_USEC in ms, when the watchdog is on for this process.
 * @returns {number | null}
 */
function watchdogMs(env = process.env) {
  const usec = Number(env.WATCHDOG_USEC);
  if (!Number.isInteger(usec) || usec <= 0) return null;
  if (env.WATCHDOG_PID !== undefined && env.WATCHDOG_PID !== `${process.pid}`) return null;
  return Math.max(1, Math.floor(usec / 2000));
}

/** CLOCK_MONOTONIC in µs, as RELOADING=1's MONOTONIC_USEC wants. */
function monotonicUsec() {
  return process.hrtime.bigint() / 1000n;
}

module.exports = { listenFds, useListenFds, adopt, handOver, notifyEnv, reportUnclaimed, notifier, watchdogMs, monotonicUsec };
