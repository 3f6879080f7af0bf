'use strict';
// dgram.Socket#bind in workers, rs-cluster beside node:cluster: udp4 and
// udp6 always use a shared handle (whatever the policy), every worker gets
// the same port and receives datagrams on it; 'listening' events carry
// addressType 'udp4'/'udp6'; exclusive sockets bind in the worker alone;
// bind errors in the primary reach the worker's socket with Node's shape.

const test = require('node:test');
const assert = require('node:assert');
const dgram = require('node:dgram');
const { IMPLS, eachImpl } = require('./helpers');
const { POLICIES, run, waitCount, sleep, normalizePorts, byWorker, opOf, HAS_SS, owners } = require('./listen-helpers');

// Sends datagrams to host:port until every worker in `ids` printed one for op `i`.
async function reachAll(c, { type, host, port, i, ids = [1, 2], max = 400 }) {
  const client = dgram.createSocket(type);
  const got = () => new Set(c.events.filter((e) => e.event === 'msg' && e.i === i).map((e) => e.id));
  try {
    for (let n = 0; n < max && ids.some((id) => !got().has(id)); n++) {
      await new Promise((resolve, reject) => client.send(`d${n}`, port, host, (e) => (e ? reject(e) : resolve())));
      await sleep(n < 20 ? 2 : 10);
    }
  } finally {
    client.close();
  }
  await sleep(20);
  return [...got()].sort();
}

const OPS = [
  { type: 'udp4', args: [0, '127.0.0.1'] }, // 0
  { type: 'udp6', args: [0, '::1'] }, // 1
  { type: 'udp4', args: [] }, // 2: bind() with no port: 0.0.0.0, a random port
  { type: 'udp6', args: [{ port: 0 }] }, // 3: '::'
  { type: 'udp4', args: [{ port: 0, address: '127.0.0.1' }] }, // 4: a second bind(0): another port
  { type: 'udp4', args: ['$TAKEN', '127.0.0.1'] }, // 5: EADDRINUSE
  { type: 'udp4', args: [0, '10.255.255.1'] }, // 6: EADDRNOTAVAIL
  { type: 'udp4', args: [{ port: 0, address: '127.0.0.1', exclusive: true }] }, // 7
];

for (const policy of POLICIES) {
  test(`udp4/udp6 sockets share their port across workers (${policy})`, { timeout: 30000 }, async (t) => {
    const seen = {};
    await eachImpl(async (impl) => {
      const taken = dgram.createSocket('udp4');
      await new Promise((resolve) => taken.bind(0, '127.0.0.1', resolve));
      t.after(() => taken.close());
      const TAKEN = taken.address().port;
      const c = run(t, 'dgram-bind.js', { impl, policy, env: { DGRAM_OPS: JSON.stringify(OPS), TAKEN: `${TAKEN}` } });
      await waitCount(c, (e) => e.event === 'wdone', 2);
      const port = (i) => opOf(c, 1, i).addr.port;
      for (const i of [0, 1, 2, 3, 4]) assert.strictEqual(opOf(c, 2, i).addr.port, port(i), `${impl}: op ${i}`);
      assert.notStrictEqual(port(4), port(0));
      assert.notStrictEqual(opOf(c, 2, 7).addr.port, port(7), `${impl}: exclusive sockets are separate`);

      // Always a shared handle: the primary and both workers hold the socket.
      if (HAS_SS) {
        const held = owners('u', port(0));
        const pids = c.events.filter((e) => e.event === 'fork').map((e) => e.pid);
        const primaryPid = (await c.waitFor('primary')).pid;
        assert.ok(held.has(primaryPid) && pids.every((p) => held.has(p)), `${impl}: holders ${[...held]}`);
      }

      // Both workers receive on the same port.
      assert.deepStrictEqual(await reachAll(c, { type: 'udp4', host: '127.0.0.1', port: port(0), i: 0 }), [1, 2], `${impl}: udp4`);
      assert.deepStrictEqual(await reachAll(c, { type: 'udp6', host: '::1', port: port(1), i: 1 }), [1, 2], `${impl}: udp6`);
      assert.deepStrictEqual(await reachAll(c, { type: 'udp6', host: '::1', port: port(3), i: 3 }), [1, 2], `${impl}: udp6 on ::`);
      assert.ok((await reachAll(c, { type: 'udp4', host: '127.0.0.1', port: port(2), i: 2, ids: [1], max: 50 })).length > 0);
      seen[impl] = normalizePorts(byWorker(c, [1, 2]), { TAKEN });
    });
    // Exclusive sockets bind in each worker: their ports differ per worker.
    for (const impl of IMPLS) for (const id of [1, 2]) seen[impl][id].ops[7].addr.port = '<exclusive>';
    assert.deepStrictEqual(seen.rs, seen.node);
  });
}

test('exclusive dgram sockets: a second exclusive bind of the port fails, reuseAddr shares it', { timeout: 30000 }, async (t) => {
  const seen = {};
  await eachImpl(async (impl) => {
    const free = async () => {
      const probe = dgram.createSocket('udp4');
      await new Promise((resolve) => probe.bind(0, '127.0.0.1', resolve));
      const { port } = probe.address();
      await new Promise((resolve) => probe.close(resolve));
      return port;
    };
    const XPORT = await free();
    const XPORT2 = await free();
    // Workers start one after the other: worker 1 holds the ports when worker 2 binds.
    const ops = [
      { type: 'udp4', args: [{ port: '$XPORT', address: '127.0.0.1', exclusive: true }] }, // 0
      { type: 'udp4', args: [{ port: '$XPORT2', address: '127.0.0.1', exclusive: true }], reuseAddr: true }, // 1
    ];
    const c = run(t, 'dgram-bind.js', { impl, env: { DGRAM_OPS: JSON.stringify(ops), XPORT: `${XPORT}`, XPORT2: `${XPORT2}`, SEQUENTIAL: '1' } });
    await waitCount(c, (e) => e.event === 'wdone', 2);
    assert.strictEqual(opOf(c, 1, 0).addr.port, XPORT);
    assert.strictEqual(opOf(c, 2, 0).err.code, 'EADDRINUSE');
    assert.strictEqual(opOf(c, 2, 1).addr.port, XPORT2);
    seen[impl] = normalizePorts(byWorker(c, [1, 2]), { XPORT, XPORT2 });
  });
  assert.deepStrictEqual(seen.rs, seen.node);
});

test("bind({ fd }) in a worker uses the primary's UDP socket", {
  timeout: 30000,
}, async (t) => {
  const seen = {};
  await eachImpl(async (impl) => {
    const ops = [{ type: 'udp4', args: [{ fd: '$PFD' }] }];
    const c = run(t, 'dgram-bind.js', { impl, env: { DGRAM_OPS: JSON.stringify(ops), LAUNCH_WITH_UDP_FD: '1' } });
    const { fdPort } = await c.waitFor('launcher');
    await waitCount(c, (e) => e.event === 'wdone', 2);
    seen[impl] = normalizePorts(byWorker(c, [1, 2]), { FD_PORT: fdPort });
  });
  assert.deepStrictEqual(seen.rs, seen.node);
  assert.strictEqual(seen.node[1].ops[0].addr.port, '<FD_PORT>');
});
