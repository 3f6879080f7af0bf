'use strict';
// Kernel placement (RS_CLUSTER_PLACEMENT=kernel): round-robin connections go
// straight to the accept queue of each worker's own socket of a steered
// SO_REUSEPORT group. The primary only steers, and rescues what waits at a
// worker that cannot take it. The guarantees of primary placement hold; the
// fault, listen and reload suites also run under kernel placement (npm test).
const test = require('node:test');
const assert = require('node:assert');
const http = require('node:http');
const path = require('node:path');
const { startCluster, ROOT, get } = require('./helpers');

const REGISTER = path.join(ROOT, 'js', 'register.js');

function app(env) {
  return startCluster('routing-cluster.js', {
    execArgv: ['-r', REGISTER],
    env: { WORKERS: '2', RS_CLUSTER_PLACEMENT: 'kernel', ...env },
  });
}

async function ready(c, workers) {
  await c.waitFor((ev) => ev.event === 'listening' && c.events.filter((e) => e.event === 'listening').length >= workers);
  return c.events.find((e) => e.event === 'listening').port;
}

async function report(c) {
  const before = c.events.filter((e) => e.event === 'rerouted').length;
  process.kill(c.child.pid, 'SIGUSR2');
  return c.waitFor((e) => e.event === 'rerouted' && c.events.filter((x) => x.event === 'rerouted').length > before);
}

test('each worker accepts on its own socket; counts come from the workers\' pages', { timeout: 30000 }, async (t) => {
  const c = app({});
  t.after(() => c.stop());
  const port = await ready(c, 2);
  const N = 200;
  const pids = {};
  for (let i = 0; i < N; i++) {
    const { body } = await get(port, { headers: { connection: 'close' } });
    pids[body] = (pids[body] ?? 0) + 1;
  }
  assert.strictEqual(Object.keys(pids).length, 2, JSON.stringify(pids));
  for (const n of Object.values(pids)) assert.ok(n >= N / 5, `a worker's share: ${JSON.stringify(pids)}`);
  await new Promise((r) => setTimeout(r, 300));
  const r = await report(c);
  assert.deepStrictEqual(r.placements, ['kernel']);
  assert.deepStrictEqual(r.listeners, ['rr']);
  assert.strictEqual(r.accepted.reduce((a, b) => a + b, 0), N, `accepted ${r.accepted}`);
  assert.deepStrictEqual(r.active, [0, 0], 'every closed connection left the live count');
});

test('a worker blocked for 2 s: what the kernel queued at it is rescued, no request waits 1.5 s', { timeout: 40000 }, async (t) => {
  const c = app({});
  t.after(() => c.stop());
  const port = await ready(c, 2);
  // Block one worker: its own connection lands on it, by the spin's end.
  const spinning = get(port, { path: '/spin?ms=2000', headers: { connection: 'close' } });
  await new Promise((r) => setTimeout(r, 100));
  const times = [];
  await Promise.all(Array.from({ length: 4 }, async () => {
    for (let i = 0; i < 8; i++) {
      const t0 = Date.now();
      await get(port, { headers: { connection: 'close' } });
      times.push(Date.now() - t0);
    }
  }));
  await spinning;
  t.diagnostic(`latencies ${times.join(',')}`);
  assert.ok(Math.max(...times) < 1500, `slowest ${Math.max(...times)} ms`);
  const r = await report(c);
  assert.ok(r.stalled > 0, `some were taken from the blocked worker's socket: ${JSON.stringify(r)}`);
});

test('a worker killed under load: what waited at its socket is served by the other', { timeout: 40000 }, async (t) => {
  const c = app({});
  t.after(() => c.stop());
  const port = await ready(c, 2);
  const victim = c.events.find((e) => e.event === 'listening').pid;
  let failed = 0;
  let served = 0;
  let stop = false;
  const clients = Array.from({ length: 6 }, async () => {
    while (!stop) {
      try {
        await get(port, { headers: { connection: 'close' } });
        served++;
      } catch {
        failed++;
      }
    }
  });
  await new Promise((r) => setTimeout(r, 300));
  process.kill(victim, 'SIGKILL');
  await new Promise((r) => setTimeout(r, 700));
  stop = true;
  await Promise.all(clients);
  t.diagnostic(`served ${served}, failed ${failed}`);
  // Only requests the victim had already accepted may fail: at most one per client.
  assert.ok(failed <= 6, `failed ${failed}`);
  assert.ok(served > 50);
});

test('a bad placement is an ERR_INVALID_ARG_VALUE at setup; nothing is forked', { timeout: 20000 }, async () => {
  const c = app({ RS_CLUSTER_PLACEMENT: 'sideways' });
  try {
    const exit = await c.waitExit(10000);
    assert.notStrictEqual(exit.code, 0);
    assert.match(c.stderr, /ERR_INVALID_ARG_VALUE/);
    assert.match(c.stderr, /'kernel' or 'primary'/);
    assert.ok(!c.events.some((e) => e.event === 'listening'));
  } finally {
    await c.stop();
  }
});
