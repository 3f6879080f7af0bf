'use strict';
// The metrics endpoint (setting `metrics`, RS_CLUSTER_METRICS, --metrics): a
// plain http server in the primary serving GET /metrics (Prometheus text)
// and GET /stats (JSON). It only reads, so a scrape answers during a reload
// too. Neither it nor its connections keep the primary alive: with every
// worker gone the primary exits as node:cluster's does.

const http = require('node:http');

const PROMETHEUS_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

function reply(res, status, type, body, head) {
  res.writeHead(status, { 'Content-Type': type, 'Content-Length': Buffer.byteLength(body), 'Cache-Control': 'no-store' });
  res.end(head ? undefined : body);
}

// Serves `cluster.metrics()` and `cluster.stats()` on `host:port`; `onError`
// gets the server's errors (a listen error such as EADDRINUSE).
function serve({ host, port }, cluster, onError) {
  const routes = {
    '/metrics': [PROMETHEUS_TYPE, () => cluster.metrics()],
    '/stats': ['application/json; charset=utf-8', () => `${JSON.stringify(cluster.stats())}\n`],
  };
  const server = http.createServer((req, res) => {
    const route = routes[(req.url ?? '').split('?')[0]];
    if (route === undefined) return reply(res, 404, 'text/plain; charset=utf-8', 'not found: try /metrics or /stats\n');
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('Allow', 'GET, HEAD');
      return reply(res, 405, 'text/plain; charset=utf-8', 'method not allowed\n');
    }
    let body;
    try {
      body = route[1]();
    } catch (err) {
      return reply(res, 503, 'text/plain; charset=utf-8', `${err.message}\n`);
    }
    reply(res, 200, route[0], body, req.method === 'HEAD');
  });
  // Prometheus keeps its connection open between scrapes.
  server.on('connection', (socket) => socket.unref());
  server.on('error', onError);
  server.listen(port, host);
  server.unref();
  return server;
}

module.exports = { serve };
