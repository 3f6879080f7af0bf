'use strict';
// prom-client's AggregatorRegistry (primary and workers talk over the
// cluster's messaging) works in an unchanged app run under
// -r rs-cluster/register, and its output and cluster.metrics() make one
// valid exposition. prom-client is a devDependency: nothing is installed here.
const test = require('node:test');
const assert = require('node:assert');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { startCluster, get, ROOT, nativeOnly } = require('./helpers');
const { HAS_PROMTOOL, parseExposition, total } = require('./metrics-helpers');

test('prom-client AggregatorRegistry.clusterMetrics() sums the workers\' counters under the register hook', { timeout: 30000, skip: nativeOnly('the connection counters it sums') }, async () => {
  const app = startCluster('metrics-prom-client.js', { execArgv: ['-r', path.join(ROOT, 'js', 'register.js')] });
  try {
    const { port, metricsPort } = await app.waitFor('ready');
    for (let i = 0; i < 20; i++) await get(port);
    const r = await get(metricsPort, { path: '/metrics' });
    assert.strictEqual(r.status, 200, r.body);
    if (HAS_PROMTOOL) {
      const check = spawnSync('promtool', ['check', 'metrics'], { input: r.body, encoding: 'utf8', timeout: 10000 });
      assert.strictEqual(check.status, 0, `${check.stdout}${check.stderr}`);
    }
    const families = parseExposition(r.body);
    assert.strictEqual(total(families, 'app_requests_total'), 20);
    assert.strictEqual(total(families, 'rs_cluster_connections_accepted_total'), 20);
  } finally {
    await app.stop();
  }
});
