'use strict';
// A worker told to drain (the primary disconnects it with a drain timeout:
// reload, graceful stop): besides closing its servers as node:cluster does,
// an HTTP server stops keeping connections alive. Otherwise a busy
// keep-alive client would hold the old worker until the drain timeout kills
// it mid-request; with `Connection: close` it reconnects, to another worker.
//
// Idle connections are closed after a grace, not at once as server.close()
// does: a busy client's next request is often already on its way to a
// connection that looks idle, and closing it then resets that request. In
// the grace it arrives and is answered with `Connection: close`.
const { DRAIN_IDLE_GRACE_MS: IDLE_GRACE_MS } = require('./settings').TUNING;

// Node's list of an http.Server's connections (public API has no way to
// reach the responses in flight); absent, only new requests are covered.
function connectionsOf(server) {
  const key = Object.getOwnPropertySymbols(server).find((s) => s.description === 'http.server.connections');
  return key === undefined ? null : server[key];
}

function endKeepAlive(res) {
  if (!res.headersSent) res.shouldKeepAlive = false;
}

function drain(server) {
  if (typeof server.closeIdleConnections !== 'function') return;
  // Requests still to come on open connections, then those being served.
  server.prependListener('request', (req, res) => endKeepAlive(res));
  const connections = connectionsOf(server);
  for (const parser of connections === null ? [] : connections.all()) {
    const res = parser.socket && parser.socket._httpMessage;
    if (res) endKeepAlive(res);
  }
  // A response already sent with keep-alive leaves its connection idle: Node
  // closes it after keepAliveTimeout, now the grace.
  server.keepAliveTimeout = Math.min(server.keepAliveTimeout || IDLE_GRACE_MS, IDLE_GRACE_MS);
  // close() (next) closes idle connections: defer that by the grace.
  const closeIdle = server.closeIdleConnections;
  server.closeIdleConnections = function closeIdleAfterGrace() {
    setTimeout(() => closeIdle.call(this), IDLE_GRACE_MS).unref();
  };
}

module.exports = drain;
