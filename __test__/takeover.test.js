'use strict';
// Replacing the primary itself: `rs-cluster --takeover <path>` takes the
// listening sockets of the primary at control socket <path>, starts its own
// workers, then stops the old one (it drains and exits 0): no listening
// socket is ever closed, so no connection is refused. SIGUSR2 does the same
// from the command line on disk.
const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const http = require('node:http');
const os = require('node:os');
const path = require('node:path');
const { execFile } = require('node:child_process');
const { get } = require('./helpers');
const { BIN, command, waitForLog } = require('./supervisor-helpers');
const { freePort } = require('../scripts/lib/net');

function tmpDir(t) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rs-cluster-takeover-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function status(socket) {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, 'status', socket], { timeout: 10000 }, (err, stdout) => resolve(err ? null : JSON.parse(stdout)));
  });
}

async function listening(c, n) {
  await c.waitFor((ev) => ev.event === 'listening' && c.events.filter((e) => e.event === 'listening').length >= n);
}

// A primary with 2 workers and a control socket, serving on a free port.
async function running(t) {
  const socket = path.join(tmpDir(t), 'ctl.sock');
  const port = await freePort();
  const env = { PORT: `${port}`, HOST: '127.0.0.1' };
  const old = command(['-w', '2', '--control', socket, 'systemd-app.js'], { env });
  t.after(() => old.stop());
  await listening(old, 2);
  return { socket, port, env, old };
}

// Clients at full speed until `stop()`: new connections, and one keep-alive client.
function load(port) {
  let stopped = false;
  const counts = { served: 0, failed: 0, errors: new Set() };
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const loop = async (opts) => {
    while (!stopped) {
      try {
        await get(port, opts);
        counts.served++;
      } catch (err) {
        counts.failed++;
        counts.errors.add(err.code ?? err.message);
      }
    }
  };
  const clients = [...Array.from({ length: 4 }, () => loop({ headers: { connection: 'close' } })), loop({ agent })];
  return {
    counts,
    async stop() {
      stopped = true;
      await Promise.all(clients);
      agent.destroy();
    },
  };
}

test('--takeover under load: no failed request, every pid replaced, then SIGUSR2 does it again', { timeout: 90000 }, async (t) => {
  const { socket, port, env, old } = await running(t);
  const oldWorkers = old.events.filter((e) => e.event === 'listening').map((e) => e.pid);
  const l = load(port);
  await new Promise((r) => setTimeout(r, 500));
  const next = command(['-w', '2', '--takeover', socket, 'systemd-app.js'], { env });
  let third = null;
  t.after(async () => {
    await next.stop();
    if (third !== null) {
      for (const pid of [third.primary.pid, ...third.workers.map((w) => w.pid)]) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // Gone already.
        }
      }
    }
  });
  const exit = await old.waitExit(30000);
  assert.strictEqual(exit.code, 0, `the old primary drained and exited: ${old.stderr}`);
  await waitForLog(next, /took over from the primary at/);
  await new Promise((r) => setTimeout(r, 300));
  const after = await status(socket);
  assert.strictEqual(after.primary.pid, next.child.pid, 'the control path answers from the new primary');
  const newWorkers = after.workers.map((w) => w.pid);
  assert.ok(newWorkers.every((p) => !oldWorkers.includes(p)));

  // SIGUSR2: the same command line, as --takeover, from disk.
  process.kill(next.child.pid, 'SIGUSR2');
  const nextExit = await next.waitExit(30000);
  assert.strictEqual(nextExit.code, 0, next.stderr);
  third = await status(socket);
  assert.ok(third !== null && third.primary.pid !== next.child.pid, 'a third primary answers');
  await new Promise((r) => setTimeout(r, 300));
  await l.stop();
  t.diagnostic(`served ${l.counts.served}, failed ${l.counts.failed} ${[...l.counts.errors]}`);
  assert.strictEqual(l.counts.failed, 0, [...l.counts.errors].join(','));
  assert.ok(l.counts.served > 100);
  const served = new Set();
  for (let i = 0; i < 10; i++) served.add(+(await get(port, { headers: { connection: 'close' } })).body);
  assert.ok([...served].every((p) => third.workers.some((w) => w.pid === p)), 'only the third primary\'s workers serve');
});

test('a control path set by RS_CLUSTER_CONTROL: the new primary takes it only once the old one lets go', { timeout: 60000 }, async (t) => {
  const socket = path.join(tmpDir(t), 'ctl.sock');
  const env = { PORT: `${await freePort()}`, HOST: '127.0.0.1', RS_CLUSTER_CONTROL: socket };
  const old = command(['-w', '1', 'systemd-app.js'], { env });
  t.after(() => old.stop());
  await listening(old, 1);
  const next = command(['-w', '1', '--takeover', socket, 'systemd-app.js'], { env });
  t.after(() => next.stop());
  assert.strictEqual((await old.waitExit(30000)).code, 0, old.stderr);
  await waitForLog(next, /took over from the primary at/);
  await new Promise((r) => setTimeout(r, 300));
  const after = await status(socket);
  assert.strictEqual(after?.primary.pid, next.child.pid, next.stderr);
});

test('--takeover to a path where nobody answers: a one-line reason, exit 2', { timeout: 20000 }, async (t) => {
  const c = command(['-w', '1', '--takeover', path.join(tmpDir(t), 'nobody.sock'), 'systemd-app.js'], { env: { PORT: '0' } });
  try {
    assert.strictEqual((await c.waitExit(10000)).code, 2);
    assert.match(c.stderr, /^rs-cluster: cannot reach a primary at .*nobody\.sock: ENOENT$/m);
    assert.ok(!c.events.some((e) => e.event === 'listening'), 'nothing started');
  } finally {
    await c.stop();
  }
});

test('a new primary that fails before it is ready: the old one keeps serving', { timeout: 40000 }, async (t) => {
  const dir = tmpDir(t);
  const socket = path.join(dir, 'ctl.sock');
  const port = await freePort();
  const old = command(['-w', '1', '--control', socket, 'systemd-app.js'], { env: { PORT: `${port}`, HOST: '127.0.0.1' } });
  t.after(() => old.stop());
  await listening(old, 1);
  // Its workers throw at start, and it does not respawn them: it gives up.
  const next = command(['-w', '1', '--no-respawn', '--takeover', socket, 'supervisor-app.js'], { env: { THROW_IF: __filename } });
  t.after(() => next.stop());
  assert.strictEqual((await next.waitExit(20000)).code, 1);
  assert.strictEqual((await get(port)).status, 200, 'the old primary still serves');
  assert.strictEqual((await status(socket)).primary.pid, old.child.pid);
});

// Node 22 as the test matrix caches it (`npm run test:matrix`), if it is here.
const NODE22 = require('../scripts/lib/nodes').cachedNode(22);
const OTHER_NODE = NODE22 !== null && !process.version.startsWith('v22.') ? NODE22 : undefined;

test('a hand-over to another Node version: the workers report the new process.version', {
  timeout: 60000,
  skip: OTHER_NODE === undefined && 'no other Node here (npm run test:matrix caches Node 22)',
}, async (t) => {
  const { startCluster } = require('./helpers');
  const { FIXTURES } = require('./supervisor-helpers');
  const { socket, port, env, old } = await running(t);
  const l = load(port);
  const next = startCluster(/** @type {string} */ (OTHER_NODE), {
    program: true, args: [BIN, '-w', '2', '--takeover', socket, 'systemd-app.js'], cwd: FIXTURES, env,
  });
  t.after(() => next.stop());
  assert.strictEqual((await old.waitExit(30000)).code, 0);
  await l.stop();
  assert.strictEqual(l.counts.failed, 0, [...l.counts.errors].join(','));
  const s = await status(socket);
  assert.strictEqual(s.primary.pid, next.child.pid);
  const versions = next.events.filter((e) => e.event === 'listening').map((e) => e.version);
  assert.deepStrictEqual(versions.map((v) => v.split('.')[0]), ['v22', 'v22'], 'the new workers run the other Node');
  assert.ok(old.events.filter((e) => e.event === 'listening').every((e) => e.version === process.version));
});

test('--takeover to a socket of another control protocol: a one-line reason, exit 2', { timeout: 20000 }, async (t) => {
  const net = require('node:net');
  const socket = path.join(tmpDir(t), 'other.sock');
  const other = net.createServer((s) => s.end(`${JSON.stringify({ ok: true, protocol: 99, sockets: 0 })}\n`)).listen(socket);
  t.after(() => other.close());
  await new Promise((r) => other.once('listening', r));
  const c = command(['-w', '1', '--takeover', socket, 'systemd-app.js'], { env: { PORT: '0' } });
  try {
    assert.strictEqual((await c.waitExit(10000)).code, 2);
    assert.match(c.stderr, /^rs-cluster: the primary at .*other\.sock cannot hand over: control protocol 99, this rs-cluster speaks 1$/m);
  } finally {
    await c.stop();
  }
});

test('the new primary SIGKILLed at each step of a hand-over: the old one keeps serving, nothing is left', { timeout: 90000 }, async (t) => {
  const { socket, port, env, old } = await running(t);
  const { descendants } = require('../scripts/lib/procs');
  // Steps before the old one is told to hand off: right after the sockets
  // came, while the workers start, and with them listening. The new one
  // waits for a 'ready' this app never sends (--wait-ready), so however
  // fast it starts, the hand-off never begins.
  const steps = [['sockets taken', 30], ['workers starting', 150], ['workers listening', 600]];
  for (const [step, afterMs] of steps) {
    const l = load(port);
    const next = command(['-w', '2', '--wait-ready', '--takeover', socket, 'systemd-app.js'], { env });
    await new Promise((r) => setTimeout(r, afterMs));
    const pids = [next.child.pid, ...descendants(next.child.pid)];
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // Gone already.
      }
    }
    await next.waitExit(10000);
    await new Promise((r) => setTimeout(r, 300));
    await l.stop();
    await next.stop();
    // Only requests the killed workers had taken may fail.
    t.diagnostic(`${step}: served ${l.counts.served}, failed ${l.counts.failed}`);
    assert.ok(l.counts.failed <= 5, `${step}: ${l.counts.failed} failed (${[...l.counts.errors]})`);
    assert.strictEqual((await get(port, { headers: { connection: 'close' } })).status, 200, `${step}: the old primary serves`);
    assert.strictEqual((await status(socket))?.primary.pid, old.child.pid, `${step}: the old primary answers its control path`);
    // Gone, or a zombie its new parent has yet to reap; workers it forked
    // meanwhile follow their primary within a second.
    const gone = (p) => {
      try {
        return /^\d+ \(.*\) Z /.test(fs.readFileSync(`/proc/${p}/stat`, 'utf8'));
      } catch {
        return true;
      }
    };
    for (let i = 0; i < 30 && !pids.every(gone); i++) await new Promise((r) => setTimeout(r, 100));
    assert.ok(pids.every(gone), `${step}: no process of the new primary is left`);
  }
});
