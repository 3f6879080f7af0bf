'use strict';
// socket.io over HTTP long-polling on 4 workers (examples/socket.io, no
// @socket.io/sticky): every poll and every message must reach the worker
// holding its session. Sticky routing keeps them there, by the client's
// address, by the X-Forwarded-For a proxy adds, or by socket.io's own sid;
// round-robin (node:cluster's only choice) breaks them.
const test = require('node:test');
const assert = require('node:assert');
const path = require('node:path');
const { execFile } = require('node:child_process');
const { startCluster, ROOT } = require('./helpers');

const SIO = path.join(ROOT, 'examples', 'socket.io');
const REGISTER = path.join(ROOT, 'js', 'register.js');
const CLIENTS = 40;
const MESSAGES = 5;

// The example server under rs-cluster with `env`; then the example's clients
// with `clientEnv`. Resolves with the clients' summary line.
async function run(t, env, clientEnv = {}) {
  const server = startCluster(path.join(SIO, 'server.js'), {
    execArgv: ['-r', REGISTER], cwd: SIO, env: { WORKERS: '4', PORT: '0', ...env },
  });
  t.after(() => server.stop());
  await server.waitFor((ev) => ev.event === 'listening' && server.events.filter((e) => e.event === 'listening').length >= 4, 15000);
  const { port } = server.events.find((e) => e.event === 'listening');
  const result = await new Promise((resolve, reject) => {
    const child = execFile(process.execPath, [path.join(SIO, 'clients.js'), `${port}`, `${CLIENTS}`, `${MESSAGES}`], {
      cwd: SIO, env: { ...process.env, ...clientEnv }, timeout: 15000, killSignal: 'SIGKILL',
    }, (err, stdout, stderr) => {
      if (err) reject(new Error(`clients: ${err.message}; ${stderr}`));
      else resolve(JSON.parse(stdout.trim().split('\n').pop()));
    });
    // Killed by pid if the test ends first.
    t.after(() => { if (child.exitCode === null) child.kill('SIGKILL'); });
  });
  t.diagnostic(JSON.stringify(result));
  return result;
}

function allAnswered(r) {
  assert.strictEqual(r.failedClients, 0, JSON.stringify(r.errors));
  assert.strictEqual(r.ok, CLIENTS * MESSAGES);
}

test('sticky by ip: every client keeps its session (each from its own address)', { timeout: 20000 }, async (t) => {
  const r = await run(t, { NODE_CLUSTER_SCHED_POLICY: 'sticky' }, { ADDRESSES: '1' });
  allAnswered(r);
  assert.ok(Object.keys(r.workers).length >= 2, `clients spread over workers: ${JSON.stringify(r.workers)}`);
});

test('behind one proxy, sticky by header:x-forwarded-for keeps sessions and spreads clients', { timeout: 20000 }, async (t) => {
  const r = await run(t, { NODE_CLUSTER_SCHED_POLICY: 'sticky', RS_CLUSTER_STICKY_KEY: 'header:x-forwarded-for' }, { PROXY: '1' });
  allAnswered(r);
  assert.ok(Object.keys(r.workers).length >= 2, `messages reached ${JSON.stringify(r.workers)}`);
});

test('sticky by query:sid: a new sid follows its handshake to the worker that made it', { timeout: 20000 }, async (t) => {
  allAnswered(await run(t, { NODE_CLUSTER_SCHED_POLICY: 'sticky', RS_CLUSTER_STICKY_KEY: 'query:sid' }, { PROXY: '1' }));
});

test('round-robin breaks long-polling sessions (node:cluster\'s behaviour, the contrast)', { timeout: 20000 }, async (t) => {
  const r = await run(t, { NODE_CLUSTER_SCHED_POLICY: 'rr' }, { ADDRESSES: '1' });
  assert.ok(r.failedClients > 0, `expected failures under round-robin: ${JSON.stringify(r)}`);
});
