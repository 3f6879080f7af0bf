'use strict';
// Rolling reload: under load (clients opening a new connection per request
// at full speed), every worker is replaced each time and requests keep being
// served; a replacement that cannot start makes reload() reject and the old
// workers keep serving; reloads asked for during one run after it, once.
const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { startCluster, get, FALLBACK } = require('./helpers');
const { isAlive, waitGone } = require('../scripts/lib/procs');
const { command, waitForLog } = require('./supervisor-helpers');
const { churn } = require('../scripts/lib/net');

const listeningPids = (h) => h.events.filter((e) => e.event === 'listening').map((e) => e.pid);

async function waitListening(h, count) {
  await h.waitFor(() => listeningPids(h).length >= count, 15000);
}

// supervisor-primary.js: also until the primary knows (the workers' own
// output can come before its 'listening' event).
async function waitServing(h, count) {
  await waitListening(h, count);
  await h.waitFor(() => h.events.filter((e) => e.event === 'cluster-listening').length >= count, 15000);
}

test('SIGHUP under load: 3 reloads of 2 workers replace every pid; failed requests counted', { timeout: 90000 },
     async (t) => {
       const h = command(['-w', '2', 'supervisor-app.js']);
       let clients = null;
       try {
         await waitListening(h, 2);
         const { port } = h.events.find((e) => e.event === 'listening');
         clients = churn(port, 8);
         await new Promise((r) => setTimeout(r, 1000));
         for (let i = 1; i <= 3; i++) {
           const before = listeningPids(h).slice(-2);
           h.child.kill('SIGHUP');
           await waitForLog(h, new RegExp(`(reloaded in \\d+ ms[^]*){${i}}`), 30000);
           await waitListening(h, 2 * (i + 1));
           const after = listeningPids(h).slice(-2);
           assert.ok(after.every((pid) => !before.includes(pid)), `reload ${i}: ${before} -> ${after}`);
           assert.ok(await waitGone(before, 2000), `reload ${i}: old workers ${before.filter(isAlive)} still run`);
           await new Promise((r) => setTimeout(r, 700));
         }
         const result = await clients.stop();
         clients = null;
         const errors = JSON.stringify([...result.errors]);
         t.diagnostic(`${result.ok} requests served, ${result.failures} failed ${errors}`);
         assert.ok(result.ok > 300, `only ${result.ok} requests served`);
         // The newest workers served; old ones are gone.
         const current = listeningPids(h).slice(-2).map(String);
         const { body } = await get(port);
         assert.ok(current.includes(body), `${body} is not one of ${current}`);
         // node:cluster's round-robin drops what it handed a worker that
         // leaves (fallback-package.test.js holds the fallback to node:cluster's count).
         if (!FALLBACK) assert.strictEqual(result.failures, 0, errors);
       } finally {
         if (clients !== null) await clients.stop();
         await h.stop();
       }
     });

test('a replacement that throws at start: reload() rejects, naming it, and the old workers keep serving',
     { timeout: 60000 }, async () => {
       const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rs-cluster-'));
       const marker = path.join(dir, 'fail');
       const h = startCluster('supervisor-primary.js', {
         env: { THROW_IF: marker, SETTINGS: JSON.stringify({ respawn: true }), RELOAD: '{"readyTimeout":5000}' },
       });
       try {
         await waitServing(h, 2);
         const { port } = h.events.find((e) => e.event === 'listening');
         const old = listeningPids(h);
         fs.writeFileSync(marker, '');
         process.kill(h.child.pid, 'SIGUSR2');
         const failed = await h.waitFor((e) => e.event === 'reload-failed' || e.event === 'reloaded', 20000);
         assert.strictEqual(failed.event, 'reload-failed');
         assert.strictEqual(failed.code, 'ERR_RS_CLUSTER_RELOAD');
         assert.strictEqual(failed.worker, 3, JSON.stringify(h.events));
         assert.strictEqual(failed.previous, 1);
         assert.match(failed.message, /^worker 3, replacing worker 1, exited with code 1 before it was ready/);
         // The failed replacement is not respawned (that would come 250 ms
         // after its exit): only worker 3 was forked.
         await new Promise((r) => setTimeout(r, 800));
         assert.deepStrictEqual(h.events.filter((e) => e.event === 'fork').map((e) => e.id), [1, 2, 3]);
         const served = new Set();
         for (let i = 0; i < 10; i++) served.add(Number((await get(port)).body));
         assert.deepStrictEqual([...served].sort(), [...old].sort());

         // Fixed: the next reload goes through.
         fs.rmSync(marker);
         process.kill(h.child.pid, 'SIGUSR2');
         const done = await h.waitFor((e) => e.event === 'reloaded', 20000);
         assert.deepStrictEqual(done.ids, [4, 5]);
         const restarts = h.events.filter((e) => e.event === 'restart');
         assert.deepStrictEqual(restarts.map((e) => [e.id, e.reason, e.previous]),
                                [[3, 'reload', 1], [4, 'reload', 1], [5, 'reload', 2]]);
       } finally {
         fs.rmSync(dir, { recursive: true, force: true });
         await h.stop();
       }
     });

test('reloads asked for during one run once, after it', { timeout: 60000 }, async () => {
  const h = startCluster('supervisor-primary.js', { env: { WORKERS: '1', RELOAD_CALLS: '3' } });
  try {
    await waitServing(h, 1);
    process.kill(h.child.pid, 'SIGUSR2');
    await h.waitFor((e) => h.events.filter((x) => x.event === 'reloaded').length === 3, 20000);
    // Worker 1 replaced by 2 in the first reload, 2 by 3 in the one the
    // other two calls shared.
    assert.deepStrictEqual(h.events.filter((e) => e.event === 'reloaded').map((e) => e.ids), [[2], [3], [3]]);
    assert.deepStrictEqual(h.events.filter((e) => e.event === 'fork').map((e) => e.id), [1, 2, 3]);
  } finally {
    await h.stop();
  }
});
