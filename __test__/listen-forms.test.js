'use strict';
// net.Server#listen in workers, rs-cluster beside node:cluster: every TCP
// form, unix socket paths, `{ fd }` of the primary, handles, `exclusive`.
// Each run prints what every listen call gave and which 'listening' events
// the primary saw; both implementations must print the same (ports aside),
// and real clients must reach the servers.

const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const { eachImpl, get } = require('./helpers');
const {
  POLICIES, run, waitCount, control, until, talk, getPath,
  normalizePorts, byWorker, opOf, backlogOf, tmpDir,
} = require('./listen-helpers');
const { freePort } = require('../scripts/lib/net');

const done = (n) => (c) => waitCount(c, (e) => e.event === 'wdone', n);
const ids = (bodies) => [...new Set(bodies)].sort();

const TCP_OPS = [
  { args: [0, '127.0.0.1'] }, // 0: shared by both workers
  { args: [0, '127.0.0.1'] }, // 1: second listen(0) in a worker: another port
  { args: [0, '::1'] }, // 2
  { args: [0, '::'] }, // 3: dual stack
  { args: [{ port: 0, host: '::', ipv6Only: true }] }, // 4
  { args: [0] }, // 5: no host
  { args: [] }, // 6: listen()
  { args: [{ port: 0, host: '127.0.0.1', backlog: 7 }] }, // 7
  { args: [0, '127.0.0.1', 9] }, // 8: (port, host, backlog)
  { args: [{ port: '0', host: 'localhost' }] }, // 9: string port, name lookup
  { type: 'net', args: [{ port: 0, host: '127.0.0.1' }] }, // 10: plain net.Server
];

for (const policy of POLICIES) {
  test(`TCP listen forms give the same addresses and 'listening' events (${policy})`, { timeout: 30000 }, async (t) => {
    const seen = {};
    await eachImpl(async (impl) => {
      const c = run(t, 'listen-forms.js', { impl, policy, env: { LISTEN_OPS: JSON.stringify(TCP_OPS) } });
      await done(2)(c);
      const port = (i) => opOf(c, 1, i).addr.port;

      // Every worker got the same port for the same listen call...
      for (let i = 0; i < TCP_OPS.length; i++) {
        assert.strictEqual(opOf(c, 2, i).addr.port, port(i), `${impl}: op ${i} port differs between workers`);
      }
      // ...and a second listen(0) in one worker another one.
      assert.notStrictEqual(port(1), port(0));

      // Real clients reach every form.
      const bodies = [];
      for (let k = 0; k < 6; k++) bodies.push((await get(port(0))).body);
      if (policy === 'rr') assert.deepStrictEqual(ids(bodies), ['1', '2'], `${impl}: round-robin reached ${bodies}`);
      assert.match((await get(port(2), { host: '::1' })).body, /^[12]$/);
      assert.match((await get(port(3))).body, /^[12]$/);
      assert.match((await get(port(3), { host: '::1' })).body, /^[12]$/);
      assert.match((await get(port(4), { host: '::1' })).body, /^[12]$/);
      // ipv6Only: the workers never answer on IPv4. Usually refused, but the
      // IPv4 port of that number is free for anyone (another test's
      // listener, or this client's own ephemeral port: a self-connect), so
      // any failure counts, and only a worker's reply is wrong.
      const v4 = await talk({ port: port(4), host: '127.0.0.1' }, { timeout: 1000 });
      assert.ok(v4.error && v4.data === '', `${impl}: ipv6Only server answered on IPv4: ${JSON.stringify(v4)}`);
      assert.match((await get(port(5))).body, /^[12]$/);
      assert.match((await get(port(6), { host: '::1' })).body, /^[12]$/);
      assert.match(await talk({ port: port(10), host: '127.0.0.1' }), /^[12]$/);

      seen[impl] = {
        workers: normalizePorts(byWorker(c, [1, 2])),
        backlog: { 7: backlogOf(port(7)), 8: backlogOf(port(8)), 0: backlogOf(port(0)) },
      };
    });
    // The cluster and worker 'listening' events carry the same address object.
    for (const id of [1, 2]) assert.deepStrictEqual(seen.rs.workers[id].listening, seen.rs.workers[id].wlistening);
    assert.deepStrictEqual(seen.rs, seen.node);
  });
}

for (const policy of POLICIES) {
  test(`unix socket paths: resolved, chmod'ed, served, removed with the last worker (${policy})`, { timeout: 30000 }, async (t) => {
    const seen = {};
    await eachImpl(async (impl) => {
      const dir = tmpDir(t);
      const abs = path.join(dir, 'abs.sock');
      const ops = [
        { args: ['rel.sock'] },
        { args: [{ path: 'rw.sock', readableAll: true, writableAll: true }] },
        { args: [abs] },
        { args: [{ path: 'r.sock', readableAll: true }] },
      ];
      const c = run(t, 'listen-forms.js', { impl, policy, cwd: dir, env: { LISTEN_OPS: JSON.stringify(ops) } });
      await done(2)(c);
      const files = ['rel.sock', 'rw.sock', 'abs.sock', 'r.sock'].map((f) => path.join(dir, f));
      const modes = files.map((f) => (fs.statSync(f).mode & 0o777).toString(8));
      for (const f of files) {
        assert.ok(fs.statSync(f).isSocket(), `${impl}: ${f} is a socket`);
        assert.match((await getPath(f)).body, /^[12]$/);
      }
      const bodies = [];
      for (let k = 0; k < 4; k++) bodies.push((await getPath(files[0])).body);
      if (policy === 'rr') assert.deepStrictEqual(ids(bodies), ['1', '2']);

      // One worker closing keeps the file; the last one removes it.
      await control(c, 'send', 1, { cmd: 'closeAll' });
      await c.waitFor((e) => e.event === 'closedAll' && e.id === 1);
      assert.ok(files.every((f) => fs.existsSync(f)), `${impl}: files kept while worker 2 listens`);
      assert.match((await getPath(files[0])).body, /^2$/);
      await control(c, 'send', 2, { cmd: 'closeAll' });
      await c.waitFor((e) => e.event === 'closedAll' && e.id === 2);
      await until(() => files.every((f) => !fs.existsSync(f)), { what: `${impl}: socket files removed` });

      seen[impl] = { workers: byWorker(c, [1, 2]), modes };
      seen[impl] = JSON.parse(JSON.stringify(seen[impl]).replaceAll(dir, '<dir>'));
    });
    const { modes: rsModes, ...rs } = seen.rs;
    const { modes: nodeModes, ...node } = seen.node;
    assert.deepStrictEqual(rs, node);
    // node:cluster's shared handle (SCHED_NONE) ignores readableAll and
    // writableAll; only its round-robin handle applies them.
    const base = 0o777 & ~process.umask();
    // libuv 1.51 (Node 22) sets the mode to exactly the requested bits;
    // before, it added them to the file's mode.
    const [uvMajor, uvMinor] = process.versions.uv.split('.').map(Number);
    const exact = uvMajor > 1 || (uvMajor === 1 && uvMinor >= 51);
    const rr = exact ? [base, 0o666, base, 0o444] : [base, base | 0o666, base, base | 0o444];
    const want = (policy === 'rr' ? rr : [base, base, base, base]).map((m) => m.toString(8));
    assert.deepStrictEqual(rsModes, want);
    assert.deepStrictEqual(rsModes, nodeModes);
  });
}

for (const policy of POLICIES) {
  test(`listen({ fd }) uses the primary's fd (${policy})`, { timeout: 30000 }, async (t) => {
    const seen = {};
    const second = {};
    await eachImpl(async (impl) => {
      // Op 1 asks for the same fd again under another index. node:cluster
      // >= 22 with SCHED_NONE crashes the worker there (an internal assertion
      // in its child.js), which is nothing to compare with: a harmless listen
      // stands in.
      const nodeMajor = Number(process.versions.node.split('.')[0]);
      const again = policy === 'none' && nodeMajor >= 22 ? { args: [0, '127.0.0.1'] } : { args: [{ fd: '$PFD' }] };
      const ops = [{ args: [{ fd: '$PFD' }] }, again];
      const c = run(t, 'listen-forms.js', { impl, policy, env: { LISTEN_OPS: JSON.stringify(ops), LAUNCH_WITH_FD: '1' } });
      const { fdPort } = await c.waitFor('launcher');
      await done(2)(c);
      assert.strictEqual(opOf(c, 1, 0).addr.port, fdPort);
      const bodies = [];
      for (let k = 0; k < 4; k++) bodies.push((await get(fdPort)).body);
      if (policy === 'rr') assert.deepStrictEqual(ids(bodies), ['1', '2']);
      const all = normalizePorts(byWorker(c, [1, 2]), { FD_PORT: fdPort });
      second[impl] = [1, 2].map((id) => all[id].ops.splice(1, 1)[0]);
      for (const id of [1, 2]) all[id].listening.splice(1); // 'listening' of op 1, if any
      for (const id of [1, 2]) all[id].wlistening.splice(1);
      seen[impl] = all;
    });
    assert.deepStrictEqual(seen.rs, seen.node);
    // node:cluster's round-robin primary opens the fd once per handle in its
    // own event loop, so a second handle on the same fd fails with EEXIST.
    await t.test('a second listen({ fd }) on the same fd behaves as node', {
      timeout: 5000,
    }, () => assert.deepStrictEqual(second.rs, second.node));
  });
}

for (const policy of POLICIES) {
  test(`listen(handle): used directly, no primary (${policy})`, { timeout: 30000 }, async (t) => {
    const seen = {};
    await eachImpl(async (impl) => {
      // Op 1 listens on op 0's handle: a real TCP handle with SCHED_NONE,
      // a stand-in (which net rejects) with round-robin. Each worker also
      // gets a listening server from the primary with worker.send().
      const ops = [{ args: [0, '127.0.0.1'] }, { args: [{ $handle: 0 }] }];
      const c = run(t, 'listen-forms.js', { impl, policy, env: { LISTEN_OPS: JSON.stringify(ops), SEND_SERVER: '1' } });
      const { port } = await c.waitFor('primaryServer');
      await done(2)(c);
      // The handle the primary sent arrives as a listening server on its port.
      const received = c.events.filter((e) => e.event === 'received');
      assert.strictEqual(received.length, 2);
      for (const r of received) assert.deepStrictEqual([r.isServer, r.listening, r.addr.port], [true, true, port]);
      // Whoever accepts first (primary or a worker) answers.
      for (let k = 0; k < 4; k++) assert.match(await talk({ port, host: '127.0.0.1' }), /^(primary|w1|w2)$/);
      if (policy === 'none') {
        assert.deepStrictEqual(opOf(c, 1, 1).addr, opOf(c, 1, 0).addr);
        assert.match((await get(opOf(c, 1, 0).addr.port)).body, /^[12]$/);
      }
      seen[impl] = normalizePorts({ workers: byWorker(c, [1, 2]), received: received.map(({ id, ...r }) => r).map(({ pid, ...r }) => r) }, { PRIMARY: port });
    });
    assert.deepStrictEqual(seen.rs, seen.node);
  });
}

test('exclusive: a worker binds alone; a second exclusive bind on the port fails as with node', { timeout: 30000 }, async (t) => {
  const seen = {};
  await eachImpl(async (impl) => {
    const xport = await freePort();
    // Workers start one after the other: worker 1 holds XPORT when worker 2 tries.
    const ops = [
      { args: [{ port: '$XPORT', host: '127.0.0.1', exclusive: true }] },
      { args: [{ port: 0, host: '127.0.0.1', exclusive: true }] },
      { args: [{ port: '$XPORT', host: '127.0.0.1' }], only: [2] },
    ];
    const c = run(t, 'listen-forms.js', { impl, env: { LISTEN_OPS: JSON.stringify(ops), XPORT: `${xport}`, SEQUENTIAL: '1' } });
    await done(2)(c);
    assert.ok(opOf(c, 1, 0).addr, `${impl}: worker 1 binds XPORT`);
    assert.strictEqual(opOf(c, 2, 0).err.code, 'EADDRINUSE');
    // Exclusive listen(0) binds in the worker itself: ports differ.
    assert.notStrictEqual(opOf(c, 1, 1).addr.port, opOf(c, 2, 1).addr.port);
    assert.strictEqual((await get(xport)).body, '1');
    seen[impl] = normalizePorts(byWorker(c, [1, 2]), { XPORT: xport });
  });
  assert.deepStrictEqual(seen.rs, seen.node);
});
