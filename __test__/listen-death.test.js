'use strict';
// A worker dies (SIGKILL) with connections queued for it and in flight to
// it: with rs-cluster the primary reads back every connection the dead
// worker never read and hands it to the other worker, so nothing is lost. node:cluster is run beside it for comparison. When the last worker
// is gone the port is closed (connections refused) though the primary lives.

const test = require('node:test');
const assert = require('node:assert');
const { eachImpl, get, nativeOnly } = require('./helpers');
const { POLICIES, run, waitCount, control, sleep, until, talk, opOf } = require('./listen-helpers');

const BURST = 30;

for (const policy of POLICIES) {
  test(`SIGKILL of a worker during a burst loses nothing; the last worker leaving closes the port (${policy})`, { timeout: 30000, skip: nativeOnly('taking back what a killed worker left waiting') }, async (t) => {
    const seen = {};
    await eachImpl(async (impl) => {
      const c = run(t, 'listen-death.js', { impl, policy });
      await waitCount(c, (e) => e.event === 'wdone', 2);
      const { port } = opOf(c, 1, 0).addr;
      const pid1 = c.events.find((e) => e.event === 'fork' && e.id === 1).pid;

      // Worker 2 stalls for a while, worker 1 for good: connections pile up
      // in both windows and in the primary (or the kernel backlog).
      await control(c, 'send', 2, { cmd: 'freeze', ms: 1200 });
      await c.waitFor((e) => e.event === 'frozen' && e.id === 2);
      await control(c, 'send', 1, { cmd: 'freeze', ms: 20000 });
      await c.waitFor((e) => e.event === 'frozen' && e.id === 1);

      const burst = Array.from({ length: BURST }, () => get(port, { timeout: 8000 }).then((r) => r.body, (e) => `error:${e.code || e.message}`));
      await sleep(300);
      process.kill(pid1, 'SIGKILL');
      const bodies = await Promise.all(burst);
      await c.waitFor((e) => e.event === 'exit' && e.id === 1);
      const served = bodies.filter((b) => b === '2').length;
      if (impl === 'rs' || policy === 'none') {
        assert.strictEqual(served, BURST, `${impl}: ${JSON.stringify(bodies)}`);
      } else {
        t.diagnostic(`node:cluster (${policy}): ${served}/${BURST} served, the rest: ${JSON.stringify(bodies.filter((b) => b !== '2'))}`);
        assert.ok(served >= BURST - 9, `node: ${served}/${BURST}`);
      }
      assert.strictEqual((await get(port)).body, '2');

      // The last worker leaves: the port is closed, the primary still runs.
      await control(c, 'kill', 2);
      await c.waitFor((e) => e.event === 'exit' && e.id === 2);
      const refused = await until(async () => {
        const r = await talk({ port, host: '127.0.0.1' }, { timeout: 1000 });
        return r.error === 'ECONNREFUSED' && r;
      }, { what: `${impl}: port closed after the last worker died` });
      assert.strictEqual(await control(c, 'fork'), '3', `${impl}: the primary is alive`);
      seen[impl] = {
        refused: refused.error,
        exits: c.events.filter((e) => e.event === 'exit').map(({ id, code, signal, exitedAfterDisconnect }) => ({ id, code, signal, exitedAfterDisconnect })),
      };
    });
    assert.deepStrictEqual(seen.rs, seen.node);
  });
}

test('workers whose event loops block for a while still serve what arrived meanwhile (rr)', { timeout: 30000 }, async (t) => {
  const seen = {};
  await eachImpl(async (impl) => {
    const c = run(t, 'listen-death.js', { impl, policy: 'rr' });
    await waitCount(c, (e) => e.event === 'wdone', 2);
    const { port } = opOf(c, 1, 0).addr;
    await control(c, 'sendall', { cmd: 'freeze', ms: 400 });
    await waitCount(c, (e) => e.event === 'frozen', 2);
    const bodies = await Promise.all(Array.from({ length: 6 }, () => get(port, { timeout: 2500 }).then((r) => r.body, (e) => `error:${e.message}`)));
    const after = await Promise.all(Array.from({ length: 4 }, () => get(port, { timeout: 2500 }).then((r) => r.body, (e) => `error:${e.message}`)));
    seen[impl] = { bodies: bodies.map((b) => /^[12]$/.test(b)), after: after.map((b) => /^[12]$/.test(b)) };
  });
  assert.deepStrictEqual(seen.node, { bodies: Array(6).fill(true), after: Array(4).fill(true) });
  assert.deepStrictEqual(seen.rs, seen.node);
});
