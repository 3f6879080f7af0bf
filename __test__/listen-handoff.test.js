'use strict';
// How a round-robin connection reaches its worker: a server that speaks
// first greets its clients promptly; a worker whose event loop is blocked
// strands no new connection (the primary takes back what it has not read);
// and a connection the server drops is seen closed by its client at once
// (the primary holds no copy of it). rs-cluster and node:cluster side by side.
const test = require('node:test');
const assert = require('node:assert');
const net = require('node:net');
const { startCluster, IMPLS, nativeOnly } = require('./helpers');
const { sleep, request } = require('./fixtures/faults-lib');

const report = (t, label, value) => t.diagnostic(`${label}: ${JSON.stringify(value)}`);

// Connects and resolves with how long `until(socket)` took, or 'HUNG'.
function timed(port, until, hangMs = 3000) {
  return new Promise((resolve) => {
    const start = Date.now();
    const sock = net.connect(port, '127.0.0.1');
    const timer = setTimeout(() => {
      sock.destroy();
      resolve('HUNG');
    }, hangMs);
    until(sock, () => {
      clearTimeout(timer);
      sock.destroy();
      resolve(Date.now() - start);
    });
    sock.on('error', () => {});
  });
}

async function withCluster(impl, env, fn) {
  const c = startCluster('faults-app.js', { impl, env: { WORKERS: '2', ...env } });
  try {
    const { port } = await c.waitFor('ready');
    return await fn(port);
  } finally {
    await c.stop();
  }
}

test('a server that speaks first greets clients that send nothing, promptly', { timeout: 30000 }, async (t) => {
  const figures = {};
  for (const impl of IMPLS) {
    figures[impl] = await withCluster(impl, { MODE: 'net' }, (port) =>
      Promise.all(Array.from({ length: 20 }, () => timed(port, (sock, done) => sock.once('data', done)))));
  }
  report(t, 'ms to the greeting', figures);
  for (const impl of IMPLS) {
    assert.ok(figures[impl].every((ms) => ms !== 'HUNG' && ms < 1000), `${impl}: ${figures[impl]}`);
  }
});

test('a connection the worker destroys at once is seen closed at once by its client', { timeout: 30000 }, async (t) => {
  const figures = {};
  for (const impl of IMPLS) {
    figures[impl] = await withCluster(impl, { MODE: 'drop' }, async (port) => {
      const times = [];
      for (let i = 0; i < 20; i++) {
        times.push(await timed(port, (sock, done) => {
          sock.on('connect', () => sock.write('x'));
          sock.once('close', done);
        }));
      }
      return times;
    });
  }
  report(t, 'ms to close', figures);
  for (const impl of IMPLS) {
    assert.ok(figures[impl].every((ms) => ms !== 'HUNG' && ms < 500), `${impl}: ${figures[impl]}`);
  }
});

test('a worker blocked for 2 s strands no new connection: the other worker serves them within a second', { timeout: 40000, skip: nativeOnly('taking back what a blocked worker left waiting') }, async (t) => {
  const figures = {};
  for (const impl of IMPLS) {
    figures[impl] = await withCluster(impl, {}, async (port) => {
      const blocker = request(port, { path: '/block?ms=2000', hangMs: 6000 });
      await sleep(100);
      const during = await Promise.all(Array.from({ length: 10 }, () => request(port, { hangMs: 6000 })));
      const b = await blocker;
      return {
        blocked: b.ok ? b.body : b.code,
        during: during.map((r) => (r.ok ? `${r.body} in ${r.ms} ms` : r.code)),
        slowest: Math.max(...during.map((r) => r.ms)),
        served: during.every((r) => r.ok),
      };
    });
  }
  report(t, 'requests sent while one worker is blocked', figures);
  for (const impl of IMPLS) assert.ok(figures[impl].served, `${impl}: every request is served`);
  const rs = figures.rs;
  assert.ok(rs.slowest < 1300, `rs-cluster re-routes what the blocked worker had not read: ${rs.during}`);
  assert.ok(rs.during.every((d) => !d.startsWith(`${rs.blocked} `)), `none served by the blocked worker: ${rs.during}`);
});
