'use strict';
// The metrics endpoint (setting `metrics`, RS_CLUSTER_METRICS, --metrics): a
// plain http server in the primary serving GET /metrics (Prometheus text),
// GET /stats (JSON), and the probes an orchestrator asks: GET /healthz (200
// while the primary's reactor answers and a worker listens, else 503) and
// GET /readyz (also 503 once a graceful stop began, so a load balancer stops
// sending before connections are refused). It only reads, so a scrape answers during a reload
// too. Neither it nor its connections keep the primary alive: with every
// worker gone the primary exits as node:cluster's does.

const http = require('node:http');
const { parseAddress } = require('./settings');

const PROMETHEUS_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

function reply(res, status, type, body, head) {
  res.writeHead(status, { 'Content-Type': type, 'Content-Length': Buffer.byteLength(body), 'Cache-Control': 'no-store' });
  res.end(head ? undefined : body);
}

const TEXT = 'text/plain; charset=utf-8';

// A probe's route: 200 "ok", or 503 with why not.
function probe(check) {
  return () => {
    const why = check();
    if (why !== null) throw new Error(why);
    return 'ok\n';
  };
}

/**
 * Serves `cluster.metrics()`, `cluster.stats()` and the probes on
 * `host:port`; `onError` gets the server's errors (a listen error such as
 * EADDRINUSE).
 * @param {{ host: string, port: number }} address
 * @param {any} cluster
 * @param {{ health(): string | null, ready(): string | null }} probes null when well, else why not
 * @param {(err: Error) => void} onError
 */
function serve({ host, port }, cluster, probes, onError) {
  /** @type {Record<string, [string, () => string]>} */
  const routes = {
    '/metrics': [PROMETHEUS_TYPE, () => cluster.metrics()],
    '/stats': ['application/json; charset=utf-8', () => `${JSON.stringify(cluster.stats())}\n`],
    '/healthz': [TEXT, probe(probes.health)],
    '/readyz': [TEXT, probe(probes.ready)],
  };
  const server = http.createServer((req, res) => {
    const route = routes[(req.url ?? '').split('?')[0]];
    if (route === undefined) return reply(res, 404, TEXT, 'not found: try /metrics, /stats, /healthz or /readyz\n');
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('Allow', 'GET, HEAD');
      return reply(res, 405, TEXT, 'method not allowed\n');
    }
    let body;
    try {
      body = route[1]();
    } catch (err) {
      return reply(res, 503, TEXT, `${err.message}\n`, req.method === 'HEAD');
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

// The one endpoint of this process, and the address it serves.
/** @type {import('node:http').Server | null} */
let current = null;
/** @type {string | number | undefined} */
let currentAddress;

/**
 * Opens, moves or closes `cluster`'s endpoint to match its `metrics`
 * setting. A listen error (EADDRINUSE) is the cluster's 'error', thrown if
 * nobody listens for it, as a server's own listen error is.
 * @param {any} cluster
 * @param {{ health(): string | null, ready(): string | null }} probes
 * @param {{ metrics?: string | number }} settings
 */
function follow(cluster, probes, { metrics: address }) {
  if (address === currentAddress) return;
  currentAddress = address;
  if (current !== null) current.close();
  current = address === undefined ? null
    : serve(/** @type {{ host: string, port: number }} */ (parseAddress(`${address}`)), cluster, probes,
            (err) => cluster.emit('error', err));
}

module.exports = { serve, follow };
