'use strict';
// Both scheduling policies (NODE_CLUSTER_SCHED_POLICY=rr|none): requests
// succeed, sequential and concurrent; round-robin spreads them evenly; the
// listening socket is held by the same processes as with node:cluster (the
// primary alone for rr; the primary and every worker for none).

const test = require('node:test');
const assert = require('node:assert');
const { eachImpl, get } = require('./helpers');
const { POLICIES, run, waitCount, HAS_SS, owners } = require('./listen-helpers');

const WORKERS = 3;

for (const policy of POLICIES) {
  test(`requests succeed and are spread as node does (${policy})`, { timeout: 30000 }, async (t) => {
    if (!HAS_SS) t.diagnostic('no ss: who holds the listening socket is not checked');
    const seen = {};
    await eachImpl(async (impl) => {
      const c = run(t, 'listen-forms.js', {
        impl, policy, env: { WORKERS: `${WORKERS}`, LISTEN_OPS: JSON.stringify([{ args: [0, '127.0.0.1'] }]) },
      });
      await waitCount(c, (e) => e.event === 'wdone', WORKERS);
      const primary = (await c.waitFor('primary')).pid;
      const workers = c.events.filter((e) => e.event === 'fork').map((e) => e.pid);
      const { port } = c.events.find((e) => e.event === 'op').addr;

      const counts = {};
      for (let i = 0; i < 30; i++) {
        const { body } = await get(port);
        counts[body] = (counts[body] || 0) + 1;
      }
      const parallel = await Promise.all(Array.from({ length: 60 }, () => get(port)));
      assert.ok(parallel.every((r) => r.status === 200 && /^[123]$/.test(r.body)), `${impl}: all concurrent requests served`);

      if (policy === 'rr') {
        assert.deepStrictEqual(Object.keys(counts).sort(), ['1', '2', '3'], `${impl}: ${JSON.stringify(counts)}`);
        for (const n of Object.values(counts)) assert.ok(n >= 8 && n <= 12, `${impl}: uneven ${JSON.stringify(counts)}`);
        // rs-cluster's rotation is strict: sequential requests split exactly.
        if (impl === 'rs') assert.deepStrictEqual(counts, { 1: 10, 2: 10, 3: 10 });
      }
      const held = HAS_SS ? owners('t', port) : null;
      seen[impl] = {
        policy: (await c.waitFor('primary')).policy,
        primaryHolds: held ? held.has(primary) : true,
        workersHolding: held ? workers.filter((p) => held.has(p)).length : (policy === 'rr' ? 0 : WORKERS),
      };
    });
    assert.deepStrictEqual(seen.rs, seen.node);
    assert.deepStrictEqual(seen.rs, {
      policy: policy === 'rr' ? 2 : 1,
      primaryHolds: true,
      workersHolding: policy === 'rr' ? 0 : WORKERS,
    });
  });
}
