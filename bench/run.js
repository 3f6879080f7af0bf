'use strict';
// rs-cluster vs node:cluster, in the same run, on the same unchanged app
// (bench/app.js, Node's docs hello-world cluster server). See bench/README.md.
//
//   npm run bench -- [--workers 2] [--duration 5] [--rounds 3] [--connections 64]
//                    [--scenarios close-rr,ka-rr,...] [--out bench/results] [--quick]
//                    [--loader auto|wrk|autocannon|node] [--threads 1] [--warmup 1]
//                    [--startup-reps 5] [--no-install]

const fs = require('node:fs');
const http = require('node:http');
const os = require('node:os');
const path = require('node:path');
const readline = require('node:readline');
const { performance } = require('node:perf_hooks');
const procs = require('../scripts/lib/procs');
const tracker = require('./lib/tracker');
const loaders = require('./lib/loaders');
const report = require('./lib/report');
const syscalls = require('./lib/syscalls');
const { parseCli } = require('../scripts/lib/cli');
const { freePort } = require('../scripts/lib/net');

const ROOT = path.resolve(__dirname, '..');
const APP = path.join(__dirname, 'app.js');
const SINGLE = path.join(__dirname, 'single.js');
const INSTRUMENT = path.join(__dirname, 'instrument.js');
const REGISTER = path.join(ROOT, 'js', 'register.js');

const SLOW_MS = 1500; // a request this slow waited behind the stalled worker
const STALL_MS = 2000;
const STALL_AT_S = 1;
// Seconds of load in a run's separate syscall-counting window.
const COUNT_S = 2;

// kind: load (measure under load), startup (start/stop only), stall.
// syscalls: count the cluster's system calls under load ('breakdown': per syscall too).
const SCENARIOS = [
  { name: 'ka-rr', kind: 'load', keepAlive: true, policy: 'rr', syscalls: true, text: 'keep-alive, SCHED_RR' },
  { name: 'ka-none', kind: 'load', keepAlive: true, policy: 'none', syscalls: true, text: 'keep-alive, SCHED_NONE' },
  { name: 'close-rr', kind: 'load', keepAlive: false, policy: 'rr', syscalls: 'breakdown', text: 'Connection: close, SCHED_RR' },
  { name: 'close-none', kind: 'load', keepAlive: false, policy: 'none', syscalls: true, text: 'Connection: close, SCHED_NONE' },
  // Routing fairness with more workers than cores.
  { name: 'close-rr-8', kind: 'load', keepAlive: false, policy: 'rr', workers: 8, text: 'Connection: close, SCHED_RR, 8 workers whatever --workers says' },
  // Latency-bound: each connection's path from accept to the first response.
  { name: 'close-1', kind: 'load', keepAlive: false, policy: 'rr', connections: 1, text: 'one client, Connection: close, one request after another, SCHED_RR' },
  { name: 'baseline-ka', kind: 'load', keepAlive: true, single: true, text: 'one process, no cluster, keep-alive' },
  { name: 'baseline-close', kind: 'load', keepAlive: false, single: true, text: 'one process, no cluster, Connection: close' },
  { name: 'startup', kind: 'startup', policy: 'rr', text: 'start to all workers listening' },
  { name: 'stall', kind: 'stall', keepAlive: false, policy: 'rr', text: `one worker blocks ${STALL_MS} ms, Connection: close, SCHED_RR` },
  // What metrics cost: close-rr with the endpoint on and scraped every second.
  { name: 'close-rr-metrics', kind: 'load', keepAlive: false, policy: 'rr', metrics: true, rsOnly: true, text: 'Connection: close, SCHED_RR, RS_CLUSTER_METRICS on and /metrics scraped every second (rs-cluster only; against close-rr)' },
];

// How often the metrics scenario scrapes (Prometheus' default is 15 s).
const SCRAPE_MS = 1000;
const QUICK_SCENARIOS = ['ka-rr', 'close-rr'];

const HELP = `usage: npm run bench -- [options]
  --workers N         workers per cluster (default 2)
  --duration S        seconds of load per run (default 5; wrk rounds to whole seconds)
  --rounds N          rounds; implementations alternate A B / B A (default 3)
  --connections N     concurrent client connections (default 64)
  --scenarios LIST    comma list of: ${SCENARIOS.map((s) => s.name).join(', ')}
                      (default all; --quick: ${QUICK_SCENARIOS.join(',')})
  --out DIR           where the JSON and SVG go (default bench/results)
  --quick             1 s, 1 round, no warm-up, 1 startup rep, no installs
  --loader NAME       auto | wrk | autocannon | node (default auto: wrk, else
                      apt-get install wrk, else autocannon, else the Node loop)
  --threads N         wrk threads (default 1)
  --warmup S          warm-up seconds before each measurement (default 1)
  --startup-reps N    cluster starts per implementation and round, interleaved (default 5)
  --no-install        never apt-get/npx anything; use wrk if present, else the Node loop
  --impls LIST        rs,node (default both; one alone is for profiling, no ratios)`;

const USAGE = 'usage: npm run bench -- [options]   (--help lists them)';

function parseOptions() {
  const str = { type: 'string' };
  const { values: o, fail, number } = parseCli({
    name: 'bench',
    usage: USAGE,
    help: HELP,
    options: {
      workers: str, duration: str, rounds: str, connections: str, scenarios: str, out: str, loader: str,
      threads: str, warmup: str, 'startup-reps': str, impls: str,
      quick: { type: 'boolean' }, 'no-install': { type: 'boolean' },
    },
  });
  const quick = !!o.quick;
  const num = (k, def, min, whole = true) => number(k, { def, min, whole });
  const known = SCENARIOS.map((s) => s.name);
  const names = (o.scenarios ?? (quick ? QUICK_SCENARIOS : known).join(','))
    .split(',').map((s) => s.trim()).filter(Boolean);
  const unknown = names.filter((n) => !known.includes(n));
  if (unknown.length > 0) fail(`unknown scenario ${unknown.join(', ')}; known: ${known.join(', ')}`);
  if (names.length === 0) fail('--scenarios names no scenario');
  const impls = (o.impls ?? 'rs,node').split(',').map((s) => s.trim()).filter(Boolean);
  if (impls.length === 0 || impls.some((i) => !['rs', 'node'].includes(i))) fail(`--impls takes rs, node or rs,node, not '${o.impls}'`);
  const loader = o.loader ?? 'auto';
  if (!['auto', 'wrk', 'autocannon', 'node'].includes(loader)) fail(`--loader takes auto, wrk, autocannon or node, not '${loader}'`);
  return {
    workers: num('workers', 2, 1),
    duration: num('duration', quick ? 1 : 5, 0.5, false),
    rounds: num('rounds', quick ? 1 : 3, 1),
    connections: num('connections', 64, 1),
    threads: num('threads', 1, 1),
    warmup: num('warmup', quick ? 0 : 1, 0, false),
    startupReps: num('startup-reps', quick ? 1 : 5, 1),
    scenarios: SCENARIOS.filter((s) => names.includes(s.name)),
    out: path.resolve(o.out ?? path.join(__dirname, 'results')),
    quick,
    loader,
    impls,
    install: !quick && !o['no-install'],
  };
}

const log = (msg) => process.stderr.write(`${msg}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Starts the app (impl: rs | node | single) and resolves once every worker
// listens. The returned handle knows every pid it started.
function startApp({ impl, policy, workers, port, metricsPort }) {
  const args = [];
  if (impl === 'rs') args.push('-r', REGISTER);
  args.push('-r', INSTRUMENT, impl === 'single' ? SINGLE : APP);
  const env = { ...process.env };
  for (const k of ['NODE_CLUSTER_SCHED_POLICY', 'NODE_UNIQUE_ID', 'RS_CLUSTER_WORKER_ID', 'RS_CLUSTER_CHANNEL_FD']) delete env[k];
  Object.assign(env, {
    PORT: `${port}`,
    WORKERS: `${workers}`,
    BENCH_ROLE: impl === 'single' ? 'single' : 'cluster',
    BENCH_PARENT_PID: `${process.pid}`,
    BENCH_STALL_MS: `${STALL_MS}`,
  });
  if (policy && impl !== 'single') env.NODE_CLUSTER_SCHED_POLICY = policy;
  if (metricsPort) env.RS_CLUSTER_METRICS = `127.0.0.1:${metricsPort}`;

  const t0 = performance.now();
  const child = tracker.spawnTracked(process.execPath, args, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] },
    `app(${impl})`, { tree: true });
  const app = {
    impl,
    pid: child.pid,
    workers: [], // [{ id, pid }]
    startupMs: null,
    stalled: [],
    countLog: [], // every `count` report: { pid, n, conns, t }
    stderr: '',
    listeners: new Set(),
  };
  const pids = new Set([child.pid]);
  app.pids = () => [...pids];
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d) => { app.stderr = (app.stderr + d).slice(-4000); });
  const rl = readline.createInterface({ input: child.stdout });
  rl.on('line', (line) => {
    if (!line.startsWith('@@bench ')) return;
    let ev;
    try {
      ev = JSON.parse(line.slice(8));
    } catch {
      return;
    }
    ev.at = performance.now();
    if (ev.ev === 'fork' && ev.child) {
      tracker.track(ev.child, 'worker');
      pids.add(ev.child);
    }
    if (ev.ev === 'proc') {
      if (ev.role !== 'primary') {
        tracker.track(ev.pid, ev.role);
        pids.add(ev.pid);
      }
      app.primaryInfo = app.primaryInfo || (ev.role === 'primary' ? ev : undefined);
    }
    if (ev.ev === 'stalled') app.stalled.push(ev);
    if (ev.ev === 'count') app.countLog.push({ pid: ev.pid, n: ev.n, conns: ev.conns, t: ev.t });
    for (const l of [...app.listeners]) l(ev);
  });

  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  app.exited = exited;

  app.stop = async () => {
    const all = app.pids();
    tracker.killPids(all);
    await Promise.race([exited, sleep(3000)]);
    await procs.waitGone(all, 3000);
  };

  // Asks every serving process for its counts without waiting (timeline).
  app.sample = () => {
    const targets = impl === 'single' ? [app.pid] : app.workers.map((w) => w.pid);
    for (const p of targets) {
      try {
        process.kill(p, 'SIGUSR2');
      } catch {
        // Gone: the run fails elsewhere.
      }
    }
  };

  // Resolves with the requests counted so far by each serving process.
  app.counts = (timeoutMs = STALL_MS + 4000) => {
    const targets = impl === 'single' ? [app.pid] : app.workers.map((w) => w.pid);
    return new Promise((resolve, reject) => {
      const got = new Map();
      const done = () => {
        app.listeners.delete(onEv);
        clearTimeout(timer);
      };
      const onEv = (ev) => {
        if (ev.ev !== 'count' || !targets.includes(ev.pid)) return;
        got.set(ev.pid, { requests: ev.n, conns: ev.conns });
        if (got.size === targets.length) {
          done();
          resolve(targets.map((p) => got.get(p)));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`request counts: ${targets.length - got.size} process(es) did not answer`));
      }, timeoutMs);
      app.listeners.add(onEv);
      for (const p of targets) {
        try {
          process.kill(p, 'SIGUSR2');
        } catch {
          // Gone: the timeout reports it.
        }
      }
    });
  };

  const ready = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${impl}: not listening after 30 s; stderr: ${app.stderr}`)), 30000);
    const onEv = (ev) => {
      if (ev.ev !== 'ready') return;
      clearTimeout(timer);
      app.listeners.delete(onEv);
      app.startupMs = ev.at - t0;
      app.workers = ev.workers || [];
      for (const w of app.workers) {
        tracker.track(w.pid, 'worker');
        pids.add(w.pid);
      }
      // CPU spent getting there, all processes: steadier than wall time on a busy box.
      let cpu = 0;
      for (const p of pids) cpu += procs.cpuSeconds(p) || 0;
      app.startupCpuMs = cpu * 1000;
      resolve(app);
    };
    app.listeners.add(onEv);
    exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`${impl}: app exited (${code ?? signal}) before listening; stderr: ${app.stderr}`));
    });
  });
  return ready.then(() => {
    // The app must really run the implementation and policy asked for.
    const info = app.primaryInfo;
    if (impl !== 'single' && (!info || info.impl !== impl || info.policy !== policy)) {
      throw new Error(`asked for ${impl}/${policy}, the app runs ${info ? `${info.impl}/${info.policy}` : 'unknown'}`);
    }
    return app;
  }, async (err) => {
    await app.stop();
    throw err;
  });
}

function cpuOf(app) {
  let total = 0;
  for (const p of app.pids()) {
    const c = procs.cpuSeconds(p);
    if (c === null) throw new Error(`process ${p} of the app is gone`);
    total += c;
  }
  return { total, primary: procs.cpuSeconds(app.pid) };
}

// `perf`: what syscalls.probe() found.
// One GET /metrics, read to the end; a failure is the metrics' problem, not the load's.
function scrape(port) {
  http.get({ host: '127.0.0.1', port, path: '/metrics', timeout: 2000 }, (res) => res.resume())
    .on('timeout', function onTimeout() { this.destroy(); })
    .on('error', () => {});
}

async function loadRun(opts, loader, sc, impl, round, perf) {
  const port = await freePort();
  const metricsPort = sc.metrics ? await freePort() : null;
  const app = await startApp({ impl, policy: sc.policy, workers: sc.workers || opts.workers, port, metricsPort });
  let counter = null;
  try {
    const stall = sc.kind === 'stall';
    // The stall needs exact per-request latencies: the Node loop times each one.
    const gen = stall ? loaders.nodeLoader : loader;
    const duration = stall ? Math.max(opts.duration, STALL_AT_S + STALL_MS / 1000 + 1.5) : opts.duration;
    const base = { port, connections: sc.connections || opts.connections, threads: opts.threads, keepAlive: sc.keepAlive, slowMs: SLOW_MS, graceS: 15 };
    if (opts.warmup > 0) await gen.run({ ...base, duration: opts.warmup });
    const c0 = await app.counts();
    const cpu0 = cpuOf(app);
    const t0 = performance.now();
    const wall0 = Date.now();
    const sampler = setInterval(app.sample, stall ? 250 : 500);
    const scraper = metricsPort && setInterval(() => scrape(metricsPort), SCRAPE_MS);
    let stallTimer = null;
    if (stall) {
      stallTimer = setTimeout(() => {
        try {
          process.kill(app.workers[0].pid, 'SIGHUP');
        } catch {
          // Its exit shows up below.
        }
      }, STALL_AT_S * 1000);
    }
    let res;
    try {
      res = await gen.run({ ...base, duration });
    } finally {
      clearTimeout(stallTimer);
      clearInterval(sampler);
      clearInterval(scraper);
    }
    const t1 = performance.now();
    const cpu1 = cpuOf(app);
    const mem = procs.memory(app.pid);
    await sleep(150); // let responses the client no longer waited for finish
    const c1 = await app.counts();
    // System calls are counted in a window of their own: tracing them costs
    // the traced processes CPU (about 10% with the per-syscall breakdown),
    // which must not reach the CPU and req/s figures above.
    let sys = null;
    let sysError = null;
    if (sc.syscalls && perf.ok) {
      const pids = [app.pid, ...procs.descendants(app.pid)]; // every thread of each
      counter = syscalls.attach(pids, sc.syscalls === 'breakdown' ? perf.breakdown : []);
      try {
        await counter.enable();
        const before = await app.counts();
        await gen.run({ ...base, duration: COUNT_S });
        await sleep(150);
        sys = await counter.finish();
        const after = await app.counts();
        sys.requests = after.reduce((n, c, i) => n + c.requests - before[i].requests, 0);
      } catch (err) {
        sysError = String(err && err.message ? err.message : err);
        counter.abort();
      }
      counter = null;
    }
    const perWorker = c1.map((c, i) => c.requests - c0[i].requests);
    const perWorkerConns = c1.map((c, i) => c.conns - c0[i].conns);
    const served = perWorker.reduce((a, b) => a + b, 0);
    const share = (v) => (v.length > 1 ? Math.max(...v) / Math.max(1, Math.min(...v)) : null);
    const timeline = buildTimeline(app, c0, wall0, wall0 + res.seconds * 1000);
    const seconds = (t1 - t0) / 1000;
    const cpuTotal = cpu1.total - cpu0.total;
    const metrics = {
      rps: res.requests / res.seconds,
      p50Ms: res.latencyMs.p50,
      p99Ms: res.latencyMs.p99,
      cpuUsPerReq: served > 0 ? (cpuTotal * 1e6) / served : null,
      primaryCores: (cpu1.primary - cpu0.primary) / seconds,
      primaryRssMb: mem ? mem.rssKb / 1024 : null,
      syscallsPerReq: sys && sys.requests > 0 ? sys.total / sys.requests : null,
      shareMaxMin: share(perWorker),
      connShareMaxMin: share(perWorkerConns),
      startupMs: app.startupMs,
      errors: res.errors,
    };
    if (stall) {
      metrics.slow = res.slow;
      metrics.afterStallShare = afterStallShare(app, timeline, wall0);
    }
    const run = {
      scenario: sc.name, impl, round, ok: true, loader: gen.name, policy: sc.policy || null, keepAlive: sc.keepAlive,
      durationS: duration, metrics,
      detail: {
        clientRequests: res.requests, clientSeconds: res.seconds, serverRequests: served, perWorker, perWorkerConns,
        cpuSeconds: cpuTotal, primaryCpuSeconds: cpu1.primary - cpu0.primary, windowSeconds: seconds,
        primaryHwmMb: mem ? mem.hwmKb / 1024 : null, latencyMs: res.latencyMs,
        timeline, idleWorkers: idleWorkers(timeline, res.seconds),
        pids: app.pids(), stalled: stall ? app.stalled.map((s) => ({ id: s.id, ms: s.ms })) : undefined,
        syscalls: sc.syscalls && perf.ok ? { ...sys, error: sysError } : undefined,
        loaderRaw: res.raw,
      },
    };
    if (stall && app.stalled.length === 0) {
      run.ok = false;
      run.error = 'the worker never reported its stall';
    }
    return run;
  } finally {
    // A perf still counting (the load failed) goes with the app.
    if (counter) counter.abort();
    await app.stop();
  }
}

// Per serving process: [ms since the load started, requests since then],
// from the periodic `count` reports.
function buildTimeline(app, c0, wall0, wallEnd) {
  const targets = app.impl === 'single' ? [{ id: 0, pid: app.pid }] : app.workers;
  return targets.map((w, i) => ({
    id: w.id,
    pid: w.pid,
    points: app.countLog
      .filter((c) => c.pid === w.pid && c.t >= wall0 && c.t <= wallEnd + 100)
      .map((c) => [c.t - wall0, c.n - c0[i].requests]),
  }));
}

// Workers that served nothing during the last second of the load while the
// others did: the router has stopped giving them work.
function idleWorkers(timeline, duration) {
  if (timeline.length < 2 || duration < 2) return [];
  const from = (duration - 1) * 1000;
  const gain = timeline.map((w) => {
    const before = w.points.filter(([t]) => t <= from).pop();
    const last = w.points[w.points.length - 1];
    return before && last && last[0] > from ? last[1] - before[1] : null;
  });
  return timeline.filter((w, i) => gain[i] === 0 && gain.some((g) => g > 0)).map((w) => w.id);
}

// The stalled worker's requests from the end of its stall to the end of the
// load, over the mean of the other workers' in the same span (1 = it got its
// full share back at once). From the first timeline sample after the stall.
function afterStallShare(app, timeline, wall0) {
  const ev = app.stalled[0];
  if (!ev || timeline.length < 2) return null;
  const from = ev.t - wall0;
  const gains = timeline.map((w) => {
    const after = w.points.find(([t]) => t >= from);
    const last = w.points[w.points.length - 1];
    return after && last && last[0] > after[0] ? last[1] - after[1] : null;
  });
  const mine = timeline.findIndex((w) => w.pid === ev.pid);
  const others = gains.filter((g, i) => i !== mine && g != null);
  if (mine < 0 || gains[mine] == null || others.length === 0) return null;
  const mean = others.reduce((x, y) => x + y, 0) / others.length;
  return mean > 0 ? gains[mine] / mean : null;
}

// Both implementations start in one run, their starts interleaved (A B, B A
// ...) so that a slow spell of this machine lands on both alike.
async function startupRuns(opts, sc, impls, round) {
  const per = new Map(impls.map((impl) => [impl, { times: [], cpu: [], pids: [], error: null }]));
  for (let i = 0; i < opts.startupReps; i++) {
    for (const impl of i % 2 === 0 ? impls : [...impls].reverse()) {
      const acc = per.get(impl);
      if (acc.error !== null) continue;
      try {
        const port = await freePort();
        const app = await startApp({ impl, policy: sc.policy, workers: opts.workers, port });
        acc.times.push(app.startupMs);
        acc.cpu.push(app.startupCpuMs);
        acc.pids.push(...app.pids());
        await app.stop();
      } catch (err) {
        acc.error = String(err && err.message ? err.message : err);
      }
    }
  }
  return impls.map((impl) => {
    const { times, cpu, pids, error } = per.get(impl);
    if (error !== null) return { scenario: sc.name, impl, round, ok: false, error, metrics: {} };
    return {
      scenario: sc.name, impl, round, ok: true, policy: sc.policy,
      metrics: { startupMs: report.median(times), startupCpuMs: report.median(cpu) },
      detail: { startupMs: times, startupCpuMs: cpu, pids },
    };
  });
}

function describe(run) {
  const m = run.metrics;
  if (!run.ok) return `FAILED: ${run.error}`;
  if (run.scenario === 'startup') {
    return `startup ${m.startupMs.toFixed(1)} ms (${run.detail.startupMs.map((t) => t.toFixed(0)).join(', ')}), ` +
      `CPU ${m.startupCpuMs.toFixed(0)} ms (${run.detail.startupCpuMs.map((t) => t.toFixed(0)).join(', ')})`;
  }
  const f = (v, d) => (v == null ? '–' : v.toFixed(d));
  const parts = [
    `${f(m.rps, 0)} req/s`,
    `p50 ${f(m.p50Ms, 2)} ms`,
    `p99 ${f(m.p99Ms, 2)} ms`,
    `cpu ${f(m.cpuUsPerReq, 1)} µs/req`,
    ...(m.syscallsPerReq != null ? [`${f(m.syscallsPerReq, 1)} syscalls/req`] : []),
    `primary ${f(m.primaryCores, 3)} cores ${f(m.primaryRssMb, 1)} MB`,
  ];
  if (m.shareMaxMin != null) {
    parts.push(`share ${m.shareMaxMin.toFixed(3)} [${run.detail.perWorker.join(' ')}]`);
    if (run.keepAlive) parts.push(`conns [${run.detail.perWorkerConns.join(' ')}]`);
  }
  if (m.slow != null) parts.push(`>1.5s: ${m.slow}, stalled worker's share after: ${m.afterStallShare == null ? '?' : m.afterStallShare.toFixed(2)}`);
  if (run.detail.idleWorkers && run.detail.idleWorkers.length) parts.push(`IDLE in the last second: worker ${run.detail.idleWorkers.join(', ')}`);
  if (m.errors) parts.push(`errors ${m.errors}`);
  return parts.join(', ');
}

function stamp(d) {
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}${p(d.getMonth() + 1)}${p(d.getDate())}-${p(d.getHours())}${p(d.getMinutes())}${p(d.getSeconds())}`;
}

async function main() {
  const opts = parseOptions();
  tracker.installCleanup();
  if (!fs.existsSync(REGISTER)) throw new Error(`missing ${REGISTER}`);
  const loader = loaders.pick(opts.loader, { install: opts.install, log: (m) => log(`bench: ${m}`) });
  const started = new Date();
  log(`bench: rs-cluster vs node:cluster, ${opts.workers} workers, ${opts.duration} s x ${opts.rounds} round(s), ` +
    `${opts.connections} connections, load generator: ${loader.name} ${loader.version}` +
    `${opts.scenarios.some((s) => s.kind === 'stall') && loader.name !== 'node' ? ' (stall scenario: bench/loadgen.js)' : ''}`);
  log(`bench: node ${process.version}, ${os.cpus().length} CPUs, load average ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  const counting = opts.scenarios.some((s) => s.syscalls);
  const perf = counting ? syscalls.probe() : { ok: false, note: 'no scenario counts them' };
  if (counting) {
    log(`bench: syscalls per request: ${perf.ok ? 'perf stat, raw_syscalls:sys_enter, every process of the cluster' : `skipped (${perf.note})`}` +
      `${perf.ok && perf.note ? ` (${perf.note})` : ''}`);
  }

  const runs = [];
  for (let round = 1; round <= opts.rounds; round++) {
    // A B in one round, B A in the next; neighbouring scenarios alternate too.
    let pairIndex = 0;
    for (const sc of opts.scenarios) {
      let impls;
      if (sc.single) {
        impls = ['single'];
      } else {
        impls = (round + pairIndex) % 2 === 1 ? ['rs', 'node'] : ['node', 'rs'];
        impls = impls.filter((i) => opts.impls.includes(i) && (!sc.rsOnly || i === 'rs'));
        pairIndex++;
      }
      const record = (run) => {
        runs.push(run);
        log(`[round ${round}/${opts.rounds}] ${sc.name.padEnd(14)} ${report.IMPL_LABEL[run.impl].padEnd(12)} ${describe(run)}`);
      };
      if (sc.kind === 'startup') {
        for (const run of await startupRuns(opts, sc, impls, round)) record(run);
        continue;
      }
      for (const impl of impls) {
        let run;
        try {
          run = await loadRun(opts, loader, sc, impl, round, perf);
        } catch (err) {
          run = { scenario: sc.name, impl, round, ok: false, error: String(err && err.message ? err.message : err), metrics: {} };
        }
        record(run);
      }
    }
  }

  const summary = report.summarize(runs);
  const targets = report.checkTargets(summary, runs, opts.workers);
  const breakdown = report.syscallBreakdown(runs, 'close-rr');
  // Things a median hides.
  const warnings = [];
  for (const r of runs) {
    if (r.ok && r.detail && r.detail.serverRequests === 0) {
      warnings.push(`${r.scenario} ${report.IMPL_LABEL[r.impl]} round ${r.round}: the server served no request at all`);
    }
    const idle = r.detail && r.detail.idleWorkers;
    if (idle && idle.length && r.scenario !== 'stall') {
      warnings.push(`${r.scenario} ${report.IMPL_LABEL[r.impl]} round ${r.round}: worker ${idle.join(', ')} served nothing in the last second of the load (per worker: ${r.detail.perWorker.join(' ')})`);
    }
    if (r.ok && r.detail.syscalls && r.detail.syscalls.error) {
      warnings.push(`${r.scenario} ${report.IMPL_LABEL[r.impl]} round ${r.round}: syscalls not counted: ${r.detail.syscalls.error}`);
    }
    if (r.scenario === 'stall' && r.ok && r.metrics.afterStallShare != null && r.metrics.afterStallShare < 0.2) {
      warnings.push(`stall ${report.IMPL_LABEL[r.impl]} round ${r.round}: the stalled worker got ${r.metrics.afterStallShare.toFixed(2)} of its share after the stall ended`);
    }
  }
  const finished = new Date();
  const result = {
    version: 1,
    startedAt: started.toISOString(),
    finishedAt: finished.toISOString(),
    env: {
      node: process.version,
      platform: `${os.platform()} ${os.release()}`,
      arch: os.arch(),
      cpus: os.cpus().length,
      cpuModel: os.cpus()[0]?.model,
      loadavgAtEnd: os.loadavg(),
      clkTck: procs.clkTck,
    },
    loader: { name: loader.name, version: loader.version, note: loader.note, stall: 'node' },
    options: { ...opts, scenarios: opts.scenarios.map((s) => s.name) },
    scenarios: opts.scenarios.map((s) => ({
      name: s.name, kind: s.kind, text: s.text, policy: s.policy || null, keepAlive: s.keepAlive ?? null,
      workers: s.single ? 1 : s.workers || opts.workers,
    })),
    syscalls: { counted: perf.ok, note: perf.note, closeRrBreakdown: breakdown },
    metrics: report.METRICS.map(({ key, label, better }) => ({ key, label, better })),
    runs,
    summary,
    targets,
    warnings,
  };

  const table = report.renderTable(summary, opts.scenarios);
  console.log('');
  console.log(`rs-cluster vs node:cluster — ${opts.workers} workers, ${opts.connections} connections, ${opts.duration} s x ${opts.rounds} round(s), load: ${loader.name} ${loader.version}`);
  console.log('medians (min–max over rounds); rs/node = ratio of medians (per-round ratios min–max)');
  console.log('');
  console.log(table);
  if (breakdown) {
    console.log('');
    console.log(report.renderBreakdown(breakdown, 'close-rr'));
  }
  console.log('');
  console.log('targets:');
  console.log(report.renderTargets(targets));
  if (warnings.length) {
    console.log('');
    console.log('warnings:');
    for (const w of warnings) console.log(`  ${w}`);
  }

  fs.mkdirSync(opts.out, { recursive: true });
  const base = `bench-${stamp(started)}`;
  const jsonPath = path.join(opts.out, `${base}.json`);
  const svgPath = path.join(opts.out, `${base}.svg`);
  fs.writeFileSync(jsonPath, `${JSON.stringify(result, null, 2)}\n`);
  const svg = report.renderSvg(summary, {
    title: 'rs-cluster / node:cluster',
    subtitle: `${opts.workers} workers, ${opts.connections} conns, ${opts.duration} s x ${opts.rounds} rounds, ${loader.name}, ${started.toISOString().slice(0, 16)}Z`,
    targets,
  });
  fs.writeFileSync(svgPath, svg);
  fs.copyFileSync(jsonPath, path.join(opts.out, 'latest.json'));
  fs.copyFileSync(svgPath, path.join(opts.out, 'latest.svg'));
  console.log('');
  console.log(`wrote ${path.relative(process.cwd(), jsonPath)} and ${path.relative(process.cwd(), svgPath)}`);

  const failed = runs.filter((r) => !r.ok);
  if (failed.length > 0) {
    log(`bench: ${failed.length} run(s) failed:`);
    for (const r of failed) log(`  ${r.scenario} ${r.impl} round ${r.round}: ${r.error}`);
    process.exitCode = 1;
  }
  tracker.killAll();
}

main().catch((err) => {
  log(`bench: ${err && err.message ? err.message : err}`);
  tracker.killAllAndExit(2);
});
