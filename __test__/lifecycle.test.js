'use strict';
// Lifecycle and API of the cluster module, rs-cluster against node:cluster:
// each fixture runs on both implementations and the transcripts must match.
const test = require('node:test');
const assert = require('node:assert');
const { startCluster, IMPLS, eachImpl, FALLBACK } = require('./helpers');
const { runBoth, streams } = require('./fixtures/lifecycle-compare');

function assertCleanExit(res) {
  for (const impl of IMPLS) {
    assert.deepStrictEqual(res[impl].exit, { code: 0, signal: null },
                           `${impl} primary: ${JSON.stringify(res[impl].events)}\n${res[impl].stderr}`);
  }
}

test('cluster object, fork(env), ids, workers, cluster.worker and Worker match node:cluster',
     { timeout: 20000 }, async () => {
       const res = await runBoth('lifecycle-api.js');
       assertCleanExit(res);
       assert.deepStrictEqual(res.rs.events, res.node.events);
       assert.strictEqual(res.rs.stderr, res.node.stderr);

       // What node:cluster does, spelled out.
       const ev = (name) => res.rs.events.filter((e) => e.event === name);
       const [shape] = ev('primary-shape');
       assert.strictEqual(shape.isPrimary, true);
       assert.strictEqual(shape.isMaster, true);
       assert.strictEqual(shape.isWorker, false);
       assert.strictEqual(shape.worker, '<undefined>');
       assert.deepStrictEqual([shape.SCHED_NONE, shape.SCHED_RR, shape.schedulingPolicy], [1, 2, 2]);
       assert.deepStrictEqual(ev('settings-after-setup')[0].args, ['two']);
       const [forked] = ev('forked');
       assert.deepStrictEqual(forked.ids, [1, 2, 3]);
       assert.deepStrictEqual(forked.workerKeys, ['1', '2', '3']);
       assert.ok(forked.sameObjects && forked.instances && forked.processes);
       const reports = ev('report');
       assert.deepStrictEqual(reports.map((r) => r.workerId), [1, 2, 3]);
       for (const r of reports) {
         assert.strictEqual(r.isWorker, true);
         assert.strictEqual(r.isPrimary, false);
         assert.strictEqual(r.workerProcessIsProcess, true);
         assert.strictEqual(r.workerInstance, true);
         assert.strictEqual(r.workerState, 'online');
         assert.strictEqual(r.shape.fork, undefined);
         assert.deepStrictEqual(r.envLeaks, []);
         assert.deepStrictEqual(r.argv, ['two']);
       }
       assert.deepStrictEqual(reports[1].env, {
         FROM_PARENT: 'parent', OVERRIDDEN: 'env', EXTRA: 'x', NUM: '5', NODE_OPTIONS: '--no-deprecation',
       });
       assert.strictEqual(reports[1].noDeprecation, true);
       assert.strictEqual(reports[0].env.NODE_OPTIONS, '<undefined>');
       assert.deepStrictEqual(ev('disconnected')[0].workers, []);
       assert.strictEqual(ev('forked-again')[0].id, 4);
       assert.deepStrictEqual(ev('exit-again')[0], { event: 'exit-again', id: 4, code: 0, signal: null });
     });

// Each scenario's cluster and Worker events, with the worker's state,
// exitedAfterDisconnect, isConnected(), isDead() and cluster.workers
// membership at each event, on the primary and inside the worker.
// `racy`: streams whose content depends on timing in node:cluster too.
const scenarios = {
  basic: {
    check(s) {
      // Internal traffic never reaches the user's message listeners.
      assert.deepStrictEqual(s.w1.filter((e) => e.event === 'process:message').map((e) => e.args[0]), [{ hello: 'a' }]);
      const names = s.p1.map((e) => e.event);
      assert.deepStrictEqual(names.slice(0, 6), [
        'forked', 'cluster:fork', 'worker1:online', 'cluster:online', 'worker1:listening', 'cluster:listening',
      ]);
      assert.deepStrictEqual(s.p.find((e) => e.event === 'done').workers, []);
    },
  },
  disconnectOne: {
    check(s) {
      const ret = s.p.find((e) => e.event === 'disconnect-returned');
      assert.strictEqual(ret.same, true);
      assert.strictEqual(ret.w.ead, true);
      assert.strictEqual(ret.w.listed, false);
      assert.deepStrictEqual(s.w1.map((e) => e.event).slice(-4),
                             ['server:close', 'self:disconnect', 'process:disconnect', 'process:exit']);
    },
  },
  kill: {
    check(s) {
      const exit = s.p1.find((e) => e.event === 'cluster:exit');
      assert.deepStrictEqual(exit.args, ['worker#1', null, 'SIGTERM']);
      assert.strictEqual(exit.w.ead, false);
    },
  },
  destroySigkill: {},
  disconnectThenKill: {
    racy: ['w1'],
    check(s) {
      assert.strictEqual(s.p1.find((e) => e.event === 'cluster:exit').w.ead, true);
    },
  },
  processKill: {
    check(s) {
      assert.strictEqual(s.p1.find((e) => e.event === 'cluster:exit').w.ead, false);
    },
  },
  selfExit: {
    check(s) {
      assert.deepStrictEqual(s.p1.find((e) => e.event === 'cluster:exit').args, ['worker#1', 3, null]);
    },
  },
  workerDisconnect: {
    check(s) {
      assert.deepStrictEqual(s.w1.map((e) => e.event),
                             ['start', 'disconnect-returned', 'server:close', 'self:disconnect', 'process:disconnect', 'process:exit']);
      assert.strictEqual(s.p1.find((e) => e.event === 'cluster:exit').w.ead, true);
    },
  },
  workerDestroy: {
    check(s) {
      assert.strictEqual(s.p1.find((e) => e.event === 'cluster:exit').w.ead, true);
    },
  },
  workerKill: {},
  workerProcessDisconnect: {
    check(s) {
      assert.strictEqual(s.p1.find((e) => e.event === 'cluster:exit').w.ead, false);
    },
  },
  // Whether a message sent right behind 'disconnect' is still delivered
  // depends on how the two arrive in the worker, and whether its write
  // fails depends on whether the worker has closed the channel by then.
  sendAfterDisconnect: { racy: ['w1'], lateSend: true },
  sendAfterDisconnectNoCb: { racy: ['w1'], lateSend: true },
  sendAfterDisconnected: {
    check(s) {
      const cb = s.p.find((e) => e.event === 'send-cb');
      assert.strictEqual(cb.err.code, 'ERR_IPC_CHANNEL_CLOSED');
    },
  },
  sendAfterDisconnectedNoCb: {
    check(s) {
      const err = s.p1.find((e) => e.event === 'worker1:error');
      assert.strictEqual(err.args[0].code, 'ERR_IPC_CHANNEL_CLOSED');
    },
  },
  disconnectWithConnection: {
    check(s) {
      // 300 ms after disconnect() the open connection still holds the worker.
      const end = s.p.find((e) => e.event === 'client-end');
      assert.deepStrictEqual([end.w.connected, end.w.ead, end.w.listed], [true, true, false]);
      assert.deepStrictEqual(s.w1.map((e) => e.event).slice(1, 4), ['socket-end', 'server:close', 'self:disconnect']);
    },
  },
  disconnectNone: {},
  disconnectMixed: {},
  messages: {
    check(s) {
      assert.deepStrictEqual(s.p1.filter((e) => e.event === 'worker1:message').map((e) => e.args[0]),
                             [{ n: 1 }, { n: 2 }, { n: 3 }]);
      assert.deepStrictEqual(s.w1.filter((e) => e.event === 'process:message').map((e) => e.args[0]),
                             [{ bye: true }]);
      assert.deepStrictEqual(s.p.find((e) => e.event === 'send-cb').err, null);
    },
  },
  handles: {
    check(s) {
      assert.ok(s.p.some((e) => e.event === 'got-socket' && e.isSocket));
      assert.ok(s.w1.some((e) => e.event === 'client-data' && e.data === 'hi from primary'));
      assert.ok(s.w1.some((e) => e.event === 'got-server' && e.isServer));
      assert.ok(s.w1.some((e) => e.event === 'received-server-connection'));
    },
  },
};

// A write that lost the race with the worker closing its channel.
const LATE_WRITE = new Set(['EPIPE', 'ECONNRESET']);

function forgiveLateWrite(stream) {
  return stream
    .filter((e) => !(e.event.endsWith(':error') && LATE_WRITE.has(e.args[0]?.code)))
    .map((e) => (e.event === 'send-cb' && LATE_WRITE.has(e.err?.code) ? { ...e, err: null } : e));
}

for (const [name, { racy = [], lateSend = false, check }] of Object.entries(scenarios)) {
  test(`events and states match node:cluster: ${name}`, { timeout: 20000 }, async () => {
    const res = await runBoth('lifecycle-scenario.js', { SCENARIO: name });
    assertCleanExit(res);
    const rs = streams(res.rs.events);
    const node = streams(res.node.events);
    for (const key of racy) {
      delete rs[key];
      delete node[key];
    }
    if (lateSend) {
      for (const s of [rs, node]) for (const key of Object.keys(s)) s[key] = forgiveLateWrite(s[key]);
    }
    assert.deepStrictEqual(Object.keys(rs).sort(), Object.keys(node).sort());
    for (const key of Object.keys(node)) {
      assert.deepStrictEqual(rs[key], node[key], `stream ${key} of scenario ${name}`);
    }
    assert.ok(node.p.some((e) => e.event === 'done'), 'the scenario ran to its end');
    assert.strictEqual(res.rs.stderr, res.node.stderr);
    if (check) check(rs);
  });
}

test('workers leave at once, with code 0, when the primary is SIGKILLed', { timeout: 20000 }, async (t) => {
  const runs = IMPLS.map((impl) => ({ impl, c: startCluster('lifecycle-orphan.js', { impl }) }));
  t.after(() => Promise.all(runs.map(({ c }) => c.stop())));
  const seen = {};
  await eachImpl(async (impl) => {
    const { c } = runs.find((r) => r.impl === impl);
    await c.waitFor('ready');
    const killedAt = Date.now();
    process.kill(c.child.pid, 'SIGKILL');
    const exits = await Promise.all([1, 2].map((id) => c.waitFor((e) => e.event === 'worker-exit' && e.id === id, 5000)));
    for (const e of exits) {
      assert.ok(e.at - killedAt < 2000, `${impl} worker ${e.id} took ${e.at - killedAt} ms`);
    }
    seen[impl] = c.events
      .filter((e) => e.event === 'worker-exit' || e.event === 'worker-disconnect')
      .map(({ at, ...rest }) => rest)
      .sort((a, b) => a.id - b.id || a.event.localeCompare(b.event));
  });
  // What node:cluster's workers do, and rs-cluster's must. node:cluster's own
  // listening worker now and then exits with code 1 and no 'disconnect'
  // instead (seen on Node 22 under a loaded test run), so its outcome is
  // reported, not required.
  const expected = [
    { event: 'worker-disconnect', id: 1, ead: '<undefined>' },
    { event: 'worker-exit', id: 1, code: 0 },
    { event: 'worker-disconnect', id: 2, ead: '<undefined>' },
    { event: 'worker-exit', id: 2, code: 0 },
  ];
  t.diagnostic(`node:cluster: ${JSON.stringify(seen.node)}`);
  // Without the native primary both sides are node:cluster's: reported too.
  if (FALLBACK) t.diagnostic(`rs-cluster as node:cluster: ${JSON.stringify(seen.rs)}`);
  else assert.deepStrictEqual(seen.rs, expected);
});
