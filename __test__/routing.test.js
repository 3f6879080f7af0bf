'use strict';
// Routing beyond round-robin, through its three doors: least-connections set
// through the API, sticky sessions set through the environment of an
// unchanged node:cluster app, and both through the rs-cluster command; and
// bad input at setup.
const test = require('node:test');
const assert = require('node:assert');
const http = require('node:http');
const path = require('node:path');
const { startCluster, ROOT, get } = require('./helpers');
const { command } = require('./supervisor-helpers');

const REGISTER = path.join(ROOT, 'js', 'register.js');

function routingApp(env) {
  return startCluster('routing-cluster.js', { execArgv: ['-r', REGISTER], env: { WORKERS: '2', ...env } });
}

async function ready(c, workers) {
  await c.waitFor((ev) => ev.event === 'listening' && c.events.filter((e) => e.event === 'listening').length >= workers);
  return c.events.find((e) => e.event === 'listening').port;
}

// A request whose response stays open: resolves with the answering pid and
// a function that closes the connection.
function hold(port) {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/hold', agent: false }, (res) => {
      res.once('data', (d) => resolve({ pid: `${d}`, close: () => req.destroy() }));
    });
    req.on('error', reject);
    req.setTimeout(5000, () => req.destroy(new Error('hold timed out')));
  });
}

async function sequential(port, n, headers = {}, pathFor = () => '/') {
  const pids = [];
  for (let i = 0; i < n; i++) pids.push((await get(port, { headers: { connection: 'close', ...headers }, path: pathFor(i) })).body);
  return pids;
}

test('least (API): new connections go to the worker with fewer live connections', { timeout: 30000 }, async (t) => {
  const c = routingApp({ ROUTING_API: 'least' });
  t.after(() => c.stop());
  const port = await ready(c, 2);
  assert.strictEqual(c.events.find((e) => e.event === 'primary').policy, 101);
  assert.deepStrictEqual(c.events.find((e) => e.event === 'primary').routing, { policy: 'least', sticky: null });
  // Six long-lived connections: three on each worker.
  const held = [];
  for (let i = 0; i < 6; i++) held.push(await hold(port));
  const byPid = {};
  for (const h of held) (byPid[h.pid] ||= []).push(h);
  assert.deepStrictEqual(Object.values(byPid).map((v) => v.length).sort(), [3, 3], JSON.stringify(Object.keys(byPid)));
  // Closing one worker's three leaves it the lighter one: it gets the next ones.
  const [light, heavy] = Object.keys(byPid);
  for (const h of byPid[light]) h.close();
  await new Promise((r) => setTimeout(r, 200));
  const next = await sequential(port, 6);
  t.diagnostic(`light ${light}, heavy ${heavy}, next ${next}`);
  assert.deepStrictEqual(next, Array(6).fill(light), 'short requests all go to the idle worker');
  for (const h of byPid[heavy]) h.close();
});


test('least: connections queued to a worker stuck in a long callback go to the free one', { timeout: 30000 }, async (t) => {
  const c = routingApp({ ROUTING_API: 'least' });
  t.after(() => c.stop());
  const port = await ready(c, 2);
  // One worker blocks its loop for 1.5 s. Connections least queues to it
  // meanwhile (once the other worker has more) must not wait for the spin,
  // nor for the stall rule (500 ms).
  const spinning = get(port, { path: '/spin?ms=1500', headers: { connection: 'close' } });
  await new Promise((r) => setTimeout(r, 50));
  const t0 = Date.now();
  const quick = await Promise.all(Array.from({ length: 8 }, async () => {
    const r = await get(port, { headers: { connection: 'close' } });
    return { pid: r.body, ms: Date.now() - t0 };
  }));
  const busyPid = (await spinning).body;
  t.diagnostic(`spinning ${busyPid}; quick ${JSON.stringify(quick)}`);
  assert.ok(quick.every((q) => q.pid !== busyPid), 'none served by the spinning worker');
  assert.ok(quick.every((q) => q.ms < 400), 'none waited for the spin (the stall rule takes 500 ms)');
  process.kill(c.child.pid, 'SIGUSR2');
  const rerouted = await c.waitFor('rerouted');
  assert.ok(rerouted.busy > 0, `some went to the spinning worker first and were moved: ${JSON.stringify(rerouted)}`);
  assert.strictEqual(rerouted.stalled, 0);
});
test('sticky by header (environment, unchanged app): each session stays on one worker', { timeout: 30000 }, async (t) => {
  const c = routingApp({ WORKERS: '3', NODE_CLUSTER_SCHED_POLICY: 'sticky', RS_CLUSTER_STICKY_KEY: 'header:x-session' });
  t.after(() => c.stop());
  const port = await ready(c, 3);
  const primary = c.events.find((e) => e.event === 'primary');
  assert.deepStrictEqual([primary.policy, primary.sticky], [102, 'header:x-session']);
  assert.deepStrictEqual(primary.routing, { policy: 'sticky', sticky: 'header:x-session' }, 'stats say the policy in use');
  assert.strictEqual(primary.info, 'rs_cluster_info{policy="sticky",sticky_key="header:x-session"} 1');
  const owner = {};
  for (let round = 0; round < 3; round++) {
    for (let s = 0; s < 10; s++) {
      const [pid] = await sequential(port, 1, { 'x-session': `user-${s}` });
      owner[s] ??= pid;
      assert.strictEqual(pid, owner[s], `session ${s} moved in round ${round}`);
    }
  }
  assert.ok(new Set(Object.values(owner)).size >= 2, `sessions spread: ${JSON.stringify(owner)}`);
  // Requests without the header fall back to the client's address: one worker.
  assert.strictEqual(new Set(await sequential(port, 6)).size, 1);
});

test('random (environment): two workers drawn, the lighter one gets the connection; stats name the policy', { timeout: 30000 }, async (t) => {
  const c = routingApp({ NODE_CLUSTER_SCHED_POLICY: 'random' });
  t.after(() => c.stop());
  const port = await ready(c, 2);
  const primary = c.events.find((e) => e.event === 'primary');
  assert.strictEqual(primary.policy, 103);
  assert.deepStrictEqual(primary.routing, { policy: 'random', sticky: null });
  assert.match(primary.info, /policy="random"/);
  // With two workers both are always drawn: each new connection goes to the
  // one with fewer live connections, as under least.
  const held = [];
  for (let i = 0; i < 6; i++) held.push(await hold(port));
  const byPid = {};
  for (const h of held) (byPid[h.pid] ||= []).push(h);
  assert.deepStrictEqual(Object.values(byPid).map((v) => v.length).sort(), [3, 3], JSON.stringify(Object.keys(byPid)));
  const [light] = Object.keys(byPid);
  for (const h of byPid[light]) h.close();
  await new Promise((r) => setTimeout(r, 200));
  assert.deepStrictEqual(await sequential(port, 4), Array(4).fill(light), 'short requests go to the idle worker');
  for (const h of held) h.close();
  process.kill(c.child.pid, 'SIGUSR2');
  const report = await c.waitFor('rerouted');
  assert.deepStrictEqual(report.listeners, ['random']);
});

test('the rs-cluster command: --policy sticky --sticky-key query:sid, --policy least and --policy random serve', { timeout: 40000 }, async (t) => {
  const sticky = command(['-w', '3', '--policy', 'sticky', '--sticky-key', 'query:sid', 'supervisor-app.js']);
  t.after(() => sticky.stop());
  await sticky.waitFor((ev) => ev.event === 'listening' && sticky.events.filter((e) => e.event === 'listening').length >= 3);
  const port = sticky.events.find((e) => e.event === 'listening').port;
  for (const sid of ['a', 'b', 'c', 'd']) {
    const pids = await sequential(port, 4, {}, () => `/?EIO=4&transport=polling&sid=${sid}`);
    assert.strictEqual(new Set(pids).size, 1, `sid ${sid}: ${pids}`);
  }
  const least = command(['-w', '2', '--policy', 'least', 'supervisor-app.js']);
  t.after(() => least.stop());
  await least.waitFor((ev) => ev.event === 'listening' && least.events.filter((e) => e.event === 'listening').length >= 2);
  const lport = least.events.find((e) => e.event === 'listening').port;
  assert.strictEqual(new Set(await sequential(lport, 8)).size, 2, 'idle workers take turns');
  const random = command(['-w', '2', '--policy', 'random', 'supervisor-app.js']);
  t.after(() => random.stop());
  await random.waitFor((ev) => ev.event === 'listening' && random.events.filter((e) => e.event === 'listening').length >= 2);
  const rport = random.events.find((e) => e.event === 'listening').port;
  assert.strictEqual((await sequential(rport, 4)).length, 4, 'random serves');
});

test('a bad sticky key is an ERR_INVALID_ARG_VALUE at setup; nothing is forked', { timeout: 20000 }, async () => {
  const cases = [
    { ROUTING_STICKY: 'body:x' },
    { NODE_CLUSTER_SCHED_POLICY: 'sticky', RS_CLUSTER_STICKY_KEY: 'header:' },
  ];
  for (const env of cases) {
    const c = routingApp(env);
    try {
      const exit = await c.waitExit(10000);
      assert.notStrictEqual(exit.code, 0, JSON.stringify(env));
      assert.match(c.stderr, /ERR_INVALID_ARG_VALUE/, JSON.stringify(env));
      assert.match(c.stderr, /'ip', 'header:NAME', 'cookie:NAME' or 'query:NAME'/);
      assert.ok(!c.events.some((e) => e.event === 'listening'), 'no worker started');
    } finally {
      await c.stop();
    }
  }
});
