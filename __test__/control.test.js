'use strict';
// The control socket (--control): `rs-cluster status|reload|stop <path>`
// reach a running primary, wait for the outcome and exit 0, or 1 with the
// reason; bad paths are a one-line reason and exit 2; a peer of another
// user is refused by its credentials.
const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { execFile } = require('node:child_process');
const { BIN, command, waitForLog } = require('./supervisor-helpers');
const { freePort } = require('../scripts/lib/net');

function tmpDir(t) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rs-cluster-control-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

// `rs-cluster <args>` as a client: { code, stdout, stderr }.
function client(args, options = {}) {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { timeout: 30000, ...options }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr });
    });
  });
}

async function primary(t, socket, workers = 2) {
  const port = await freePort();
  const c = command(['-w', `${workers}`, '--control', socket, 'systemd-app.js'], { env: { PORT: `${port}`, HOST: '127.0.0.1' } });
  t.after(() => c.stop());
  await c.waitFor((ev) => ev.event === 'listening' && c.events.filter((e) => e.event === 'listening').length >= workers);
  return c;
}

test('status, reload and stop through the control socket (0600)', { timeout: 60000 }, async (t) => {
  const socket = path.join(tmpDir(t), 'ctl.sock');
  const c = await primary(t, socket);
  assert.strictEqual(fs.statSync(socket).mode & 0o777, 0o600);
  const status = await client(['status', socket]);
  assert.strictEqual(status.code, 0, status.stderr);
  const stats = JSON.parse(status.stdout);
  assert.strictEqual(stats.primary.pid, c.child.pid);
  assert.strictEqual(stats.workers.length, 2);
  const before = stats.workers.map((w) => w.pid);
  const reload = await client(['reload', socket]);
  assert.strictEqual(reload.code, 0, reload.stderr);
  const after = JSON.parse((await client(['status', socket])).stdout).workers.map((w) => w.pid);
  assert.ok(after.every((p) => !before.includes(p)), `every pid replaced: ${before} -> ${after}`);
  const stop = await client(['stop', socket]);
  assert.strictEqual(stop.code, 0, stop.stderr);
  const exit = await c.waitExit(10000);
  assert.strictEqual(exit.code, 0, 'the stop waited for the primary to exit');
  assert.ok(!fs.existsSync(socket), 'the socket file went with it');
  const gone = await client(['status', socket]);
  assert.strictEqual(gone.code, 1);
  assert.match(gone.stderr, /^rs-cluster: status: cannot reach a primary at .*: ENOENT\n$/);
});

test('bad control paths: a missing directory, one in use, a stale file replaced', { timeout: 60000 }, async (t) => {
  const dir = tmpDir(t);
  const missing = command(['-w', '1', '--control', path.join(dir, 'no', 'such', 'ctl.sock'), 'systemd-app.js'], { env: { PORT: '0' } });
  t.after(() => missing.stop());
  assert.strictEqual((await missing.waitExit(10000)).code, 2);
  assert.match(missing.stderr, /control socket .*ctl\.sock: /);
  const socket = path.join(dir, 'ctl.sock');
  await primary(t, socket, 1);
  const second = command(['-w', '1', '--control', socket, 'systemd-app.js'], { env: { PORT: '0' } });
  t.after(() => second.stop());
  assert.strictEqual((await second.waitExit(10000)).code, 2);
  assert.match(second.stderr, /in use by a running primary/);
  // A file nobody answers on (a primary that was SIGKILLed) is replaced.
  const stale = path.join(dir, 'stale.sock');
  await new Promise((resolve) => {
    execFile(process.execPath, ['-e', `require('node:net').createServer().listen(${JSON.stringify(stale)}, () => process.kill(process.pid, 'SIGKILL'))`], resolve);
  });
  assert.ok(fs.existsSync(stale), 'a killed process leaves its socket file');
  await primary(t, stale, 1);
  assert.strictEqual((await client(['status', stale])).code, 0);
});

test('client usage: no path is exit 2; an unknown answer is exit 1', { timeout: 20000 }, async (t) => {
  const usage = await client(['reload']);
  assert.strictEqual(usage.code, 2);
  assert.match(usage.stderr, /usage: rs-cluster reload <path>/);
  const dir = tmpDir(t);
  const notOurs = path.join(dir, 'other.sock');
  const net = require('node:net');
  const other = net.createServer((s) => s.end('hello\n')).listen(notOurs);
  t.after(() => other.close());
  await new Promise((r) => other.once('listening', r));
  const r = await client(['status', notOurs]);
  assert.strictEqual(r.code, 1);
  assert.match(r.stderr, /not rs-cluster's control protocol/);
});

test('a peer of another user is refused by its credentials', {
  timeout: 30000,
  skip: (typeof process.getuid !== 'function' || process.getuid() !== 0) && 'needs root to connect as another user',
}, async (t) => {
  const socket = path.join(tmpDir(t), 'ctl.sock');
  fs.chmodSync(path.dirname(socket), 0o755);
  await primary(t, socket, 1);
  fs.chmodSync(socket, 0o666); // the mode no longer keeps anyone out: the credentials must
  const r = await client(['status', socket], { uid: 65534, gid: 65534 });
  assert.strictEqual(r.code, 1);
  assert.match(r.stderr, /refused: user 65534 is not this primary's/);
});
