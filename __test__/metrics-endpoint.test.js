'use strict';
// The metrics endpoint of a real 2-worker cluster: Prometheus text that
// promtool (or the parser in metrics-helpers.js) accepts; counters that add
// up exactly and do not go back when a worker goes; a stuck worker's lag
// seen growing; the routes; and a primary that still exits on its own.
const test = require('node:test');
const assert = require('node:assert');
const http = require('node:http');
const net = require('node:net');
const { execFileSync } = require('node:child_process');
const { get, startCluster, HAS_SS, nativeOnly } = require('./helpers');
const { sleep } = require('./fixtures/faults-lib');
const { HAS_PROMTOOL, startMetricsApp, stats, metrics, total, freePort } = require('./metrics-helpers');

const N = 200;

// N Connection: close requests, 8 at a time.
async function requests(port, n) {
  let next = 0;
  await Promise.all(Array.from({ length: 8 }, async () => {
    while (next++ < n) assert.strictEqual((await get(port)).status, 200);
  }));
}

async function settled(metricsPort) {
  for (const deadline = Date.now() + 3000; ;) {
    const s = await stats(metricsPort);
    if (s.totals.active === 0 && s.totals.pending === 0) return s;
    assert.ok(Date.now() < deadline, `connections still open: ${JSON.stringify(s.totals)}`);
    await sleep(50);
  }
}

test(`after ${N} requests the counters add up to ${N} exactly, and stay there when a worker goes`, { timeout: 30000, skip: nativeOnly('connection counters') }, async (t) => {
  t.diagnostic(HAS_PROMTOOL ? 'format checked by promtool and the parser' : 'promtool not installed: format checked by the parser');
  const { app, port, metricsPort } = await startMetricsApp();
  try {
    await requests(port, N);
    const s = await settled(metricsPort);
    assert.strictEqual(s.workers.length, 2);
    assert.strictEqual(s.workers.reduce((a, w) => a + w.accepted, 0), N);
    assert.ok(s.workers.every((w) => w.accepted > 0 && w.state === 'listening' && w.rss > 1e6 && w.cpu > 0), JSON.stringify(s.workers));
    assert.strictEqual(s.totals.handoff.count, N);
    assert.ok(s.totals.handoff.p50 > 0 && s.totals.handoff.p50 <= s.totals.handoff.p99, JSON.stringify(s.totals.handoff));
    assert.strictEqual(s.listeners.length, 1);
    assert.deepStrictEqual([s.listeners[0].address, s.listeners[0].accepted], [`127.0.0.1:${port}`, N]);
    const pids = app.events.filter((e) => e.event === 'fork').map((e) => e.pid);
    assert.deepStrictEqual(s.workers.map((w) => w.pid).sort(), pids.sort());

    const m = await metrics(metricsPort);
    assert.strictEqual(total(m, 'rs_cluster_connections_accepted_total'), N);
    assert.strictEqual(total(m, 'rs_cluster_handoff_seconds_count'), N);
    assert.strictEqual(total(m, 'rs_cluster_connections_active'), 0);
    assert.strictEqual(total(m, 'rs_cluster_workers', (l) => l.state === 'listening'), 2);
    t.diagnostic(`hand-off p50/p99: ${s.totals.handoff.p50 * 1e6}/${s.totals.handoff.p99 * 1e6} µs`);

    // Worker 1 goes: its series go with it, the cluster-wide counts stay.
    const gone = s.workers[0];
    process.kill(gone.pid, 'SIGKILL');
    await app.waitFor((e) => e.event === 'exit' && e.id === gone.id);
    const after = await metrics(metricsPort);
    assert.strictEqual(total(after, 'rs_cluster_connections_accepted_total'), N);
    assert.strictEqual(total(after, 'rs_cluster_connections_accepted_total', (l) => l.worker === 'retired'), gone.accepted);
    assert.strictEqual(total(after, 'rs_cluster_handoff_seconds_count'), N);
    assert.strictEqual(total(after, 'rs_cluster_event_loop_lag_seconds', (l) => l.worker === `${gone.id}`), 0);
    assert.strictEqual((await stats(metricsPort)).workers.length, 1);
  } finally {
    await app.stop();
  }
});

// Connects and waits until the server closes (or resets) the connection.
function refused(port) {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.setTimeout(5000, () => {
      socket.destroy();
      reject(new Error('the server kept the connection open'));
    });
    socket.on('error', () => {});
    socket.on('close', resolve);
    socket.resume();
  });
}

// Node's server can turn a connection down after the worker has taken it:
// its blockList (Node 22.13+) closes the handle without counting it in, a
// 'connection' listener may destroy the socket at once. Either way it must
// leave the worker's live count, or least-connections sees a load that is
// not there.
for (const refuse of ['destroy', 'block']) {
  const skip = refuse === 'block' && !('blockList' in new net.Server({ blockList: new net.BlockList() })) &&
    'no net.Server blockList on this Node';
  test(`connections the worker's server turns down (${refuse}) leave the live count`, { timeout: 30000, skip: skip || nativeOnly('connection counters') }, async () => {
    const { app, port, metricsPort } = await startMetricsApp({ REFUSE: refuse });
    try {
      for (let i = 0; i < 20; i++) await refused(port);
      const s = await settled(metricsPort);
      assert.strictEqual(s.workers.reduce((a, w) => a + w.accepted, 0), 20);
      assert.deepStrictEqual(s.workers.map((w) => w.active), [0, 0]);
    } finally {
      await app.stop();
    }
  });
}

test('a worker stuck in a busy loop shows its event-loop lag growing within a second', { timeout: 30000, skip: nativeOnly('event-loop lag, read from the page a worker shares with it') }, async () => {
  const { app, port, metricsPort } = await startMetricsApp();
  try {
    const blocked = get(port, { path: '/block?ms=2000', timeout: 10000 });
    await sleep(400);
    const lag = async () => Math.max(...(await stats(metricsPort)).workers.map((w) => w.eventLoopLag));
    const first = await lag();
    await sleep(500);
    const second = await lag();
    assert.ok(first >= 0.2, `lag after 0.4 s: ${first}`);
    assert.ok(second >= first + 0.3, `lag 0.5 s later: ${second} (was ${first})`);
    await blocked;
  } finally {
    await app.stop();
  }
});

test('routes: /metrics and /stats answer GET and HEAD, anything else 404 or 405; RS_CLUSTER_METRICS opens it too', { timeout: 30000 }, async () => {
  const metricsPort = await freePort();
  const app = startCluster('metrics-app.js', { env: { RS_CLUSTER_METRICS: `${metricsPort}` } });
  try {
    await app.waitFor('ready');
    assert.strictEqual((await get(metricsPort, { path: '/nothing' })).status, 404);
    assert.strictEqual((await get(metricsPort, { path: '/index.html' })).status, 404);
    const head = await new Promise((resolve, reject) => {
      http.request({ host: '127.0.0.1', port: metricsPort, path: '/stats', method: 'HEAD', agent: false }, resolve)
        .on('error', reject).end();
    });
    assert.strictEqual(head.statusCode, 200);
    assert.match(head.headers['content-type'], /^application\/json/);
    const post = await new Promise((resolve, reject) => {
      http.request({ host: '127.0.0.1', port: metricsPort, path: '/metrics', method: 'POST', agent: false }, resolve)
        .on('error', reject).end();
    });
    assert.deepStrictEqual([post.statusCode, post.headers.allow], [405, 'GET, HEAD']);
    assert.strictEqual(total(await metrics(metricsPort), 'rs_cluster_workers'), 2);
  } finally {
    await app.stop();
  }
});

test('the endpoint never keeps the primary alive: with its workers gone it exits, scraper connected or not', { timeout: 30000 }, async () => {
  const { app, metricsPort } = await startMetricsApp();
  const agent = new http.Agent({ keepAlive: true });
  try {
    // A scraper's idle keep-alive connection stays open.
    await new Promise((resolve, reject) => {
      http.get({ host: '127.0.0.1', port: metricsPort, path: '/metrics', agent }, (res) => res.resume().on('end', resolve))
        .on('error', reject);
    });
    for (const e of app.events.filter((ev) => ev.event === 'fork')) process.kill(e.pid, 'SIGKILL');
    assert.deepStrictEqual(await app.waitExit(5000), { code: 0, signal: null });
  } finally {
    agent.destroy();
    await app.stop();
  }
});

test('with nothing set the primary listens on nothing but the app\'s port', { skip: !HAS_SS && 'ss (iproute2) is not installed', timeout: 30000 }, async () => {
  const app = startCluster('metrics-app.js', { env: { RS_CLUSTER_METRICS: undefined } });
  try {
    const { port } = await app.waitFor('ready');
    const primary = app.events.find((e) => e.event === 'primary').pid;
    const ports = execFileSync('ss', ['-ltnpH'], { encoding: 'utf8' }).split('\n')
      .filter((l) => l.includes(`pid=${primary},`)).map((l) => l.split(/\s+/)[3].split(':').pop());
    assert.deepStrictEqual(ports, [`${port}`]);
  } finally {
    await app.stop();
  }
});
