'use strict';
// The command under a service manager, without systemd itself: sockets
// handed over at start (LISTEN_FDS) serve the app's unchanged listen(PORT),
// and the manager hears READY, RELOADING/READY, STOPPING, STATUS and
// WATCHDOG on NOTIFY_SOCKET. systemd-socket-activate (Debian's systemd
// package) is used too where it is installed.
const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { spawn, spawnSync } = require('node:child_process');
const { startCluster, get } = require('./helpers');
const { BIN, FIXTURES, command, waitForLog } = require('./supervisor-helpers');
const { freePort } = require('../scripts/lib/net');

const HAS_PYTHON = spawnSync('python3', ['--version'], { stdio: 'ignore' }).status === 0;
const ACTIVATE = ['/usr/bin/systemd-socket-activate', '/bin/systemd-socket-activate'].find((f) => fs.existsSync(f));

// The command as a service manager starts it: the listening socket of
// `server` as fd 3, LISTEN_PID the command's own pid (sh execs it).
function activated(server, workers, port, names = '') {
  const fd = /** @type {any} */ (server)._handle.fd;
  return startCluster('/bin/sh', {
    args: ['-c', `LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=${names} exec "$0" "$@"`, process.execPath, BIN, '-w', `${workers}`, 'systemd-app.js'],
    cwd: FIXTURES,
    env: { PORT: `${port}`, HOST: '127.0.0.1' },
    stdio: ['ignore', 'pipe', 'pipe', fd],
    program: true,
  });
}

async function servedBy(port, n) {
  const pids = new Set();
  for (let i = 0; i < n; i++) pids.add((await get(port, { headers: { connection: 'close' } })).body);
  return pids;
}

test('LISTEN_FDS: the app\'s listen(PORT) serves on the inherited socket, in every worker', { timeout: 30000 }, async (t) => {
  const inherited = net.createServer();
  await new Promise((r) => inherited.listen(0, '127.0.0.1', r));
  const port = inherited.address().port;
  const c = activated(inherited, 2, port, 'web');
  t.after(() => c.stop());
  // The command has its copy; this process must not accept on it.
  await new Promise((r) => setTimeout(r, 200));
  inherited.close();
  await c.waitFor((ev) => ev.event === 'listening' && c.events.filter((e) => e.event === 'listening').length >= 2);
  assert.deepStrictEqual(c.events.filter((e) => e.event === 'listening').map((e) => e.port), [port, port]);
  assert.strictEqual((await servedBy(port, 20)).size, 2, 'both workers serve');
  assert.doesNotMatch(c.stderr, /EADDRINUSE|unused|used by no server/, 'bound nothing itself; the socket was claimed');
});

test('an inherited socket nobody listens on is reported once', { timeout: 30000 }, async (t) => {
  const inherited = net.createServer();
  await new Promise((r) => inherited.listen(0, '127.0.0.1', r));
  const c = activated(inherited, 1, await freePort());
  t.after(() => c.stop());
  inherited.close();
  await c.waitFor('listening');
  await waitForLog(c, /RS_CLUSTER_UNCLAIMED_SOCKET/);
  assert.strictEqual(c.stderr.match(/used by no server/g).length, 1, c.stderr);
});

test('LISTEN_PID naming another process: a one-line reason, exit 2', { timeout: 20000 }, async () => {
  const c = command(['-w', '1', 'systemd-app.js'], { env: { LISTEN_FDS: '1', LISTEN_PID: '1' } });
  try {
    const exit = await c.waitExit(10000);
    assert.strictEqual(exit.code, 2);
    assert.match(c.stderr, /^rs-cluster: LISTEN_PID \(1\) names another process/m);
  } finally {
    await c.stop();
  }
});

test('systemd-socket-activate -l PORT runs the command; the app serves on the inherited socket',
  { timeout: 30000, skip: ACTIVATE === undefined && 'systemd-socket-activate is not installed (Debian package systemd)' }, async (t) => {
    const port = await freePort();
    const c = startCluster(/** @type {string} */ (ACTIVATE), {
      // It passes on only the variables named with -E.
      args: ['-l', `127.0.0.1:${port}`, '-E', `PORT=${port}`, '-E', 'HOST=127.0.0.1', process.execPath, BIN, '-w', '2', 'systemd-app.js'],
      cwd: FIXTURES,
      program: true,
    });
    t.after(() => c.stop());
    await waitForLog(c, /Listening on/);
    // It starts the command at the first connection, which waits in the backlog.
    const first = await get(port, { timeout: 10000 });
    assert.strictEqual(first.status, 200);
    await c.waitFor((ev) => ev.event === 'listening' && c.events.filter((e) => e.event === 'listening').length >= 2);
    assert.strictEqual((await servedBy(port, 20)).size, 2);
  });

test('NOTIFY_SOCKET: READY, WATCHDOG at the asked rate, RELOADING/READY around SIGHUP, STOPPING on SIGTERM',
  { timeout: 60000, skip: !HAS_PYTHON && 'python3 is needed to receive unix datagrams' }, async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rs-cluster-notify-'));
    const socket = path.join(dir, 'notify');
    // A unix datagram receiver (Node's dgram has none): one JSON line per message.
    const rx = spawn('python3', ['-u', '-c', `
import socket, sys, json
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print(json.dumps({"bound": True}), flush=True)
while True:
    print(json.dumps(s.recv(4096).decode()), flush=True)
`, socket], { stdio: ['ignore', 'pipe', 'inherit'] });
    t.after(() => {
      rx.kill('SIGKILL');
      fs.rmSync(dir, { recursive: true, force: true });
    });
    const got = [];
    let buf = '';
    rx.stdout.setEncoding('utf8');
    rx.stdout.on('data', (d) => {
      buf += d;
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        got.push(JSON.parse(buf.slice(0, nl)));
        buf = buf.slice(nl + 1);
      }
    });
    const until = async (pred, what, ms = 15000) => {
      const t0 = Date.now();
      while (!pred()) {
        if (Date.now() - t0 > ms) throw new Error(`no ${what} within ${ms} ms: ${JSON.stringify(got)}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    await until(() => got.length > 0, 'receiver');
    const messages = () => got.filter((m) => typeof m === 'string');
    const port = await freePort();
    const control = path.join(dir, 'ctl.sock');
    const c = command(['-w', '2', '--control', control, 'systemd-app.js'], {
      env: { PORT: `${port}`, HOST: '127.0.0.1', NOTIFY_SOCKET: socket, WATCHDOG_USEC: '200000' },
    });
    t.after(() => c.stop());
    await until(() => messages().some((m) => m.split('\n').includes('READY=1')), 'READY=1');
    const ready = messages().find((m) => m.includes('READY=1'));
    assert.match(ready, /STATUS=2 worker\(s\) listening, policy rr/);
    // WATCHDOG_USEC 200 ms: a WATCHDOG=1 every 100 ms.
    const before = messages().filter((m) => m.includes('WATCHDOG=1')).length;
    await new Promise((r) => setTimeout(r, 1000));
    const watchdogs = messages().filter((m) => m.includes('WATCHDOG=1')).length - before;
    assert.ok(watchdogs >= 6 && watchdogs <= 12, `${watchdogs} WATCHDOG=1 in 1 s`);
    process.kill(c.child.pid, 'SIGHUP');
    await waitForLog(c, /reloaded in/, 20000);
    const all = messages();
    const reloading = all.findIndex((m) => m.startsWith('RELOADING=1'));
    assert.ok(reloading >= 0, 'RELOADING=1');
    assert.match(all[reloading], /^RELOADING=1\nMONOTONIC_USEC=\d+$/);
    await until(() => messages().slice(reloading + 1).some((m) => m.split('\n').includes('READY=1')), 'READY=1 after the reload');
    // A hand-over: the new primary tells the manager it is the main process
    // now, the old one that it stops.
    const next = command(['-w', '1', '--takeover', control, 'systemd-app.js'], {
      env: { PORT: `${port}`, HOST: '127.0.0.1', NOTIFY_SOCKET: socket },
    });
    t.after(() => next.stop());
    await until(() => messages().some((m) => m.split('\n').includes(`MAINPID=${next.child.pid}`)), 'MAINPID of the new primary');
    await until(() => messages().includes('STOPPING=1'), 'STOPPING=1');
    await c.waitExit(10000);
    assert.ok(!/NOTIFY_SOCKET|LISTEN_/.test(c.stderr));
    process.kill(next.child.pid, 'SIGTERM');
    await next.waitExit(10000);
  });

test('SIGUSR2 (a hand-over request) is refused in one line; the command keeps serving', { timeout: 30000 }, async (t) => {
  const port = await freePort();
  const c = command(['-w', '1', 'systemd-app.js'], { env: { PORT: `${port}`, HOST: '127.0.0.1' } });
  t.after(() => c.stop());
  await c.waitFor('listening');
  process.kill(c.child.pid, 'SIGUSR2');
  await waitForLog(c, /SIGUSR2 .* ignored, still serving/);
  assert.strictEqual((await get(port)).status, 200);
  assert.strictEqual(c.child.exitCode, null);
});

test('an app\'s own primary keeps LISTEN_FDS: only the command takes systemd\'s sockets', { timeout: 20000 }, async (t) => {
  const inherited = net.createServer();
  await new Promise((r) => inherited.listen(0, '127.0.0.1', r));
  const fd = /** @type {any} */ (inherited)._handle.fd;
  const c = startCluster('/bin/sh', {
    args: ['-c', 'LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" "$@"', process.execPath, path.join(FIXTURES, 'systemd-primary.js')],
    stdio: ['ignore', 'pipe', 'pipe', fd],
    program: true,
  });
  t.after(() => c.stop());
  inherited.close();
  const ev = await c.waitFor('env');
  assert.strictEqual(ev.fds, '1', 'the variables are the app\'s to read');
});
