'use strict';
// setupPrimary/setupMaster, cluster.settings and schedulingPolicy,
// rs-cluster against node:cluster (fixture: lifecycle-settings.js).
const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { runBoth } = require('./fixtures/lifecycle-compare');
const {
  startCluster, OTHER_UID, OTHER_GID, otherUserSkip, copyForWorkers, nativeOnly,
} = require('./helpers');

// Stable order across workers: by worker id, then as printed.
function byWorker(events) {
  return events
    .map((e, i) => ({ e, i }))
    .sort((a, b) => (a.e.id ?? 0) - (b.e.id ?? 0) || a.i - b.i)
    .map(({ e }) => e);
}

async function compare(env, { workers = 1, fixture = 'lifecycle-settings.js', cwd } = {}) {
  const res = await runBoth(fixture, env, { cwd });
  for (const impl of ['rs', 'node']) {
    assert.deepStrictEqual(res[impl].exit, { code: 0, signal: null },
                           `${impl}: ${JSON.stringify(res[impl].events)}\n${res[impl].stderr}`);
  }
  const order = workers > 1 ? byWorker : (x) => x;
  assert.deepStrictEqual(order(res.rs.events), order(res.node.events));
  assert.strictEqual(res.rs.stderr, res.node.stderr);
  const events = res.rs.events;
  const find = (name) => events.filter((e) => e.event === name);
  return { events, find, reports: find('report').sort((a, b) => a.id - b.id).map((e) => e.report) };
}

test('setupPrimary/setupMaster are cumulative and emit setup with the settings', { timeout: 20000 }, async () => {
  const { find } = await compare({ CASE: 'cumulative' });
  assert.deepStrictEqual(find('initial')[0].settings, {});
  assert.deepStrictEqual(find('after-1')[0].settings, { args: ['a', 'b'], exec: '<self>', execArgv: [], silent: true });
  assert.deepStrictEqual(find('after-3')[0].settings,
                         { args: ['a', 'b'], exec: '<self>', execArgv: [], silent: false, windowsHide: true });
  // Three calls and the fork's own: four 'setup' events, the last with the live settings.
  assert.deepStrictEqual(find('setup').map((e) => e.isCurrent), [false, false, false, true]);
});

test('exec, args, execArgv, cwd and fork env reach the worker', { timeout: 20000 }, async () => {
  const { reports } = await compare({ CASE: 'exec' });
  assert.deepStrictEqual(reports[0].args, ['--flag', 'value with space']);
  assert.deepStrictEqual(reports[0].execArgv, ['--no-warnings', '--max-old-space-size=100']);
  assert.strictEqual(reports[0].cwd, os.tmpdir());
  assert.strictEqual(reports[0].argv1, '<settings-worker>');
  assert.strictEqual(reports[0].viaFork, 'yes');
});

test('an exec script that never loads cluster still goes online and listening', { timeout: 20000 }, async () => {
  const { find, reports } = await compare({ CASE: 'plainExec' }, { workers: 2 });
  assert.deepStrictEqual(find('cluster:online').map((e) => e.id).sort(), [1, 2]);
  assert.deepStrictEqual(find('cluster:listening').map((e) => e.id).sort(), [1, 2]);
  assert.deepStrictEqual(reports.map((r) => r.nodeOptions), ['<undefined>', '--no-deprecation']);
  for (const r of reports) {
    assert.strictEqual(r.builtinIsWorker, true);
    assert.deepStrictEqual(r.execArgv, ['--no-warnings']);
    assert.deepStrictEqual(r.envLeaks, []);
  }
});

for (const [name, env] of [
  ['silent', { CASE: 'silent' }],
  ['stdio array (wins over silent)', { CASE: 'stdioArray' }],
  ['stdio string', { CASE: 'stdioString' }],
  ['stdio null (falls back to silent)', { CASE: 'stdioOther', STDIO: 'null' }],
  ['stdio number (falls back to silent)', { CASE: 'stdioOther', STDIO: '5' }],
  ['stdio object (falls back to silent)', { CASE: 'stdioOther', STDIO: '{}' }],
]) {
  test(`stdio settings: ${name}`, { timeout: 20000 }, async () => {
    const { find } = await compare(env);
    assert.deepStrictEqual(find('piped-stdout')[0].text, 'to stdout\n');
  });
}

test("serialization 'advanced' carries Map, Set and BigInt both ways", { timeout: 20000 }, async () => {
  const { find, reports } = await compare({ CASE: 'advanced' });
  assert.deepStrictEqual(find('got-map')[0].entries, [['n', 'bigint', '10'], ['s', 'string', 'str']]);
  assert.strictEqual(reports[0].big, 'bigint');
  assert.deepStrictEqual(reports[0].set, [1, 2]);
});

test("serialization 'json' (default) cannot send a BigInt", { timeout: 20000 }, async () => {
  const { find } = await compare({ CASE: 'json' });
  assert.strictEqual(find('send-threw')[0].name, 'TypeError');
});

// --inspect-port only sets the port, so no inspector opens anywhere.
test('inspector flags give each worker its own --inspect-port', { timeout: 30000 }, async () => {
  const [def, num, fn, unused] = await Promise.all([
    compare({ CASE: 'inspectDefault' }, { workers: 2 }),
    compare({ CASE: 'inspectNumber' }, { workers: 2 }),
    compare({ CASE: 'inspectFunction' }, { workers: 2 }),
    compare({ CASE: 'inspectUnused' }),
  ]);
  assert.deepStrictEqual(def.reports.map((r) => r.execArgv),
                         [['--inspect-port=0', `--inspect-port=${9229 + 1}`], ['--inspect-port=0', `--inspect-port=${9229 + 2}`]]);
  assert.deepStrictEqual(num.reports.map((r) => r.execArgv.at(-1)), ['--inspect-port=41234', '--inspect-port=41234']);
  assert.deepStrictEqual(fn.reports.map((r) => r.execArgv.at(-1)).sort(), ['--inspect-port=42001', '--inspect-port=42002']);
  assert.strictEqual(fn.find('primary-view')[0].calls, 2);
  assert.deepStrictEqual(unused.reports[0].execArgv, ['--no-warnings']);
  assert.strictEqual(unused.find('primary-view')[0].calls, 0);
});

const SETTINGS_FIXTURES = ['cluster.js', 'lifecycle-settings.js', 'lifecycle-settings-worker.js'];

test('uid and gid', { timeout: 20000, skip: otherUserSkip() }, async (t) => {
  const copy = copyForWorkers(t, SETTINGS_FIXTURES);
  const { reports } = await compare({ CASE: 'uidGid' }, { fixture: copy.fixture('lifecycle-settings.js'), cwd: copy.dir });
  assert.deepStrictEqual([reports[0].uid, reports[0].gid], [OTHER_UID, OTHER_GID]);
});

// node:cluster's worker names the script it could not load; rs-cluster's
// fails earlier, on its own preload, and says so before Node's error (whose
// wording changes with Node's version).
test('a worker that may not read rs-cluster says where from and why', { timeout: 20000, skip: nativeOnly('the preload into every worker') || otherUserSkip() }, async (t) => {
  const copy = copyForWorkers(t, SETTINGS_FIXTURES, { closed: true });
  const c = startCluster(copy.fixture('lifecycle-settings.js'), { impl: 'rs', env: { CASE: 'uidGid' }, cwd: copy.dir });
  t.after(() => c.stop());
  assert.deepStrictEqual(await c.waitExit(10000), { code: 0, signal: null });
  assert.deepStrictEqual(c.events.filter((e) => e.event === 'exit').map((e) => e.code), [1]);
  const preload = path.join(copy.dir, 'js', 'index.js');
  const first = c.stderr.split('\n')[0];
  assert.strictEqual(first, `rs-cluster could not be loaded from ${preload}: EACCES: uid ${OTHER_UID}, gid ${OTHER_GID} ` +
    `may not enter ${copy.dir} (mode 0700, owner 0:${fs.statSync(copy.dir).gid})`);
});

// The policy in force is seen in the worker: a SCHED_NONE server holds a
// real socket, a round-robin one does not.
for (const [name, env, shared, now] of [
  ['default is SCHED_RR', {}, false, 2],
  ['NODE_CLUSTER_SCHED_POLICY=none', { NODE_CLUSTER_SCHED_POLICY: 'none' }, true, 1],
  ['NODE_CLUSTER_SCHED_POLICY=rr', { NODE_CLUSTER_SCHED_POLICY: 'rr' }, false, 2],
  ['set before the first fork', { SET_POLICY_WHEN: 'before', SET_POLICY: 'none' }, true, 1],
  ['set over the env before the first fork', { NODE_CLUSTER_SCHED_POLICY: 'none', SET_POLICY_WHEN: 'before', SET_POLICY: 'rr' }, false, 2],
  ['frozen by setupPrimary', { SET_POLICY_WHEN: 'after-setup', SET_POLICY: 'none' }, false, 1],
  ['frozen by fork', { SET_POLICY_WHEN: 'after-fork', SET_POLICY: 'none' }, false, 1],
  // An invalid policy throws once, stays frozen, and then shares handles.
  ['invalid', { SET_POLICY_WHEN: 'before', SET_POLICY: 'bad' }, true, 7],
]) {
  test(`schedulingPolicy: ${name}`, { timeout: 20000 }, async () => {
    const { find, reports } = await compare({ CASE: 'policy', ...env });
    assert.strictEqual(reports[0].shared, shared);
    assert.strictEqual(find('primary-view')[0].now, now);
  });
}
