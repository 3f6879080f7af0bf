'use strict';
// Fault tolerance under load: workers SIGKILLed while serving, no fd/memory
// leaks after many connections, and running out of fds. Each figure is
// measured for rs-cluster and node:cluster in the same test and printed.
const test = require('node:test');
const assert = require('node:assert');
const { startCluster } = require('./helpers');
const {
  sleep, load, rawLoad, fdCount, cpuShare, request, openIdle, waitUntil,
} = require('./fixtures/faults-lib');
const { isAlive, memory } = require('../scripts/lib/procs');

const { execFileSync } = require('node:child_process');

const report = (t, label, value) => t.diagnostic(`${label}: ${JSON.stringify(value)}`);

// Runs the app under `impl` with 32 concurrent Connection: close clients for
// `durationMs`, SIGKILLing a random listening worker every `killEveryMs`. Just
// before each kill it counts the connections the victim holds (its fds above
// an idle worker's): those are in its hands already and die with it under
// any implementation. A failure beyond them is a connection lost in handoff.
async function crashRun(impl, { durationMs = 8000, killEveryMs = 300, workers = 4 } = {}) {
  const c = startCluster('faults-app.js', { impl, env: { WORKERS: `${workers}`, REFORK: '1' } });
  try {
    const { port } = await c.waitFor('ready');
    const idleFds = Math.min(...c.events.filter((e) => e.event === 'fork').map((e) => fdCount(e.pid)));
    // Victims are workers in rotation (listening); the last one listening
    // is spared, so the server never closes for want of workers (both
    // implementations close a round-robin handle its last worker left).
    const listening = () => {
      const exited = new Set(c.events.filter((e) => e.event === 'exit').map((e) => e.pid));
      return c.events.filter((e) => e.event === 'listening' && !exited.has(e.pid) && isAlive(e.pid)).map((e) => e.pid);
    };
    let kills = 0;
    let heldAtKill = 0;
    const killUntil = Date.now() + durationMs;
    const killer = setInterval(() => {
      if (Date.now() >= killUntil) return clearInterval(killer);
      const pids = listening();
      if (pids.length < 2) return;
      const pid = pids[Math.floor(Math.random() * pids.length)];
      try {
        const held = Math.max(0, fdCount(pid) - idleFds);
        process.kill(pid, 'SIGKILL');
        heldAtKill += held;
        kills++;
      } catch {
        // Raced with its exit.
      }
    }, killEveryMs);
    let stats;
    try {
      stats = await load(port, { concurrency: 32, durationMs, hangMs: 5000 });
    } finally {
      clearInterval(killer);
    }
    const primaryAlive = isAlive(c.child.pid);
    const { started, ok, failed, hung, codes, rate, maxMs } = stats;
    const lost = failed + hung;
    return {
      impl, kills, started, ok, failed, hung, codes, rate, maxMs, primaryAlive,
      heldAtKill,
      lostPerKill: +(lost / Math.max(1, kills)).toFixed(2),
      lostPct: +((100 * lost) / Math.max(1, started)).toFixed(3),
      lostBeyondHeld: Math.max(0, lost - heldAtKill),
    };
  } finally {
    await c.stop();
  }
}

// Figures per implementation: failed (reset) and hung (> 5 s) requests, the
// connections the killed workers held at the moment they were killed, and
// what was lost beyond those. rs-cluster's primary hands connections over
// faster than node:cluster's, so at any moment more of the 32 connections
// are inside workers (fewer wait in the primary): a kill then resets more of
// them. The comparison is therefore on what is lost beyond what the killed
// workers had already taken.
test('worker crashes under load: no hung requests, failures no worse than node:cluster', { timeout: 60000 }, async (t) => {
  const node = await crashRun('node');
  report(t, 'crash node:cluster', node);
  const rs = await crashRun('rs');
  report(t, 'crash rs-cluster', rs);
  assert.ok(rs.primaryAlive, 'rs-cluster primary survived');
  assert.ok(rs.kills >= 15, `workers were killed (${rs.kills})`);
  assert.ok(rs.ok > 1000, `rs-cluster served under load (${rs.ok} ok)`);
  assert.strictEqual(rs.hung, 0, 'no request hangs on rs-cluster');
  const tolerance = 10 + Math.ceil(0.1 * rs.heldAtKill);
  assert.ok(rs.lostBeyondHeld <= node.lostBeyondHeld + tolerance,
    `rs-cluster lost ${rs.lostBeyondHeld} connections beyond those its killed workers held; node:cluster ${node.lostBeyondHeld} (+${tolerance})`);
});

// fd counts of the primary and its live workers, and the primary's RSS.
function snapshot(c) {
  const workers = c.events.filter((e) => e.event === 'fork' && isAlive(e.pid)).map((e) => e.pid);
  const fds = { primary: fdCount(c.child.pid) };
  workers.forEach((p, i) => { fds[`w${i + 1}`] = fdCount(p); });
  return { fds, rssKb: memory(c.child.pid).rssKb };
}

async function leakRun(impl, total) {
  const c = startCluster('faults-app.js', { impl, env: { WORKERS: '2' } });
  try {
    const { port } = await c.waitFor('ready');
    // Warm up: first connections allocate buffers, handle classes, JIT code.
    const warm = await rawLoad(port, { concurrency: 64, total: 2000, durationMs: 3000 });
    await sleep(300);
    const before = snapshot(c);
    const run = await rawLoad(port, { concurrency: 64, total, durationMs: 12000, hangMs: 5000 });
    // Let the last connections close everywhere.
    let after;
    await waitUntil(() => {
      after = snapshot(c);
      return Object.keys(before.fds).every((k) => Math.abs(after.fds[k] - before.fds[k]) <= 2);
    }, 2000, 100);
    await sleep(200);
    after = snapshot(c);
    const fdDelta = {};
    for (const k of Object.keys(before.fds)) fdDelta[k] = after.fds[k] - before.fds[k];
    return {
      impl,
      warmOk: warm.ok,
      connections: run.started,
      ok: run.ok,
      failed: run.failed,
      hung: run.hung,
      codes: run.codes,
      rate: run.rate,
      fdsBefore: before.fds,
      fdsAfter: after.fds,
      fdDelta,
      rssBeforeKb: before.rssKb,
      rssAfterKb: after.rssKb,
      rssGrowthKb: after.rssKb - before.rssKb,
    };
  } finally {
    await c.stop();
  }
}

test('no leaks: fds and primary RSS back to their start after 20,000 connections', { timeout: 60000 }, async (t) => {
  const rs = await leakRun('rs', 20000);
  report(t, 'leak rs-cluster', rs);
  const node = await leakRun('node', 20000);
  report(t, 'leak node:cluster', node);
  assert.strictEqual(rs.hung, 0, `no connection hangs (${rs.hung} hung of ${rs.connections})`);
  // 20,000 unless the machine is too busy to run them within 12 s.
  assert.ok(rs.connections >= 10000, `rs-cluster ran at least 10,000 of the 20,000 connections within 12 s (${rs.connections})`);
  assert.strictEqual(rs.ok, rs.connections, `every connection served (${JSON.stringify(rs.codes)}, hung ${rs.hung})`);
  for (const [k, d] of Object.entries(rs.fdDelta)) {
    assert.ok(Math.abs(d) <= 2, `rs-cluster ${k} fd count back to start ±2 (delta ${d})`);
  }
  assert.ok(rs.rssGrowthKb <= 5 * 1024, `rs-cluster primary RSS grew ${rs.rssGrowthKb} kB (<= 5 MB)`);
});

// The whole app (primary and workers) under a low fd limit, with idle
// connections that stay open until the workers' fd tables are full.
async function emfileWholeRun(impl, { limit = 64, idle = 200 } = {}) {
  const c = startCluster('faults-limited.js', { impl, env: { FD_LIMIT: `${limit}`, WORKERS: '2', MODE: 'http' } });
  let socks = [];
  try {
    const { port } = await c.waitFor('ready');
    const primary = (await c.waitFor('primary')).pid;
    const workers = c.events.filter((e) => e.event === 'fork').map((e) => e.pid);
    const base = { primary: fdCount(primary), workers: workers.map(fdCount) };
    socks = await openIdle(port, idle);
    await sleep(800);
    const held = workers.map((p, i) => (isAlive(p) ? fdCount(p) - base.workers[i] : 'dead'));
    let primaryCpu = 'dead';
    if (isAlive(primary)) {
      try {
        primaryCpu = +(await cpuShare(primary, 1000)).toFixed(3);
      } catch {
        primaryCpu = 'dead';
      }
    }
    const whileFull = await request(port, { hangMs: 1000 });
    for (const s of socks) s.destroy();
    socks = [];
    // Serves again as soon as the fds are free.
    const t0 = Date.now();
    let again = null;
    while (Date.now() - t0 < 3000) {
      const r = await request(port, { hangMs: 1000 });
      if (r.ok) {
        again = Date.now() - t0;
        break;
      }
      await sleep(100);
    }
    return {
      impl,
      limit,
      idleOpened: idle,
      heldByWorkers: held,
      primaryCpu,
      primaryAlive: isAlive(primary),
      workersAlive: workers.map(isAlive),
      workerExits: c.events.filter((e) => e.event === 'exit').map(({ id, code, signal }) => ({ id, code, signal })),
      requestWhileFull: whileFull.ok ? 'ok' : whileFull.code,
      servedAgainAfterMs: again,
    };
  } finally {
    for (const s of socks) s.destroy();
    await c.stop();
  }
}

test('out of fds (whole app started under prlimit): no spin, no crash, serves again when fds free up', { timeout: 40000 }, async (t) => {
  const node = await emfileWholeRun('node');
  report(t, 'EMFILE (whole app limited) node:cluster', node);
  const rs = await emfileWholeRun('rs');
  report(t, 'EMFILE (whole app limited) rs-cluster', rs);
  assert.ok(rs.primaryAlive, 'rs-cluster primary is still running');
  assert.ok(typeof rs.primaryCpu === 'number' && rs.primaryCpu < 0.2, `rs-cluster primary does not spin (${rs.primaryCpu} core)`);
  assert.deepStrictEqual(rs.workerExits, [], 'no rs-cluster worker died of a full fd table');
  assert.notStrictEqual(rs.servedAgainAfterMs, null, 'rs-cluster serves again once the idle connections close');
});

// Only the primary is out of fds: once its workers run, its limit is
// lowered below the number of fds it already has (`prlimit --pid`), so every
// accept fails with EMFILE while its listener stays readable. It must not
// spin, and once fds are available again (the limit restored) it must serve
// every connection that waited.
function nofile(pid) {
  const m = /Max open files\s+(\d+)\s+(\d+)/.exec(require('node:fs').readFileSync(`/proc/${pid}/limits`, 'utf8'));
  return `${m[1]}:${m[2]}`;
}

async function emfilePrimaryRun(impl, { requests = 100 } = {}) {
  const c = startCluster('faults-app.js', { impl, env: { WORKERS: '2' } });
  try {
    const { port } = await c.waitFor('ready');
    const primary = c.child.pid;
    const original = nofile(primary);
    const limit = fdCount(primary) - 2;
    execFileSync('prlimit', ['--pid', `${primary}`, `--nofile=${limit}:${original.split(':')[1]}`]);
    const pending = Array.from({ length: requests }, () => request(port, { hangMs: 6000 }));
    await sleep(500);
    const primaryCpu = +(await cpuShare(primary, 1000)).toFixed(3);
    const doneWhileStuck = (await Promise.race([Promise.allSettled(pending), sleep(0).then(() => null)])) !== null;
    const t0 = Date.now();
    execFileSync('prlimit', ['--pid', `${primary}`, `--nofile=${original}`]);
    const results = await Promise.all(pending);
    const codes = {};
    for (const r of results) if (!r.ok) codes[r.code] = (codes[r.code] || 0) + 1;
    return {
      impl,
      limit,
      primaryCpu,
      allSettledWhileStuck: doneWhileStuck,
      ok: results.filter((r) => r.ok).length,
      failed: results.filter((r) => !r.ok && !r.hung).length,
      hung: results.filter((r) => r.hung).length,
      codes,
      servedWithinMs: Date.now() - t0,
      primaryAlive: isAlive(primary),
    };
  } finally {
    await c.stop();
  }
}

test('out of fds in the primary only: no spin at EMFILE, serves every waiting connection once fds are available', { timeout: 40000 }, async (t) => {
  const rs = await emfilePrimaryRun('rs');
  report(t, 'EMFILE (primary only) rs-cluster', rs);
  const node = await emfilePrimaryRun('node');
  report(t, 'EMFILE (primary only) node:cluster', node);
  assert.ok(rs.primaryAlive, 'rs-cluster primary is still running');
  assert.ok(rs.primaryCpu < 0.2, `rs-cluster primary does not spin at EMFILE (${rs.primaryCpu} core)`);
  assert.strictEqual(rs.ok, 100, `every connection served once fds free up (${JSON.stringify(rs.codes)}, hung ${rs.hung})`);
  assert.ok(rs.servedWithinMs < 2000, `served soon after fds free up (${rs.servedWithinMs} ms)`);
});
