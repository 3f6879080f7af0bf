'use strict';
// Errors the primary meets while binding for a worker surface as that
// worker's server 'error' event with Node's shape (code, errno, syscall,
// address, port, message, own keys), exactly as with node:cluster; the
// worker keeps working afterwards.

const test = require('node:test');
const assert = require('node:assert');
const net = require('node:net');
const { eachImpl, get } = require('./helpers');
const { POLICIES, run, waitCount, normalizePorts, byWorker, opOf } = require('./listen-helpers');

function taken(t, host) {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, host, () => resolve(s.address().port));
    t.after(() => s.close());
  });
}

const nodeMajor = Number(process.versions.node.split('.')[0]);
const nodeRelistenCrashes = (policy) => policy === 'none' && nodeMajor >= 22;

const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;

for (const policy of POLICIES) {
  test(`bind errors in the primary reach the worker's server as node's 'error' (${policy})`, { timeout: 30000 }, async (t) => {
    const seen = {};
    const pipe = {};
    await eachImpl(async (impl) => {
      const port4 = await taken(t, '127.0.0.1');
      const port6 = await taken(t, '::1');
      const ops = [
        { args: ['$TAKEN', '127.0.0.1'] }, // 0: EADDRINUSE (bind)
        { args: [{ port: '$TAKEN', host: '127.0.0.1', exclusive: true }] }, // 1: EADDRINUSE (listen, no primary)
        { args: ['$TAKEN'] }, // 2: '::' dual stack over a taken IPv4 port
        { args: ['$TAKEN6', '::1'] }, // 3
        { args: [0, '10.255.255.1'] }, // 4: EADDRNOTAVAIL
        { args: [0, '127.0.0.1'] }, // 5: the worker still listens fine
        // 6: the same failing key again. node:cluster >= 22 with SCHED_NONE
        // crashes the worker there (an internal assertion in its child.js),
        // which is nothing to compare with: a harmless listen stands in.
        nodeRelistenCrashes(policy) ? { args: [0, '127.0.0.1'] } : { args: ['$TAKEN', '127.0.0.1'] },
        { args: ['/nonexistent-rs-cluster-dir/x.sock'] }, // 7: libuv reports EACCES, not ENOENT
      ];
      if (!isRoot) ops.push({ args: [80, '127.0.0.1'] }); // 8: EACCES, privileged port
      const c = run(t, 'listen-forms.js', {
        impl, policy, env: { LISTEN_OPS: JSON.stringify(ops), TAKEN: `${port4}`, TAKEN6: `${port6}` },
      });
      await waitCount(c, (e) => e.event === 'wdone', 2);
      for (const id of [1, 2]) {
        assert.strictEqual(opOf(c, id, 0).err.code, 'EADDRINUSE');
        assert.strictEqual(opOf(c, id, 4).err.code, 'EADDRNOTAVAIL');
        if (!isRoot) assert.strictEqual(opOf(c, id, 8).err.code, 'EACCES');
      }
      assert.match((await get(opOf(c, 1, 5).addr.port)).body, /^[12]$/);
      const all = normalizePorts(byWorker(c, [1, 2]), { TAKEN: port4, TAKEN6: port6 });
      pipe[impl] = [1, 2].map((id) => all[id].ops.splice(7, 1)[0]);
      seen[impl] = all;
    });
    assert.deepStrictEqual(seen.rs, seen.node);
    await t.test('a unix path in a missing directory fails with EACCES as node', {
      timeout: 5000,
    }, () => assert.deepStrictEqual(pipe.rs, pipe.node));
  });
}
