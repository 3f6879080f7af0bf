'use strict';
// The command with --metrics through a rolling reload under load: every
// scrape answers while workers are replaced, the cluster-wide counters never
// go back, and the reload and its restarts are counted.
const test = require('node:test');
const assert = require('node:assert');
const { command, waitForLog } = require('./supervisor-helpers');
const { churn } = require('../scripts/lib/net');
const { sleep } = require('./fixtures/faults-lib');
const { metrics, total, freePort } = require('./metrics-helpers');
const { nativeOnly } = require('./helpers');

const CLUSTER_WIDE = ['rs_cluster_connections_accepted_total', 'rs_cluster_handoff_seconds_count',
  'rs_cluster_connections_rerouted_total', 'rs_cluster_worker_restarts_total', 'rs_cluster_reloads_total'];

test('SIGHUP reload under load: every scrape answers, cluster-wide counters never go back', { timeout: 60000, skip: nativeOnly('the connection counters') }, async (t) => {
  const metricsPort = await freePort();
  const h = command(['-w', '2', '--metrics', `${metricsPort}`, 'supervisor-app.js']);
  let clients = null;
  try {
    await h.waitFor(() => h.events.filter((e) => e.event === 'listening').length >= 2, 15000);
    clients = churn(h.events.find((e) => e.event === 'listening').port, 4);
    await sleep(300);
    h.child.kill('SIGHUP');
    let last = null;
    let scrapes = 0;
    for (let reloaded = false; !reloaded; scrapes++) {
      reloaded = /reloaded in \d+ ms/.test(h.stderr);
      const m = await metrics(metricsPort);
      const now = Object.fromEntries(CLUSTER_WIDE.map((name) => [name, total(m, name)]));
      if (last !== null) for (const name of CLUSTER_WIDE) assert.ok(now[name] >= last[name], `${name}: ${last[name]} -> ${now[name]}`);
      last = now;
      await sleep(10);
    }
    const served = await clients.stop();
    clients = null;
    t.diagnostic(`${scrapes} scrapes during the reload; ${served.ok} requests served`);
    assert.ok(scrapes >= 2, `${scrapes} scrapes`);
    const m = await metrics(metricsPort);
    assert.strictEqual(total(m, 'rs_cluster_reloads_total'), 1);
    assert.strictEqual(total(m, 'rs_cluster_worker_restarts_total', (l) => l.reason === 'reload'), 2);
    assert.ok(total(m, 'rs_cluster_connections_accepted_total') >= served.ok, 'every request counted');
  } finally {
    if (clients !== null) await clients.stop();
    await h.stop();
  }
});

test('--metrics with a bad value is a usage error, exit 2, before anything starts', { timeout: 20000 }, async () => {
  const h = command(['--metrics', 'localhost:0', 'supervisor-app.js']);
  try {
    assert.strictEqual((await h.waitExit()).code, 2);
    await waitForLog(h, /--metrics must be \[host:\]port .* Received 'localhost:0'/);
    assert.deepStrictEqual(h.events, []);
  } finally {
    await h.stop();
  }
});
