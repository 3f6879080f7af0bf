'use strict';
// The metrics endpoint (setting `metrics`, RS_CLUSTER_METRICS, --metrics): a
// plain http server in the primary serving GET /metrics (Prometheus text),
// GET /stats (JSON), the status page GET / (js/status/: a page that reads
// /stats every second, its files read once, when first asked), and the probes
// an orchestrator asks: GET /healthz (200 while the primary's reactor answers
// and a worker listens, else 503) and GET /readyz (also 503 once a graceful
// stop began, so a load balancer stops sending before connections are
// refused). It only reads, so a scrape answers during a reload too. Neither
// it nor its connections keep the primary alive: with every worker gone the
// primary exits as node:cluster's does.
//
// With a token (setting `metricsToken`), /stats and /metrics ask for
// `Authorization: Bearer <token>`; the probes do not (an orchestrator has no
// secret to give), nor do the page's own files: they hold no data, and a
// browser cannot put a header on the page's address, so the page asks for
// the token itself and sends it with each read of /stats.

const http = require('node:http');
const fs = require('node:fs');
const path = require('node:path');
const crypto = require('node:crypto');
const { isIP } = require('node:net');
const { parseAddress } = require('./settings');

const PROMETHEUS_TYPE = 'text/plain; version=0.0.4; charset=utf-8';
const TEXT = 'text/plain; charset=utf-8';

// On every answer: no sniffing a type into HTML, no caching live numbers.
const HEADERS = { 'X-Content-Type-Options': 'nosniff', 'Cache-Control': 'no-store' };
// On the page: its own files and /stats only, no inline script, no framing.
const PAGE_HEADERS = {
  'Content-Security-Policy': "default-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'Referrer-Policy': 'no-referrer',
};

function reply(res, status, type, body, head, headers) {
  res.writeHead(status, { ...HEADERS, ...headers, 'Content-Type': type, 'Content-Length': Buffer.byteLength(body) });
  res.end(head ? undefined : body);
}

// A probe's route: 200 "ok", or 503 with why not.
function probe(check) {
  return () => {
    const why = check();
    if (why !== null) throw new Error(why);
    return 'ok\n';
  };
}

// The page's files (js/status/), by the path the page asks them at.
const PAGE = path.join(__dirname, 'status');
const PAGE_FILES = {
  '/': ['index.html', 'text/html; charset=utf-8'],
  '/status.css': ['status.css', 'text/css; charset=utf-8'],
  '/status.js': ['status.js', 'text/javascript; charset=utf-8'],
  '/view.js': ['view.js', 'text/javascript; charset=utf-8'],
};
/** @type {Map<string, Buffer>} */
const pageCache = new Map();
function pageFile(name) {
  let body = pageCache.get(name);
  if (body === undefined) {
    body = fs.readFileSync(path.join(PAGE, name));
    pageCache.set(name, body);
  }
  return body;
}

const digest = (text) => crypto.createHash('sha256').update(text).digest();

// Whether `header` is `Bearer <token>`. Both sides are hashed first, so the
// comparison takes as long whatever the length or the first wrong byte.
function authorized(header, token) {
  const m = /^Bearer +(\S+) *$/i.exec(header ?? '');
  // '' never matches: a token has at least one character.
  return crypto.timingSafeEqual(digest(m === null ? '' : m[1]), digest(token));
}

function isLoopback(host) {
  if (host === 'localhost') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  return host === '::1' || /^::ffff:127\./i.test(host);
}

let warnedOpen = false;

/**
 * Serves `cluster.metrics()`, `cluster.stats()`, the status page and the
 * probes on `host:port`; `onError` gets the server's errors (a listen error
 * such as EADDRINUSE). `token()` is the token asked for, read at each
 * request (setupPrimary may change it), undefined for none.
 * @param {{ host: string, port: number }} address
 * @param {any} cluster
 * @param {{ health(): string | null, ready(): string | null }} probes null when well, else why not
 * @param {(err: Error) => void} onError
 * @param {() => string | undefined} token
 */
function serve({ host, port }, cluster, probes, onError, token) {
  if (!isLoopback(host) && token() === undefined && !warnedOpen) {
    warnedOpen = true;
    process.emitWarning(`the metrics endpoint listens on ${host}, beyond this machine, and asks no token: anyone who ` +
                        'reaches it reads the stats (set metricsToken, RS_CLUSTER_METRICS_TOKEN or --metrics-token)',
                        { code: 'RS_CLUSTER_METRICS_OPEN' });
  }
  /** @type {Record<string, [string, () => string]>} */
  const routes = {
    '/metrics': [PROMETHEUS_TYPE, () => cluster.metrics()],
    '/stats': ['application/json; charset=utf-8', () => `${JSON.stringify(cluster.stats())}\n`],
    '/healthz': [TEXT, probe(probes.health)],
    '/readyz': [TEXT, probe(probes.ready)],
  };
  const open = new Set(['/healthz', '/readyz', ...Object.keys(PAGE_FILES)]);
  const server = http.createServer((req, res) => {
    const url = (req.url ?? '').split('?')[0];
    const head = req.method === 'HEAD';
    const secret = token();
    if (secret !== undefined && !open.has(url) && !authorized(req.headers.authorization, secret)) {
      return reply(res, 401, TEXT, 'unauthorized\n', head, { 'WWW-Authenticate': 'Bearer' });
    }
    const route = routes[url];
    const file = PAGE_FILES[url];
    if (route === undefined && file === undefined) return reply(res, 404, TEXT, 'not found: try /, /metrics, /stats, /healthz or /readyz\n');
    if (req.method !== 'GET' && !head) {
      res.setHeader('Allow', 'GET, HEAD');
      return reply(res, 405, TEXT, 'method not allowed\n');
    }
    let body;
    try {
      // A page file not read yet may fail to be (out of fds): a 503, never a throw out of the primary.
      body = file !== undefined ? pageFile(file[0]) : route[1]();
    } catch (err) {
      return reply(res, 503, TEXT, `${err.message}\n`, head);
    }
    if (file !== undefined) return reply(res, 200, file[1], body, head, PAGE_HEADERS);
    reply(res, 200, route[0], body, head);
  });
  // Prometheus keeps its connection open between scrapes, the page too.
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
            (err) => cluster.emit('error', err), () => cluster.settings.metricsToken);
}

module.exports = { serve, follow };
