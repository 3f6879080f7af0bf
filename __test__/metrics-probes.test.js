'use strict';
// GET /healthz and /readyz on the metrics endpoint, for an orchestrator's
// probes: healthy while the primary's reactor answers and a worker listens;
// not ready from the moment a graceful stop begins, while what is in flight
// still finishes.
const test = require('node:test');
const assert = require('node:assert');
const http = require('node:http');
const { get } = require('./helpers');
const { command, waitForLog } = require('./supervisor-helpers');
const { freePort } = require('../scripts/lib/net');

test('/healthz and /readyz: 200 while serving; /readyz 503 once SIGTERM starts the drain', { timeout: 40000 }, async (t) => {
  const metricsPort = await freePort();
  const c = command(['-w', '2', '--drain-timeout', '5000', '--metrics', `${metricsPort}`, 'supervisor-app.js']);
  t.after(() => c.stop());
  await c.waitFor((ev) => ev.event === 'listening' && c.events.filter((e) => e.event === 'listening').length >= 2);
  const port = c.events.find((e) => e.event === 'listening').port;
  for (const path of ['/healthz', '/readyz']) {
    const r = await get(metricsPort, { path });
    assert.deepStrictEqual([r.status, r.body], [200, 'ok\n'], path);
  }
  const head = await new Promise((resolve, reject) => {
    http.request({ host: '127.0.0.1', port: metricsPort, path: '/readyz', method: 'HEAD' }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode));
    }).on('error', reject).end();
  });
  assert.strictEqual(head, 200);
  // A slow request keeps a worker draining after SIGTERM.
  const slow = get(port, { path: '/slow?ms=2500', headers: { connection: 'close' } });
  await new Promise((r) => setTimeout(r, 200));
  process.kill(c.child.pid, 'SIGTERM');
  await waitForLog(c, /SIGTERM: stopping/);
  const ready = await get(metricsPort, { path: '/readyz' });
  assert.strictEqual(ready.status, 503);
  assert.match(ready.body, /stopping/);
  const done = await slow;
  assert.strictEqual(done.status, 200, 'what was in flight finishes');
});

test('/healthz is 503 with no worker listening', { timeout: 30000 }, async (t) => {
  const metricsPort = await freePort();
  // Workers that throw at start never listen.
  const c = command(['-w', '1', '--metrics', `${metricsPort}`, 'supervisor-app.js'], { env: { THROW_IF: __filename } });
  t.after(() => c.stop());
  await waitForLog(c, /exited|failed|code 1/);
  const r = await get(metricsPort, { path: '/healthz' });
  assert.strictEqual(r.status, 503);
  assert.match(r.body, /no worker listens/);
});
