'use strict';
// The supervisor in an app's own primary: settings checked where they are
// given (setupPrimary, reload, RS_CLUSTER_* variables) and shown in
// cluster.settings; respawn with growing delays and a 'restart' event;
// cluster.disconnect() and reload honour drainTimeout; a busy keep-alive
// client does not hold an old worker; maxMemory replaces a bloated worker.
const test = require('node:test');
const assert = require('node:assert');
const http = require('node:http');
const { startCluster, get, nativeOnly } = require('./helpers');
const { waitGone } = require('../scripts/lib/procs');
const { command, waitForLog } = require('./supervisor-helpers');
const settings = require('../js/settings');

const listening = (h) => h.events.filter((e) => e.event === 'listening');

function thrown(fn) {
  try {
    fn();
  } catch (err) {
    return { name: err.name, code: err.code, message: err.message };
  }
  return null;
}

test('setupPrimary and reload refuse bad settings with Node-style errors, changing nothing', { timeout: 10000 },
     async () => {
       const cluster = require('../js/index.js');
       const before = { ...cluster.settings };
       assert.deepStrictEqual(thrown(() => cluster.setupPrimary({ respawn: 'yes' })), {
         name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE',
         message: 'The "options.respawn" property must be of type boolean. Received type string (\'yes\')',
       });
       assert.deepStrictEqual(thrown(() => cluster.setupPrimary({ drainTimeout: -1 })), {
         name: 'RangeError', code: 'ERR_OUT_OF_RANGE',
         message: 'The value of "options.drainTimeout" is out of range. It must be >= 0 && <= 2147483647. Received -1',
       });
       assert.strictEqual(thrown(() => cluster.setupPrimary({ hangTimeout: 1.5 })).message,
                          'The value of "options.hangTimeout" is out of range. It must be an integer. Received 1.5');
       assert.strictEqual(thrown(() => cluster.setupPrimary({ maxMemory: '100' })).code, 'ERR_INVALID_ARG_TYPE');
       assert.strictEqual(thrown(() => cluster.setupPrimary({ waitReady: 1 })).code, 'ERR_INVALID_ARG_TYPE');
       assert.deepStrictEqual(cluster.settings, before);

       await assert.rejects(cluster.reload(5), { code: 'ERR_INVALID_ARG_TYPE' });
       await assert.rejects(cluster.reload({ readyTimeout: -5 }), { code: 'ERR_OUT_OF_RANGE' });

       assert.deepStrictEqual(settings.fromEnv({ RS_CLUSTER_RESPAWN: '1', RS_CLUSTER_MAX_MEMORY: '512', OTHER: 'x' }),
                              { respawn: true, maxMemory: 512 });
       assert.deepStrictEqual(settings.fromEnv({ RS_CLUSTER_RESPAWN: '' }), {});
       assert.deepStrictEqual(thrown(() => settings.fromEnv({ RS_CLUSTER_HANG_TIMEOUT: '5s' })), {
         name: 'TypeError', code: 'ERR_INVALID_ARG_VALUE',
         message: 'The environment variable RS_CLUSTER_HANG_TIMEOUT must be a whole number of milliseconds ' +
           "from 0 to 2147483647. Received '5s'",
       });
       assert.strictEqual(thrown(() => settings.fromEnv({ RS_CLUSTER_RESPAWN: 'yes' })).code, 'ERR_INVALID_ARG_VALUE');
     });

test('settings come from the environment under the app\'s own, and are absent when nothing is set', { timeout: 30000 },
     async () => {
       const plain = startCluster('supervisor-primary.js', { env: { WORKERS: '0' } });
       const env = startCluster('supervisor-primary.js', {
         env: { WORKERS: '0', RS_CLUSTER_RESPAWN: '1', RS_CLUSTER_DRAIN_TIMEOUT: '1234', RS_CLUSTER_HANG_TIMEOUT: '0',
                SETTINGS: '{"drainTimeout":99}' },
       });
       const bad = startCluster('supervisor-primary.js', { env: { WORKERS: '0', RS_CLUSTER_RELOAD_SIGNAL: 'SIGNOPE' } });
       try {
         assert.deepStrictEqual((await plain.waitFor('primary')).settings, { silent: false });
         assert.deepStrictEqual((await env.waitFor('primary')).settings,
                                { silent: false, respawn: true, drainTimeout: 99, hangTimeout: 0 });
         assert.strictEqual((await bad.waitExit()).code, 1);
         assert.match(bad.stderr, /ERR_INVALID_ARG_VALUE.*The environment variable RS_CLUSTER_RELOAD_SIGNAL must be/);
       } finally {
         await Promise.all([plain.stop(), env.stop(), bad.stop()]);
       }
     });

test('respawn: a crashed worker is replaced after a growing delay, with a restart event', { timeout: 30000 },
     async () => {
       const h = startCluster('supervisor-primary.js', { env: { WORKERS: '1', RS_CLUSTER_RESPAWN: '1' } });
       try {
         for (let i = 1; i <= 3; i++) {
           await h.waitFor(() => listening(h).length === i, 10000);
           process.kill(listening(h)[i - 1].pid, 'SIGKILL');
           await h.waitFor(() => h.events.filter((e) => e.event === 'restart').length === i, 10000);
         }
         const restarts = h.events.filter((e) => e.event === 'restart');
         assert.deepStrictEqual(restarts.map((e) => [e.id, e.reason, e.previous]),
                                [[2, 'crash', 1], [3, 'crash', 2], [4, 'crash', 3]]);
         assert.deepStrictEqual(restarts.map((e) => e.delay), [250, 500, 1000]);
         await h.waitFor(() => listening(h).length === 4, 10000);
         assert.strictEqual((await get(listening(h)[3].port)).status, 200);
       } finally {
         await h.stop();
       }
     });

test('cluster.disconnect() with drainTimeout kills what is still running after it', { timeout: 30000 }, async () => {
  const h = startCluster('supervisor-primary.js', { env: { WORKERS: '1', SETTINGS: '{"drainTimeout":1000}' } });
  try {
    await h.waitFor('listening');
    const slow = get(listening(h)[0].port, { path: '/slow?ms=20000' }).catch((err) => err);
    await new Promise((r) => setTimeout(r, 300));
    const t0 = Date.now();
    process.kill(h.child.pid, 'SIGUSR1');
    const exit = await h.waitFor('exit', 10000);
    assert.deepStrictEqual([exit.code, exit.signal, exit.ead], [null, 'SIGKILL', true]);
    const took = Date.now() - t0;
    assert.ok(took >= 900 && took < 5000, `killed after ${took} ms`);
    assert.ok((await slow) instanceof Error);
    await h.waitFor('disconnected');
    // No respawn after a disconnect.
    assert.strictEqual(h.events.filter((e) => e.event === 'fork').length, 1);
  } finally {
    await h.stop();
  }
});

test('reload: a busy keep-alive client is told to reconnect, so the old worker leaves at once', { timeout: 30000, skip: nativeOnly('draining keep-alive connections in the worker') },
     async () => {
       const h = startCluster('supervisor-primary.js', { env: { WORKERS: '1' } });
       const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
       let running = true;
       const seen = [];
       const failures = [];
       try {
         await h.waitFor('listening');
         const { port, pid: old } = listening(h)[0];
         const client = (async () => {
           while (running) {
             await new Promise((resolve) => {
               http.get({ host: '127.0.0.1', port, agent, path: '/slow?ms=20' }, (res) => {
                 let body = '';
                 res.on('data', (c) => { body += c; });
                 res.on('end', () => { seen.push(body); resolve(); });
               }).on('error', (err) => { failures.push(err.code); resolve(); });
             });
           }
         })();
         await new Promise((r) => setTimeout(r, 300));
         const t0 = Date.now();
         process.kill(h.child.pid, 'SIGUSR2');
         await h.waitFor('reloaded', 15000);
         // Well within the 30 s drain timeout: the connection did not hold it.
         assert.ok(Date.now() - t0 < 5000, `reload took ${Date.now() - t0} ms`);
         assert.ok(await waitGone([old], 1000));
         await new Promise((r) => setTimeout(r, 300));
         running = false;
         await client;
         assert.deepStrictEqual(failures, []);
         assert.strictEqual(seen.at(-1), `${listening(h)[1].pid}`);
       } finally {
         running = false;
         agent.destroy();
         await h.stop();
       }
     });

test('waitReady: a replacement that never says ready fails the reload at readyTimeout', { timeout: 30000 },
     async () => {
       const h = startCluster('supervisor-primary.js', {
         env: { WORKERS: '1', RS_CLUSTER_WAIT_READY: '1', RELOAD: '{"readyTimeout":1500}' },
       });
       try {
         await h.waitFor('listening');
         process.kill(h.child.pid, 'SIGUSR2');
         const failed = await h.waitFor('reload-failed', 10000);
         assert.strictEqual(failed.message,
                            'worker 2, replacing worker 1, did not become ready within 1500 ms; the old worker keeps serving');
         assert.deepStrictEqual((await h.waitFor('exit')).signal, 'SIGKILL');
         assert.strictEqual((await get(listening(h)[0].port)).body, `${listening(h)[0].pid}`);
       } finally {
         await h.stop();
       }
     });

test('--max-memory: a worker over the limit is replaced gracefully, reason memory', { timeout: 40000 }, async () => {
  const h = command(['-w', '2', '--max-memory', '150', 'supervisor-app.js']);
  try {
    await h.waitFor(() => listening(h).length === 2, 15000);
    const { port } = listening(h)[0];
    const { body: bloated } = await get(port, { path: '/bloat?mb=200' });
    const [, newPid, oldId] = await waitForLog(h, /worker \d+ \(pid (\d+)\) replaces worker (\d+) \(memory/, 15000);
    assert.ok(await waitGone([Number(bloated)], 10000), `pid ${bloated} still runs`);
    await h.waitFor(() => listening(h).some((e) => e.pid === Number(newPid)), 10000);
    assert.ok(['1', '2'].includes(oldId));
    assert.strictEqual((await get(port)).status, 200);
  } finally {
    await h.stop();
  }
});

test('hangTimeout: a worker stuck in a busy loop gets no new connection for long and is replaced, reason hang',
     { timeout: 40000, skip: nativeOnly('hang detection') }, async (t) => {
       const h = startCluster('supervisor-primary.js', { env: { WORKERS: '2', SETTINGS: '{"hangTimeout":2000}' } });
       try {
         await h.waitFor(() => listening(h).length === 2, 15000);
         const { port } = listening(h)[0];
         // Requests every 50 ms, Connection: close, timed, while one worker spins.
         const latencies = [];
         let running = true;
         const loop = (async () => {
           while (running) {
             const t0 = Date.now();
             const r = await get(port, { headers: { connection: 'close' }, timeout: 5000 }).catch((e) => ({ error: e.code }));
             latencies.push(r.error ? r.error : Date.now() - t0);
             await new Promise((res) => setTimeout(res, 50));
           }
         })();
         await new Promise((res) => setTimeout(res, 300));
         const spinAt = Date.now();
         const spin = get(port, { path: '/spin?ms=60000', timeout: 10000 }).catch(() => null);
         const restart = await h.waitFor((e) => e.event === 'restart' && e.reason === 'hang', 10000);
         const replacedAfter = Date.now() - spinAt;
         await h.waitFor(() => listening(h).some((e) => e.pid === restart.pid), 10000);
         running = false;
         await loop;
         void spin;
         t.diagnostic(`replaced after ${replacedAfter} ms, lag ${restart.lag} ms, latencies ${latencies}`);
         assert.ok(restart.lag >= 2000, `lag ${restart.lag}`);
         assert.ok(replacedAfter < 3500, `replaced within about 3 s: ${replacedAfter} ms`);
         assert.ok(latencies.every((l) => typeof l === 'number'), `every request succeeds: ${latencies}`);
         assert.ok(Math.max(...latencies) < 1000, `none waits on the hung worker for 1 s: ${latencies}`);
       } finally {
         await h.stop();
       }
     });
