'use strict';
// Smoke test of the benchmark tool (not a benchmark): `bench/run.js --quick`
// for 1 s, 1 round, two scenarios, must write its JSON and SVG with the
// expected fields and leave no process behind. Uses wrk when installed and
// the bench's built-in Node load loop otherwise (--quick never installs
// anything); the second test always uses the Node loop.

const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawn } = require('node:child_process');
const { ROOT } = require('./helpers');
const { isAlive, descendants } = require('../scripts/lib/procs');

const RUN = path.join(ROOT, 'bench', 'run.js');

function runBench(args, timeoutMs) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [RUN, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    // SIGTERM first: the bench kills what it started, then exits.
    const term = setTimeout(() => child.kill('SIGTERM'), timeoutMs);
    // Then SIGKILL, by pid, to the bench and everything it started (their
    // pipes would otherwise keep 'close' from coming).
    const kill = setTimeout(() => {
      for (const pid of [...descendants(child.pid), child.pid]) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // Already gone.
        }
      }
    }, timeoutMs + 5000);
    child.on('close', (code, signal) => {
      clearTimeout(term);
      clearTimeout(kill);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

function checkResult(out, scenarios, expectLoader) {
  const files = fs.readdirSync(out);
  assert.ok(files.includes('latest.json'), `files: ${files}`);
  assert.ok(files.includes('latest.svg'), `files: ${files}`);
  assert.ok(files.some((f) => /^bench-\d{8}-\d{6}\.json$/.test(f)), `files: ${files}`);
  const svg = fs.readFileSync(path.join(out, 'latest.svg'), 'utf8');
  assert.match(svg, /^<svg [^>]*xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
  assert.match(svg, /<\/svg>\s*$/);

  const j = JSON.parse(fs.readFileSync(path.join(out, 'latest.json'), 'utf8'));
  for (const k of ['version', 'startedAt', 'finishedAt', 'env', 'loader', 'options', 'runs', 'summary', 'targets']) {
    assert.ok(k in j, `missing ${k}`);
  }
  assert.ok(['wrk', 'autocannon', 'node'].includes(j.loader.name), j.loader.name);
  if (expectLoader) assert.strictEqual(j.loader.name, expectLoader);
  assert.deepStrictEqual(j.options.scenarios, scenarios);
  assert.strictEqual(j.options.rounds, 1);

  for (const run of j.runs) {
    assert.strictEqual(run.ok, true, `${run.scenario}/${run.impl}: ${run.error}`);
    const m = run.metrics;
    for (const k of ['rps', 'p50Ms', 'p99Ms', 'cpuUsPerReq', 'primaryCores', 'primaryRssMb', 'startupMs']) {
      // Latencies and CPU per request are null only if nothing was served.
      if (k === 'cpuUsPerReq' && run.detail.serverRequests === 0) continue;
      if (k.endsWith('Ms') && k !== 'startupMs' && run.detail.clientRequests === 0) continue;
      assert.strictEqual(typeof m[k], 'number', `${run.scenario}/${run.impl}: ${k} = ${m[k]}`);
      assert.ok(m[k] >= 0, `${run.scenario}/${run.impl}: ${k} = ${m[k]}`);
    }
    // How the numbers come out is the benchmark's business, not this test's:
    // only their presence and the tool's own invariants are checked.
    if (run.impl !== 'single') {
      assert.strictEqual(run.detail.perWorker.length, 2);
      assert.ok(run.detail.perWorker.every((n) => Number.isInteger(n) && n >= 0), `${run.detail.perWorker}`);
      assert.strictEqual(typeof m.shareMaxMin, 'number');
      assert.strictEqual(run.detail.timeline.length, 2);
    }
    // The server counted every request the client saw complete.
    assert.ok(run.detail.serverRequests >= run.detail.clientRequests,
      `${run.scenario}/${run.impl}: server ${run.detail.serverRequests} < client ${run.detail.clientRequests}`);
    for (const pid of run.detail.pids) assert.ok(!isAlive(pid), `pid ${pid} (${run.scenario}/${run.impl}) outlived the bench`);
  }

  for (const sc of scenarios) {
    const s = j.summary[sc];
    assert.ok(s, `no summary for ${sc}`);
    assert.ok(s.rps, `${sc}: no rps`);
    const impls = j.runs.filter((r) => r.scenario === sc).map((r) => r.impl).sort();
    if (sc.startsWith('baseline')) {
      assert.deepStrictEqual(impls, ['single']);
      assert.strictEqual(typeof s.rps.single.median, 'number');
    } else {
      assert.deepStrictEqual(impls, ['node', 'rs']);
      for (const impl of ['rs', 'node']) {
        for (const k of ['median', 'min', 'max', 'n']) assert.strictEqual(typeof s.rps[impl][k], 'number');
      }
      assert.strictEqual(typeof s.rps.ratio.median, 'number');
    }
  }
  // Syscalls per request: counted where perf may count, else skipped with the reason.
  assert.strictEqual(typeof j.syscalls.counted, 'boolean');
  for (const run of j.runs.filter((r) => ['ka-rr', 'ka-none', 'close-rr', 'close-none'].includes(r.scenario))) {
    const s = run.detail.syscalls;
    if (!j.syscalls.counted) {
      assert.strictEqual(typeof j.syscalls.note, 'string');
      assert.strictEqual(run.metrics.syscallsPerReq, null);
    } else if (!s.error && run.detail.serverRequests > 0) {
      assert.ok(run.metrics.syscallsPerReq > 0, `${run.scenario}/${run.impl}: ${run.metrics.syscallsPerReq}`);
      if (run.scenario === 'close-rr' && j.syscalls.closeRrBreakdown) assert.strictEqual(typeof s.bySyscall.accept4, 'number');
    }
  }
  assert.ok(Array.isArray(j.targets) && j.targets.length > 0);
  for (const t of j.targets) {
    assert.ok(typeof t.id === 'string' && typeof t.text === 'string');
    assert.ok(t.pass === null || typeof t.pass === 'boolean');
  }
  return j;
}

test('bench --quick writes JSON and SVG with the expected fields', { timeout: 120000 }, async (t) => {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'rs-cluster-bench-'));
  t.after(() => fs.rmSync(out, { recursive: true, force: true }));
  const scenarios = ['ka-rr', 'close-rr'];
  const r = await runBench(['--quick', '--duration', '1', '--rounds', '1', '--scenarios', scenarios.join(','), '--out', out], 90000);
  assert.strictEqual(r.code, 0, `exit ${r.code ?? r.signal}\n${r.stdout}\n${r.stderr}`);
  assert.match(r.stdout, /rs\/node/);
  assert.match(r.stdout, /targets/);
  const j = checkResult(out, scenarios);
  assert.match(r.stdout, new RegExp(`load: ${j.loader.name}`));
});

test('bench --quick with the built-in Node load loop', { timeout: 120000 }, async (t) => {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'rs-cluster-bench-'));
  t.after(() => fs.rmSync(out, { recursive: true, force: true }));
  const scenarios = ['close-none', 'baseline-ka'];
  const r = await runBench(['--quick', '--loader', 'node', '--scenarios', scenarios.join(','), '--out', out], 90000);
  assert.strictEqual(r.code, 0, `exit ${r.code ?? r.signal}\n${r.stdout}\n${r.stderr}`);
  checkResult(out, scenarios, 'node');
});
