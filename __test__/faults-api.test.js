'use strict';
// Bad API input in the primary (wrong types to setupPrimary/fork/send, an
// unknown scheduling policy before the first fork, sending after disconnect):
// Node's error or event, never a crash. Each case's outcome (error class and
// code, or what happened) must be the same under rs-cluster and node:cluster.
const test = require('node:test');
const assert = require('node:assert');
const { startCluster, eachImpl } = require('./helpers');

const report = (t, label, value) => t.diagnostic(`${label}: ${JSON.stringify(value)}`);

// `waitMs` plus the 5 s exit wait must fit in the calling test's timeout.
async function outcomes(impl, env = {}, waitMs = 40000) {
  const c = startCluster('faults-api.js', { impl, env });
  try {
    await c.waitFor((e) => e.event === 'done' || e.event === 'uncaught', waitMs).catch(() => null);
    const { code, signal } = await c.waitExit(5000).catch(() => ({ code: 'running', signal: null }));
    const cases = {};
    for (const e of c.events) if (e.event === 'case') cases[e.name] = e.outcome;
    const uncaught = c.events.find((e) => e.event === 'uncaught') || null;
    return { cases, exit: { code, signal }, uncaught, stderr: c.stderr };
  } finally {
    await c.stop();
  }
}

test('bad input to setupPrimary, fork, worker.send/kill/disconnect: same errors and events as node:cluster, no crash', { timeout: 60000 }, async (t) => {
  const [rs, node] = await eachImpl((impl) => outcomes(impl));
  const differ = {};
  // node:cluster's second disconnect() writes to a channel the worker may
  // already be closing: sometimes it throws EPIPE, sometimes not (a race in
  // Node itself). Only the outcome without the race is compared.
  const nodeRace = (name) => name === 'worker.disconnect() twice' && node.cases[name]?.code === 'EPIPE';
  for (const name of new Set([...Object.keys(node.cases), ...Object.keys(rs.cases)])) {
    if (nodeRace(name)) continue;
    if (JSON.stringify(rs.cases[name]) !== JSON.stringify(node.cases[name])) {
      differ[name] = { rs: rs.cases[name], node: node.cases[name] };
    }
  }
  report(t, 'cases', Object.keys(node.cases).length);
  report(t, 'differences {case: {rs, node}}', differ);
  assert.strictEqual(rs.uncaught, null, `rs-cluster primary did not crash: ${JSON.stringify(rs.uncaught)} ${rs.stderr}`);
  assert.deepStrictEqual(rs.exit, { code: 0, signal: null }, 'rs-cluster primary ran every case and exited 0');
  assert.ok(Object.keys(node.cases).length >= 30, 'every case ran under node:cluster');
  assert.deepStrictEqual(differ, {});
});

// cluster.schedulingPolicy set to something unknown before the first fork:
// node:cluster's first fork throws ERR_INTERNAL_ASSERTION; the policy is then
// frozen, and a second fork goes ahead with shared (SCHED_NONE-like) handles,
// as node:cluster treats anything but SCHED_RR.
test('unknown cluster.schedulingPolicy before the first fork: same error, then same behaviour, as node:cluster', { timeout: 40000 }, async (t) => {
  const values = ['"bogus"', '3', 'null', '"rr"'];
  const runs = await Promise.all(values.flatMap((v) => ['rs', 'node'].map(async (impl) => [impl, v, await outcomes(impl, { POLICY: v }, 25000)])));
  const figures = {};
  for (const [impl, v, r] of runs) {
    figures[v] = figures[v] || {};
    figures[v][impl] = Object.values(r.cases)[0] || { exit: r.exit, uncaught: r.uncaught };
  }
  report(t, 'schedulingPolicy outcomes {value: {rs, node}}', figures);
  for (const v of values) {
    assert.deepStrictEqual(figures[v].rs['first fork'], figures[v].node['first fork'], `${v}: first fork`);
  }
  for (const v of values) {
    assert.deepStrictEqual(figures[v].rs, figures[v].node, `${v}: first and second fork`);
  }
});
