'use strict';
// rs-cluster without its native addon is node:cluster itself, with the
// additions that need no Rust: RS_CLUSTER_NATIVE=0 here (a package without
// any .node file: fallback-package.test.js).

const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const { startCluster, get, ROOT, FALLBACK } = require('./helpers');
const { command, waitForLog } = require('./supervisor-helpers');
const { freePort } = require('../scripts/lib/net');
const { NATIVE_POLICIES } = require('../js/fallback');

const OFF = { RS_CLUSTER_NATIVE: '0' };
const STDIO = ['pipe', 'pipe', 'pipe'];
const warnings = (stderr) => stderr.match(/\[RS_CLUSTER_FALLBACK\]/g) ?? [];


test('the fallback names the policies the native table adds to node:cluster\'s, SCHED_<NAME> each', { timeout: 10000 }, () => {
  const table = require('../js/native').policies();
  assert.deepStrictEqual(table.map((p) => p.name), ['none', 'rr', ...NATIVE_POLICIES]);
  for (const p of table) assert.strictEqual(p.constant, `SCHED_${p.name.toUpperCase()}`);
});

test('RS_CLUSTER_NATIVE=0: node:cluster itself, said once for the process tree; native additions refused when asked', { timeout: 30000 }, async (t) => {
  const port = await freePort();
  const h = startCluster('fallback-app.js', { env: { ...OFF, METRICS: `${port}` }, stdio: STDIO });
  t.after(() => h.stop());
  const primary = await h.waitFor('primary');
  assert.strictEqual(primary.native, false);
  // node:cluster's own object: its keys, none of rs-cluster's.
  const builtinKeys = JSON.parse(execFileSync(process.execPath, ['-e', 'process.stdout.write(JSON.stringify(Object.keys(require("node:cluster"))))']));
  assert.deepStrictEqual(primary.keys, builtinKeys);
  for (const [name, refused] of Object.entries(primary.refused)) {
    assert.ok(refused !== null, `${name} was not refused`);
    assert.strictEqual(refused.code, 'ERR_RS_CLUSTER_NATIVE_REQUIRED', name);
    assert.match(refused.message, /needs rs-cluster's native primary.*RS_CLUSTER_NATIVE=0 is set/, name);
  }
  await h.waitFor('ready');
  const workers = await Promise.all([1, 2].map((id) => h.waitFor((e) => e.event === 'worker' && e.id === id)));
  for (const w of workers) assert.deepStrictEqual([w.native, w.isWorker], [false, true]);

  // Stats: what the primary knows without Rust; the rest null, and not exported.
  h.send('stats');
  const { stats, metrics } = await h.waitFor('stats');
  assert.strictEqual(stats.workers.length, 2);
  for (const w of stats.workers) {
    assert.strictEqual(w.state, 'listening');
    assert.ok(w.rss > 0 && w.pid > 0);
    for (const key of ['accepted', 'active', 'pending', 'handoff', 'eventLoopLag', 'stalled']) assert.strictEqual(w[key], null, key);
  }
  assert.deepStrictEqual([stats.rerouted, stats.totals.accepted, stats.listeners], [null, null, []]);
  assert.doesNotMatch(metrics, /^rs_cluster_(connections|handoff|event_loop)/m);
  assert.match(metrics, /^rs_cluster_workers\{state="listening"\} 2$/m);
  const scraped = await get(port, { path: '/metrics' });
  assert.strictEqual(scraped.status, 200);
  assert.strictEqual((await get(port, { path: '/readyz' })).status, 200);

  // Respawn and reload are the supervisor's, on node:cluster's workers.
  const victim = h.events.find((e) => e.event === 'fork');
  process.kill(victim.pid, 'SIGKILL');
  const crash = await h.waitFor((e) => e.event === 'restart' && e.reason === 'crash');
  assert.notStrictEqual(crash.pid, victim.pid);
  await h.waitFor((e) => e.event === 'worker' && e.id === crash.id);
  h.send('reload');
  await h.waitFor('reloaded', 20000);
  assert.strictEqual(h.events.filter((e) => e.event === 'restart' && e.reason === 'reload').length, 2);
  // The port still answers, from the reloaded workers.
  const answer = await get((await h.waitFor('ready')).port);
  assert.strictEqual(answer.status, 200);
  assert.strictEqual(warnings(h.rawStderr).length, 1, h.rawStderr);
});

test('RS_CLUSTER_NATIVE=0 with a native policy in NODE_CLUSTER_SCHED_POLICY: the first fork says why', { timeout: 20000 }, async (t) => {
  const h = startCluster('fallback-app.js', { env: { ...OFF, NODE_CLUSTER_SCHED_POLICY: 'least' }, stdio: STDIO });
  t.after(() => h.stop());
  const err = await h.waitFor('fork-error');
  assert.strictEqual(err.code, 'ERR_RS_CLUSTER_NATIVE_REQUIRED');
  assert.match(err.message, /^NODE_CLUSTER_SCHED_POLICY=least needs rs-cluster's native primary/);
});

test('RS_CLUSTER_NATIVE with a value that is not a switch: ERR_INVALID_ARG_VALUE at require', { timeout: 10000 }, () => {
  const run = () => execFileSync(process.execPath, ['-e', 'require(process.argv[1])', path.join(ROOT, 'js', 'index.js')],
                                 { env: { ...process.env, RS_CLUSTER_NATIVE: 'off' }, stdio: 'pipe' });
  assert.throws(run, (err) => /ERR_INVALID_ARG_VALUE/.test(err.stderr) && /RS_CLUSTER_NATIVE must be 0 or false/.test(err.stderr));
});

test('the command with RS_CLUSTER_NATIVE=0: serves, reloads on SIGHUP, stops on SIGTERM; refuses a native policy with exit 2', { timeout: 40000 }, async (t) => {
  const port = await freePort();
  const h = command(['-w', '2', 'supervisor-hello.js'], { env: { ...OFF, PORT: `${port}` } });
  t.after(() => h.stop());
  await waitForLog(h, /listening on/);
  const before = new Set();
  for (let i = 0; i < 20 && before.size < 2; i++) before.add((await get(port)).body);
  process.kill(h.child.pid, 'SIGHUP');
  await waitForLog(h, /reloaded in \d+ ms/, 20000);
  assert.strictEqual((await get(port)).status, 200);
  process.kill(h.child.pid, 'SIGTERM');
  assert.deepStrictEqual(await h.waitExit(15000), { code: 0, signal: null });
  assert.strictEqual(warnings(h.rawStderr).length, 1, h.rawStderr);

  for (const args of [['--policy', 'sticky'], ['--hang-timeout', '500'], ['--placement', 'kernel']]) {
    const bad = command([...args, '-w', '1', 'supervisor-hello.js'], { env: OFF });
    t.after(() => bad.stop());
    const { code } = await bad.waitExit(10000);
    assert.strictEqual(code, 2, args.join(' '));
    assert.match(bad.stderr, /needs rs-cluster's native primary, which this process runs without: RS_CLUSTER_NATIVE=0 is set/);
  }
});

test('with the addon, rs-cluster loads none of the fallback\'s files; cluster.native is true in the primary and its workers', { timeout: 20000, skip: FALLBACK && 'the native path' }, (t) => {
  const script = `
    const cluster = require(${JSON.stringify(path.join(ROOT, 'js', 'index.js'))});
    const ours = Object.keys(require.cache).filter((f) => f.includes(${JSON.stringify(path.join(ROOT, 'js'))}));
    process.stdout.write(JSON.stringify({ native: cluster.native, fallback: ours.filter((f) => /fallback/.test(f)) }));`;
  const run = (env) => JSON.parse(execFileSync(process.execPath, ['-e', script], { env: { ...process.env, ...env }, encoding: 'utf8' }));
  assert.deepStrictEqual(run({ RS_CLUSTER_NATIVE: '1' }), { native: true, fallback: [] });
  assert.deepStrictEqual(run({ RS_CLUSTER_NATIVE: '' }), { native: true, fallback: [] });
  // A worker the native primary forked stays its worker, whatever its env says.
  const forked = `
    const cluster = require(${JSON.stringify(path.join(ROOT, 'js', 'index.js'))});
    if (cluster.isPrimary) cluster.fork({ RS_CLUSTER_NATIVE: '0' }).on('message', (m) => {
      process.stdout.write(JSON.stringify(m));
      cluster.disconnect();
    });
    else process.send({ native: cluster.native, id: cluster.worker.id });`;
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'rs-cluster-fallback-')), 'forked.js');
  t.after(() => fs.rmSync(path.dirname(file), { recursive: true, force: true }));
  fs.writeFileSync(file, forked);
  const worker = JSON.parse(execFileSync(process.execPath, [file], { encoding: 'utf8', timeout: 10000 }));
  assert.deepStrictEqual(worker, { native: true, id: 1 });
});
