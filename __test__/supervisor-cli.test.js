'use strict';
// The rs-cluster command: it runs an unchanged script as a cluster, refuses
// bad command lines before forking anything (exit 2, one-line reason, usage),
// stops gracefully on SIGTERM (in-flight requests finish, exit 0, nothing
// left behind), stops at once on a second SIGINT, and gives up with exit 1
// on a script that can never start, within a bounded number of forks.
const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { get } = require('./helpers');
const { isAlive, descendants, cpuSeconds, waitGone } = require('../scripts/lib/procs');
const { BIN, FIXTURES, command, waitForLog } = require('./supervisor-helpers');
const { freePort } = require('../scripts/lib/net');
const { USAGE } = require('../js/cli');

// Runs the command to completion (it must exit by itself).
function runSync(args, env = {}) {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    cwd: FIXTURES, env: { ...process.env, ...env }, encoding: 'utf8', timeout: 10000,
  });
  return { code: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

test('runs the docs hello world with -w 2: both workers serve', { timeout: 30000 }, async () => {
  const port = await freePort();
  const h = command(['-w', '2', 'supervisor-hello.js'], { env: { PORT: `${port}` } });
  try {
    await waitForLog(h, /listening on \*:\d+/);
    const { status, body } = await get(port);
    assert.strictEqual(status, 200);
    assert.strictEqual(body, 'hello world\n');
    // Both workers are up: the command forked two children (a short-lived
    // process of a loaded machine may show for a moment: look again).
    let children = descendants(h.child.pid).length;
    for (let i = 0; i < 20 && children !== 2; i++) {
      await new Promise((r) => setTimeout(r, 100));
      children = descendants(h.child.pid).length;
    }
    assert.strictEqual(children, 2, h.stderr);
    assert.match(h.stderr, /supervisor-hello\.js: 2 worker\(s\)/);
  } finally {
    await h.stop();
  }
});

test('bad command lines exit 2 with a one-line reason and the usage line, forking nothing', { timeout: 60000 }, () => {
  const cases = [
    [[], /missing the script/],
    [['--frobnicate', 'supervisor-hello.js'], /Unknown option '--frobnicate'/],
    [['nonexistent.js'], /cannot find the script 'nonexistent\.js'/],
    [['-w', '0', 'supervisor-hello.js'], /-w\/--workers must be .* Received '0'/],
    [['-w', 'abc', 'supervisor-hello.js'], /-w\/--workers must be .* Received 'abc'/],
    [['-w'], /argument missing/],
    [['--drain-timeout', '-5', 'supervisor-hello.js'], /--drain-timeout must be .* Received '-5'/],
    [['--hang-timeout=-1', 'supervisor-hello.js'], /--hang-timeout must be .* Received '-1'/],
    [['--max-memory', 'lots', 'supervisor-hello.js'], /--max-memory must be .* Received 'lots'/],
    [['--policy', 'fastest', 'supervisor-hello.js'], /--policy must be none, rr, least, sticky or random/],
    [['--policy', 'sticky', '--sticky-key', 'nose', 'supervisor-hello.js'], /--sticky-key must be 'ip', 'header:NAME'/],
    [['--policy', 'sticky', '--sticky-key', 'header:', 'supervisor-hello.js'], /--sticky-key must be 'ip', 'header:NAME'/],
    [['--sticky-key', 'ip', 'supervisor-hello.js'], /--sticky-key needs --policy sticky/],
    [['--metrics', 'host:99999', 'supervisor-hello.js'], /--metrics must be \[host:\]port/],
    [['--help=yes'], /does not take an argument/],
  ];
  for (const [args, reason] of cases) {
    const r = runSync(args);
    const lines = r.stderr.trimEnd().split('\n');
    assert.strictEqual(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.strictEqual(lines.length, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(lines[0], /^rs-cluster: /);
    assert.match(lines[0], reason);
    assert.strictEqual(lines[1], USAGE);
    // Nothing was started: the command names its pid when it starts.
    assert.doesNotMatch(r.stderr, /primary pid|listening on/);
  }
  const env = runSync(['supervisor-hello.js'], { RS_CLUSTER_DRAIN_TIMEOUT: 'soon' });
  assert.strictEqual(env.code, 2);
  assert.match(env.stderr, /^rs-cluster: The environment variable RS_CLUSTER_DRAIN_TIMEOUT must be .* Received 'soon'\n/);
});

test('-h, -v and the script\'s own arguments', { timeout: 30000 }, async () => {
  const help = runSync(['-h']);
  assert.strictEqual(help.code, 0);
  assert.match(help.stdout, /--workers <n\|max>/);
  const version = runSync(['--version']);
  assert.strictEqual(version.stdout, `${require('../package.json').version}\n`);
  // Options after the script are the script's, even ones the command knows.
  const port = await freePort();
  const h = command(['-w', '1', '--', 'supervisor-hello.js', '-w', '--bogus'], { env: { PORT: `${port}` } });
  try {
    await waitForLog(h, /listening on/);
    const [worker] = descendants(h.child.pid);
    const argv = fs.readFileSync(`/proc/${worker}/cmdline`, 'utf8').split('\0');
    assert.deepStrictEqual(argv.slice(-4, -1), [path.join(FIXTURES, 'supervisor-hello.js'), '-w', '--bogus']);
  } finally {
    await h.stop();
  }
});

// The command with 2 workers of supervisor-app.js, both listening, and a
// request of `ms` in flight for 300 ms; `pids`: the command and its workers.
async function withSlowRequest(h, ms) {
  await h.waitFor(() => h.events.filter((e) => e.event === 'listening').length === 2);
  const pids = [h.child.pid, ...descendants(h.child.pid)];
  assert.strictEqual(pids.length, 3);
  const slow = get(h.events.find((e) => e.event === 'listening').port, { path: `/slow?ms=${ms}` }).catch((err) => err);
  await new Promise((r) => setTimeout(r, 300));
  return { pids, slow };
}

test('SIGTERM: an in-flight 2 s request completes with 200, then exit 0 and no process left', { timeout: 30000 }, async () => {
  const h = command(['-w', '2', 'supervisor-app.js']);
  try {
    const { pids, slow } = await withSlowRequest(h, 2000);
    h.child.kill('SIGTERM');
    const t0 = Date.now();
    const res = await slow;
    assert.strictEqual(res.status, 200);
    assert.ok(Date.now() - t0 >= 1500, 'the request was not cut short');
    assert.deepStrictEqual(await h.waitExit(10000), { code: 0, signal: null }, h.stderr);
    assert.match(h.stderr, /SIGTERM: stopping 2 worker\(s\)/);
    assert.ok(await waitGone(pids, 2000), `left running: ${pids.filter(isAlive)}`);
  } finally {
    await h.stop();
  }
});

test('a second SIGINT stops at once: exit 130, no process left', { timeout: 30000 }, async () => {
  const h = command(['-w', '2', 'supervisor-app.js']);
  try {
    const { pids, slow } = await withSlowRequest(h, 20000);
    h.child.kill('SIGINT');
    await waitForLog(h, /SIGINT: stopping/);
    h.child.kill('SIGINT');
    assert.deepStrictEqual(await h.waitExit(5000), { code: 130, signal: null }, h.stderr);
    assert.ok((await slow) instanceof Error, 'the slow request was cut');
    assert.ok(await waitGone(pids, 2000), `left running: ${pids.filter(isAlive)}`);
  } finally {
    await h.stop();
  }
});

test('a script that throws at start: bounded forks, the reason shown, exit 1', { timeout: 60000 }, async (t) => {
  const marker = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'rs-cluster-')), 'fail');
  fs.writeFileSync(marker, '');
  const h = command(['-w', '2', 'supervisor-app.js'], { env: { THROW_IF: marker } });
  // The primary's CPU time, last read just before it exits.
  let cpu = 0;
  const sampler = setInterval(() => {
    const seconds = cpuSeconds(h.child.pid);
    if (seconds !== null) cpu = seconds;
  }, 250);
  const t0 = Date.now();
  try {
    const exit = await h.waitExit(45000);
    const wall = (Date.now() - t0) / 1000;
    clearInterval(sampler);
    assert.deepStrictEqual(exit, { code: 1, signal: null }, h.stderr);
    const exits = h.stderr.match(/worker \d+ \(pid \d+\) exited with code 1/g) || [];
    t.diagnostic(`${exits.length} forks in ${wall.toFixed(1)} s; primary CPU ${cpu.toFixed(2)} s`);
    assert.ok(exits.length >= 4 && exits.length <= 10, `${exits.length} forks:\n${h.stderr}`);
    assert.ok(wall <= 30, `gave up after ${wall} s`);
    // Why the workers die: their exit code, and their own stderr.
    assert.match(h.stderr, /supervisor-app: failing at start, as THROW_IF asks/);
    assert.match(h.stderr, /no worker ever started \(8 failed starts\), giving up/);
    assert.ok(cpu / wall < 0.05, `primary used ${cpu} s of CPU in ${wall} s`);
  } finally {
    clearInterval(sampler);
    fs.rmSync(path.dirname(marker), { recursive: true, force: true });
    await h.stop();
  }
});
