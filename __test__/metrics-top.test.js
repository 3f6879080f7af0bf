'use strict';
// `rs-cluster top` in a real terminal: a tmux pane of 80x24 (its own tmux
// server, killed at the end), where top shows the cluster on the alternate
// screen with the cursor hidden, and `q` gives the terminal back as it was
// (main screen, cursor shown, not raw). And top at a closed port or with a
// bad argument.
const test = require('node:test');
const assert = require('node:assert');
const path = require('node:path');
const { spawnSync, execFileSync } = require('node:child_process');
const { ROOT, get, nativeOnly } = require('./helpers');
const { isAlive } = require('../scripts/lib/procs');
const { sleep } = require('./fixtures/faults-lib');
const { startMetricsApp, freePort } = require('./metrics-helpers');

const BIN = path.join(ROOT, 'bin', 'rs-cluster.js');
const HAS_TMUX = spawnSync('tmux', ['-V'], { stdio: 'ignore' }).status === 0;

function top(args) {
  return spawnSync(process.execPath, [BIN, 'top', ...args], { encoding: 'utf8', timeout: 10000 });
}

test('rs-cluster top in an 80x24 terminal: live rows, then q restores the terminal', { skip: (!HAS_TMUX && 'tmux is not installed') || nativeOnly('the connection counters it shows'), timeout: 40000 }, async () => {
  const { app, port, metricsPort } = await startMetricsApp();
  const socket = `rs-cluster-top-${process.pid}`;
  const tmux = (...args) => execFileSync('tmux', ['-L', socket, '-f', '/dev/null', ...args], { encoding: 'utf8' });
  const screen = () => tmux('capture-pane', '-p', '-t', 'top');
  const flags = () => tmux('display', '-p', '-t', 'top', '#{alternate_on} #{cursor_flag}').trim();
  // After top: its exit status and the terminal's mode, then a marker.
  const shell = `'${process.execPath}' '${BIN}' top ${metricsPort}; echo "top exited $?";` +
    ' stty -a | tr " ;" "\\n\\n" | grep -x -e -icanon -e icanon -e -echo -e echo | tr "\\n" " "; echo; exec sleep 60';
  let panePid = null;
  try {
    for (let i = 0; i < 30; i++) await get(port);
    tmux('new-session', '-d', '-s', 'top', '-x', '80', '-y', '24', shell);
    panePid = Number(tmux('display', '-p', '-t', 'top', '#{pane_pid}'));
    let text = '';
    for (const deadline = Date.now() + 10000; !/ACC\/S/.test(text); await sleep(100)) {
      assert.ok(Date.now() < deadline, `no table on screen:\n${text}`);
      text = screen();
    }
    await sleep(1500); // a refresh, so the rates are there
    text = screen();
    const lines = text.split('\n');
    assert.match(lines[0], new RegExp(`^rs-cluster top  127\\.0\\.0\\.1:${metricsPort}  primary \\d+ up `));
    assert.match(text, /workers 2 {2}active 0 {2}accepted 30 \(0\/s\)/);
    const rows = lines.filter((l) => /^ +\d+ +\d+ listening /.test(l));
    assert.strictEqual(rows.length, 2, text);
    assert.match(text, new RegExp(`127\\.0\\.0\\.1:${port} +rr +0 +\\d+ +30`));
    assert.ok(lines.every((l) => l.length <= 80), 'fits 80 columns');
    assert.strictEqual(flags(), '1 0', 'alternate screen on, cursor hidden');

    tmux('send-keys', '-t', 'top', 'q');
    for (const deadline = Date.now() + 5000; !/top exited/.test(text); await sleep(100)) {
      assert.ok(Date.now() < deadline, `top did not quit:\n${text}`);
      text = screen();
    }
    await sleep(200);
    text = screen();
    assert.match(text, /top exited 0\n(icanon echo|echo icanon) *\n/, 'raw mode off');
    assert.doesNotMatch(text, /ACC\/S/, 'its screen is gone');
    assert.strictEqual(flags(), '0 1', 'main screen, cursor shown');
  } finally {
    try {
      tmux('kill-server');
    } catch {
      // Already gone.
    }
    if (panePid !== null && isAlive(panePid)) process.kill(panePid, 'SIGKILL');
    await app.stop();
  }
});

test('rs-cluster top: nothing at the address is one line and exit 1; a bad argument is usage and exit 2', { timeout: 20000 }, async () => {
  const port = await freePort();
  const closed = top([`${port}`]);
  assert.strictEqual(closed.status, 1);
  assert.strictEqual(closed.stderr, `rs-cluster top: nothing answers at 127.0.0.1:${port} (ECONNREFUSED)\n`);
  for (const args of [[], ['nine'], ['1', '2'], ['127.0.0.1:70000']]) {
    const r = top(args);
    assert.strictEqual(r.status, 2, `${args}: ${r.stderr}`);
    assert.match(r.stderr, /\nusage: rs-cluster top <\[host:\]port>/);
  }
});

test('rs-cluster top into a pipe prints one frame and exits 0', { timeout: 20000 }, async () => {
  const { app, metricsPort } = await startMetricsApp();
  try {
    const r = top([`127.0.0.1:${metricsPort}`]);
    assert.strictEqual(r.status, 0, r.stderr);
    assert.doesNotMatch(r.stdout, /\x1b/);
    assert.strictEqual(r.stdout.split('\n').filter((l) => / listening /.test(l)).length, 2, r.stdout);
  } finally {
    await app.stop();
  }
});

test('addresses are written one way: host:port, [v6]:port, a unix path, * for every interface', () => {
  const { formatAddress } = require('../js/address');
  assert.deepStrictEqual([
    formatAddress({ address: '127.0.0.1', port: 80, addressType: 4 }),
    formatAddress({ address: '::1', port: 80, addressType: 6 }),
    formatAddress({ address: '::', port: 80 }),
    formatAddress({ address: null, port: 80, addressType: 4 }),
    formatAddress({ address: '/tmp/app.sock', port: undefined, addressType: -1 }),
    formatAddress('/tmp/app.sock'),
    formatAddress({ address: 'localhost', port: 9100 }),
  ], ['127.0.0.1:80', '[::1]:80', '[::]:80', '*:80', '/tmp/app.sock', '/tmp/app.sock', 'localhost:9100']);
});
