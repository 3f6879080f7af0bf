'use strict';
// A worker told to drain (the primary disconnects it with a drain timeout:
// reload, graceful stop): besides closing its servers as node:cluster does,
// an HTTP server stops keeping connections alive. Otherwise a busy
// keep-alive client would hold the old worker until the drain timeout kills
// it mid-request; with `Connection: close` it reconnects, to another worker.

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
    if (res) {
      endKeepAlive(res);
      // Sent with keep-alive before we got here: close it once it is done.
      res.once('finish', () => setImmediate(() => server.closeIdleConnections()));
    }
  }
  server.closeIdleConnections();
}

module.exports = drain;
