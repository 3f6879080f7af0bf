'use strict';
// Bad input to the metrics endpoint fails at once with Node's codes: a bad
// `metrics` value from setupPrimary(), the environment (at the first fork,
// before any worker starts) or the command; a port in use is the cluster's
// 'error' (thrown when nobody listens for it, as a server's listen error is).
const test = require('node:test');
const assert = require('node:assert');
const net = require('node:net');
const { spawnSync } = require('node:child_process');
const path = require('node:path');
const { startCluster, ROOT } = require('./helpers');
const { isAlive } = require('../scripts/lib/procs');
const { command, waitForLog } = require('./supervisor-helpers');
const { freePort } = require('./metrics-helpers');

const INDEX = path.join(ROOT, 'js', 'index.js');

// Each value given to setupPrimary({ metrics }) in a fresh primary: the
// error's code and message, or 'ok'.
function tryValues(values) {
  const script = `const cluster = require(${JSON.stringify(INDEX)});
    for (const v of ${JSON.stringify(values)}) {
      try { cluster.setupPrimary({ metrics: v }); console.log('ok'); }
      catch (e) { console.log(e.code + ' ' + e.message); }
    }`;
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 10000 });
  assert.strictEqual(r.status, 0, r.stderr);
  return r.stdout.trim().split('\n');
}

// Holds a port, as another process would.
async function occupied() {
  const server = net.createServer();
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return server;
}

test('setupPrimary({ metrics }) refuses a bad value with a Node-style error', { timeout: 20000 }, () => {
  const [bad, range, zero, type, v6, spaces] = tryValues(['abc', '99999', 0, true, '[nope]:9100', ' 9100']);
  assert.match(bad, /^ERR_INVALID_ARG_VALUE The property 'options.metrics' must be \[host:\]port .* Received 'abc'$/);
  assert.match(range, /^ERR_INVALID_ARG_VALUE .* Received '99999'$/);
  assert.match(zero, /^ERR_OUT_OF_RANGE The value of "options.metrics" is out of range. It must be >= 1 && <= 65535. Received 0$/);
  assert.match(type, /^ERR_INVALID_ARG_TYPE The "options.metrics" property must be of type string or number/);
  assert.match(v6, /^ERR_INVALID_ARG_VALUE/);
  assert.match(spaces, /^ERR_INVALID_ARG_VALUE/);
});

test('setupPrimary({ metrics }) takes a port, host:port and [v6]:port, and the primary still exits on its own', { timeout: 20000 }, async () => {
  const port = await freePort();
  assert.deepStrictEqual(tryValues([port, `localhost:${port}`, `[::1]:${port}`, `127.0.0.1:${port}`]), ['ok', 'ok', 'ok', 'ok']);
});

test('RS_CLUSTER_METRICS with a bad value: the first fork throws ERR_INVALID_ARG_VALUE, no worker starts', { timeout: 20000 }, async () => {
  const app = startCluster('metrics-app.js', { env: { RS_CLUSTER_METRICS: 'localhost' } });
  try {
    const { code } = await app.waitExit();
    assert.strictEqual(code, 1);
    assert.match(app.stderr, /The environment variable RS_CLUSTER_METRICS must be \[host:\]port .* Received 'localhost'/);
    assert.match(app.stderr, /code: 'ERR_INVALID_ARG_VALUE'/);
    assert.ok(!app.events.some((e) => e.event === 'fork'), JSON.stringify(app.events));
  } finally {
    await app.stop();
  }
});

test('a metrics port in use: the cluster emits EADDRINUSE and serves on; with no listener the primary throws it', { timeout: 30000 }, async () => {
  const holder = await occupied();
  const taken = holder.address().port;
  const handled = startCluster('metrics-app.js', { env: { METRICS: `${taken}`, ON_ERROR: '1' } });
  const thrown = startCluster('metrics-app.js', { env: { METRICS: `${taken}` } });
  try {
    const err = await handled.waitFor('error');
    assert.deepStrictEqual([err.code, err.syscall], ['EADDRINUSE', 'listen']);
    assert.match(err.message, new RegExp(`127\\.0\\.0\\.1:${taken}`));
    await handled.waitFor('ready');

    const { code } = await thrown.waitExit();
    assert.strictEqual(code, 1);
    assert.match(thrown.stderr, /EADDRINUSE/);
    // Its workers go with it, as node:cluster's do when their primary dies.
    const pids = thrown.events.filter((e) => e.event === 'fork').map((e) => e.pid);
    for (const deadline = Date.now() + 5000; pids.some(isAlive);) {
      assert.ok(Date.now() < deadline, 'workers outlived their primary');
      await new Promise((r) => setTimeout(r, 50));
    }
  } finally {
    holder.close();
    await Promise.all([handled.stop(), thrown.stop()]);
  }
});

test('the command: --metrics at a port in use stops the cluster with exit status 1', { timeout: 30000 }, async () => {
  const holder = await occupied();
  const h = command(['-w', '2', '--metrics', `127.0.0.1:${holder.address().port}`, 'supervisor-hello.js']);
  try {
    await waitForLog(h, /listen EADDRINUSE: address already in use/);
    assert.strictEqual((await h.waitExit()).code, 1);
  } finally {
    holder.close();
    await h.stop();
  }
});

test('a page file that cannot be read (out of fds) is a 503, and the endpoint goes on', { timeout: 10000 }, async (t) => {
  const fs = require('node:fs');
  const { get } = require('./helpers');
  const { serve } = require('../js/metrics-server');
  const none = () => null;
  const port = await freePort();
  const server = serve({ host: '127.0.0.1', port }, { stats: () => ({}) }, { health: none, ready: none }, assert.ifError, () => undefined);
  t.after(() => server.close());
  await new Promise((resolve) => server.once('listening', resolve));
  const read = fs.readFileSync;
  fs.readFileSync = () => { throw Object.assign(new Error('EMFILE: too many open files'), { code: 'EMFILE' }); };
  let failed;
  try {
    failed = await get(port, { path: '/status.css' });
  } finally {
    fs.readFileSync = read;
  }
  assert.deepStrictEqual([failed.status, failed.body], [503, 'EMFILE: too many open files\n']);
  assert.strictEqual((await get(port, { path: '/status.css' })).status, 200);
  assert.strictEqual((await get(port, { path: '/stats' })).status, 200);
});
