'use strict';
// The bench's own load generator: N connections to 127.0.0.1, each sending
// one GET at a time for a fixed time, keep-alive or one connection per
// request (`Connection: close`). It times every request exactly (from the
// write of the request to the last byte of the response), so it is what
// the stalled-worker scenario uses to count requests that waited behind the
// stalled worker, and the fallback load generator when wrk is missing.
//
//   node bench/loadgen.js '{"port":8000,"connections":64,"duration":3,"keepAlive":false}'
//
// Prints one JSON line: requests, errors, seconds, latency percentiles (ms),
// and `slow`: requests slower than `slowMs`, including those still waiting
// when the time ran out.
//
// `mix: [[path, weight], ...]` picks each request's path at random by weight
// (seeded: the same sequence every run) and adds `byPath`: the same figures
// per path, plus `over` (requests slower than `overMs`), so fast requests can
// be judged apart from the slow ones sharing the server. `addresses: N`
// connects from N loopback addresses (127.1.x.y) in turn, as N clients would.

const net = require('node:net');
const { performance } = require('node:perf_hooks');

const opts = {
  host: '127.0.0.1',
  path: '/',
  connections: 64,
  duration: 3,
  keepAlive: true,
  slowMs: 1500,
  ...JSON.parse(process.argv[2] || '{}'),
};
if (!(opts.port > 0)) throw new Error('loadgen: port required');

require('./lib/orphan').exitWithBench(() => process.exit(1));

const requestFor = (p) => Buffer.from(
  `GET ${p} HTTP/1.1\r\nHost: ${opts.host}:${opts.port}\r\n` +
  `${opts.keepAlive ? '' : 'Connection: close\r\n'}\r\n`,
  'latin1',
);
const mix = (opts.mix || [[opts.path, 1]]).map(([p, weight]) => ({ path: p, weight, request: requestFor(p), latencies: [] }));
const totalWeight = mix.reduce((a, m) => a + m.weight, 0);
// xorshift32: a fixed sequence, so every run and policy sees the same mix.
let seed = 0x9e3779b9;
function pick() {
  if (mix.length === 1) return mix[0];
  seed ^= seed << 13;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  let r = ((seed >>> 0) / 2 ** 32) * totalWeight;
  for (const m of mix) {
    r -= m.weight;
    if (r < 0) return m;
  }
  return mix[mix.length - 1];
}
let nextAddress = 0;
function localAddress() {
  if (!(opts.addresses > 0)) return undefined;
  const n = nextAddress++ % opts.addresses;
  return `127.1.${(n >> 8) & 255}.${n & 255}`;
}

let latencies = new Float64Array(1 << 16);
let completed = 0;
let errors = 0;
let status = 0; // non-2xx responses
let stopped = false;
const sockets = new Set();

function record(ms) {
  if (completed === latencies.length) {
    const bigger = new Float64Array(latencies.length * 2);
    bigger.set(latencies);
    latencies = bigger;
  }
  latencies[completed++] = ms;
}

// Where the response that starts `buf` ends, or -1 while incomplete.
function responseEnd(buf) {
  const head = buf.indexOf('\r\n\r\n');
  if (head < 0) return -1;
  const headers = buf.slice(0, head);
  const cl = /\r\ncontent-length:\s*(\d+)/i.exec(headers);
  if (cl) {
    const end = head + 4 + +cl[1];
    return buf.length >= end ? end : -1;
  }
  if (/\r\ntransfer-encoding:\s*chunked/i.test(headers)) {
    const end = buf.indexOf('\r\n0\r\n\r\n', head);
    if (buf.startsWith('0\r\n\r\n', head + 4)) return head + 9;
    return end < 0 ? -1 : end + 7;
  }
  return head + 4; // no body
}

function slot() {
  if (stopped) return;
  const sock = net.connect({ host: opts.host, port: opts.port, noDelay: true, localAddress: localAddress() });
  sockets.add(sock);
  let buf = '';
  let sentAt = 0;
  let done = false;
  let kind = null;
  const send = () => {
    kind = pick();
    sentAt = performance.now();
    sock.write(kind.request);
  };
  sock.setEncoding('latin1');
  sock.on('connect', send);
  sock.on('data', (chunk) => {
    buf += chunk;
    for (;;) {
      const end = responseEnd(buf);
      if (end < 0) return;
      if (stopped) return;
      const ms = performance.now() - sentAt;
      record(ms);
      if (mix.length > 1) kind.latencies.push(ms);
      if (!/^HTTP\/1\.[01] 2/.test(buf)) status++;
      buf = buf.slice(end);
      if (opts.keepAlive) {
        send();
      } else {
        done = true;
        sentAt = 0;
        sock.destroy();
        return;
      }
    }
  });
  sock.on('error', () => {});
  sock.on('close', () => {
    sockets.delete(sock);
    if (stopped) return;
    if (!done) errors++;
    setImmediate(slot);
  });
  sock.sentAt = () => sentAt;
}

function percentile(sorted, p) {
  if (sorted.length === 0) return null;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank];
}

const started = performance.now();
for (let i = 0; i < opts.connections; i++) slot();

setTimeout(() => {
  stopped = true;
  const now = performance.now();
  const seconds = (now - started) / 1000;
  // Requests still waiting when the time ran out.
  let pending = 0;
  let pendingSlow = 0;
  for (const s of sockets) {
    const at = s.sentAt();
    if (at > 0) {
      pending++;
      if (now - at > opts.slowMs) pendingSlow++;
    }
    s.destroy();
  }
  const sorted = latencies.slice(0, completed).sort();
  let sum = 0;
  let slow = 0;
  for (const v of sorted) {
    sum += v;
    if (v > opts.slowMs) slow++;
  }
  const out = {
    loader: 'node',
    requests: completed,
    seconds,
    errors,
    status,
    latencyMs: {
      p50: percentile(sorted, 50),
      p90: percentile(sorted, 90),
      p99: percentile(sorted, 99),
      max: sorted.length ? sorted[sorted.length - 1] : null,
      mean: sorted.length ? sum / sorted.length : null,
    },
    slowMs: opts.slowMs,
    slow: slow + pendingSlow,
    slowCompleted: slow,
    pending,
    pendingSlow,
    // Its own CPU: a load generator near a core is the bottleneck.
    cpuSeconds: (process.cpuUsage().user + process.cpuUsage().system) / 1e6,
  };
  if (mix.length > 1) {
    out.byPath = {};
    for (const m of mix) {
      const v = Float64Array.from(m.latencies).sort();
      out.byPath[m.path] = {
        requests: v.length,
        p50: percentile(v, 50),
        p99: percentile(v, 99),
        max: v.length ? v[v.length - 1] : null,
        over: v.filter((x) => x > (opts.overMs ?? 10)).length,
      };
    }
  }
  process.stdout.write(`${JSON.stringify(out)}\n`, () => process.exit(0));
}, opts.duration * 1000);
