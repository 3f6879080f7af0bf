#!/usr/bin/env node
'use strict';
// Routing beyond round-robin: what least-connections and sticky sessions buy
// and cost, each against round-robin in the same run (see bench/README.md).
//
//   npm run bench:routing -- [--rounds 3] [--scenarios socketio,busy,ws,cost,remap]
//                            [--busy-duration 10] [--cost-duration 5] [--out bench/results]

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const http = require('node:http');
const readline = require('node:readline');
const { performance } = require('node:perf_hooks');
const WebSocket = require('ws');
const tracker = require('./lib/tracker');
const loaders = require('./lib/loaders');
const { median } = require('./lib/report');
const procs = require('../scripts/lib/procs');
const { freePort } = require('../scripts/lib/net');
const { parseCli } = require('../scripts/lib/cli');

const ROOT = path.resolve(__dirname, '..');
const REGISTER = path.join(ROOT, 'js', 'register.js');
const APP = path.join(__dirname, 'routing-app.js');
const SIO = path.join(ROOT, 'examples', 'socket.io');
const SESSIONS_LUA = path.join(__dirname, 'wrk-sessions.lua');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (m) => process.stderr.write(`${m}\n`);
const SCENARIOS = ['socketio', 'busy', 'ws', 'cost', 'remap'];

// Starts a cluster app; resolves once `workers` workers listen. Lines on its
// stdout are JSON, optionally after `@@routing ` (routing-app.js); each
// `listening` names a worker.
async function startApp({ script, impl = 'rs', env = {}, workers, cwd = ROOT }) {
  const port = await freePort();
  const args = impl === 'rs' ? ['-r', REGISTER, script] : [script];
  const base = { ...process.env };
  for (const k of ['NODE_CLUSTER_SCHED_POLICY', 'RS_CLUSTER_STICKY_KEY', 'RS_CLUSTER_METRICS']) delete base[k];
  const child = tracker.spawnTracked(process.execPath, args, {
    cwd,
    env: { ...base, PORT: `${port}`, WORKERS: `${workers}`, BENCH_PARENT_PID: `${process.pid}`, ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  }, `app(${path.basename(script)})`, { tree: true });
  const app = { pid: child.pid, port, workers: new Map(), events: [], stderr: '', child, listeners: new Set() };
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d) => { app.stderr = (app.stderr + d).slice(-4000); });
  readline.createInterface({ input: child.stdout }).on('line', (line) => {
    let ev;
    try {
      ev = JSON.parse(line.replace(/^@@routing /, ''));
    } catch {
      return;
    }
    ev.ev ??= ev.event;
    app.events.push(ev);
    if (ev.ev === 'listening') app.workers.set(ev.id, ev.child);
    for (const l of [...app.listeners]) l(ev);
  });
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  app.waitFor = (pred, ms, what) => new Promise((resolve, reject) => {
    const found = app.events.find(pred);
    if (found) return resolve(found);
    const done = (fn, v) => { app.listeners.delete(on); clearTimeout(timer); fn(v); };
    const on = (ev) => { if (pred(ev)) done(resolve, ev); };
    const timer = setTimeout(() => done(reject, new Error(`${what}: not within ${ms} ms; stderr: ${app.stderr}`)), ms);
    app.listeners.add(on);
    exited.then(({ code, signal }) => done(reject, new Error(`app exited (${code ?? signal}): ${app.stderr}`)));
  });
  app.stop = async () => {
    tracker.killPids([child.pid]);
    await Promise.race([exited, sleep(3000)]);
  };
  try {
    await app.waitFor(() => app.workers.size >= workers, 30000, `${workers} workers listening`);
  } catch (err) {
    await app.stop();
    throw err;
  }
  return app;
}

// Runs a node script to completion (bounded), resolves with its last JSON line.
function runJson(args, { env = {}, cwd = ROOT, timeoutMs }) {
  return new Promise((resolve, reject) => {
    const child = tracker.spawnTracked(process.execPath, args, { cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] }, path.basename(args[0]));
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr = (stderr + d).slice(-2000); });
    const timer = setTimeout(() => tracker.killPids([child.pid]), timeoutMs);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      try {
        resolve(JSON.parse(stdout.trim().split('\n').pop()));
      } catch {
        reject(new Error(`${path.basename(args[0])} failed (${code ?? signal}): ${stderr}`));
      }
    });
  });
}

// GET /stats of the primary's metrics endpoint.
function getJson(port, p) {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: p, agent: false }, (res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve(JSON.parse(body)));
    }).on('error', reject);
  });
}

const spreadOf = (values) => {
  const v = values.filter((x) => typeof x === 'number' && Number.isFinite(x));
  return v.length ? { median: median(v), min: Math.min(...v), max: Math.max(...v) } : null;
};
// Infinity when a worker got nothing (JSON: null).
const maxMin = (counts) => (counts.length > 1 ? Math.max(...counts) / Math.min(...counts) : null);
const f = (v, d = 0) => (v == null ? '–' : v === Infinity ? '∞' : Number(v).toFixed(d));
const fs3 = (s, d = 0) => (s == null ? '–' : `${f(s.median, d)} (${f(s.min, d)}–${f(s.max, d)})`);

// --- socket.io: examples/socket.io with 4 workers, long-polling clients -----

const SIO_CASES = [
  { name: 'sticky ip, own addresses', policy: 'sticky', clientEnv: { ADDRESSES: '1' }, target: 0 },
  { name: 'sticky ip, one address', policy: 'sticky', clientEnv: {} },
  { name: 'rr (node:cluster\'s behaviour)', policy: 'rr', clientEnv: { ADDRESSES: '1' } },
  { name: 'proxy, header:x-forwarded-for', policy: 'sticky', key: 'header:x-forwarded-for', clientEnv: { PROXY: '1' }, target: 0 },
  { name: 'proxy, query:sid', policy: 'sticky', key: 'query:sid', clientEnv: { PROXY: '1' }, target: 0 },
  { name: 'query:sid, own addresses', policy: 'sticky', key: 'query:sid', clientEnv: { ADDRESSES: '1' }, target: 0 },
];

async function socketioRun(opts, c) {
  const env = { NODE_CLUSTER_SCHED_POLICY: c.policy, ...(c.key ? { RS_CLUSTER_STICKY_KEY: c.key } : {}) };
  const app = await startApp({ script: path.join(SIO, 'server.js'), env, workers: 4, cwd: SIO });
  try {
    const r = await runJson([path.join(SIO, 'clients.js'), `${app.port}`, `${opts.clients}`, `${opts.messages}`],
      { env: c.clientEnv, cwd: SIO, timeoutMs: 90000 });
    const perWorker = [...app.workers.keys()].map((id) => r.workers[id] || 0);
    return { failedClients: r.failedClients, ok: r.ok, errors: r.errors, perWorker, workersUsed: perWorker.filter((n) => n > 0).length, ms: r.ms };
  } finally {
    await app.stop();
  }
}

// --- busy workers: 95% fast, 5% slow requests, a connection per request -----

const BUSY_CASES = [
  { name: 'rs rr', impl: 'rs', policy: 'rr' },
  { name: 'rs least', impl: 'rs', policy: 'least' },
  { name: 'node none', impl: 'node', policy: 'none' },
  { name: 'rs random', impl: 'rs', policy: 'random' },
];
const FAST = '/work?ms=0.1';
const SLOW = '/work?ms=20';

async function busyRun(opts, c) {
  const app = await startApp({ script: APP, impl: c.impl, env: { NODE_CLUSTER_SCHED_POLICY: c.policy }, workers: 2 });
  try {
    const primary = await app.waitFor((e) => e.ev === 'primary', 5000, 'primary');
    const want = { rr: 2, none: 1, least: 101, random: 103 }[c.policy];
    if (primary.impl !== c.impl || primary.policy !== want) throw new Error(`asked for ${c.impl}/${c.policy}, runs ${primary.impl}/${primary.policy}`);
    const base = { port: app.port, connections: 32, keepAlive: false, mix: [[FAST, 95], [SLOW, 5]], overMs: 10, slowMs: 1500, graceS: 15 };
    await loaders.nodeLoader.run({ ...base, duration: 1 });
    const pids = [app.pid, ...app.workers.values()];
    const cpu = () => pids.reduce((a, p) => a + (procs.cpuSeconds(p) || 0), 0);
    const cpu0 = cpu();
    const r = await loaders.nodeLoader.run({ ...base, duration: opts.busyDuration });
    const fast = r.byPath[FAST];
    const slow = r.byPath[SLOW];
    return {
      rps: r.requests / r.seconds, fastP50: fast.p50, fastP99: fast.p99, slowP99: slow.p99,
      fastOver10: fast.over / Math.max(1, fast.requests), errors: r.errors,
      serverCores: (cpu() - cpu0) / r.seconds, clientCores: r.raw.cpuSeconds / (r.seconds + 0.2),
    };
  } finally {
    await app.stop();
  }
}

// --- long-lived connections: WebSockets opened in bursts while others close -

// `overlap`: the closes run during the burst, so least places it on counts
// that still hold connections about to close; else they end before it.
const WS_CASES = [
  { name: 'rs rr', policy: 'rr' },
  { name: 'rs least', policy: 'least' },
  { name: 'rs least, closes during bursts', policy: 'least', overlap: true },
  { name: 'rs random', policy: 'random' },
];
const WS_WORKERS = 4;

async function wsRun(opts, c) {
  const app = await startApp({ script: APP, env: { NODE_CLUSTER_SCHED_POLICY: c.policy }, workers: WS_WORKERS });
  const open = [];
  try {
    // Seeded, so both policies see the same opens and closes.
    let seed = 12345;
    const rand = () => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed / 0x80000000;
    };
    const connect = () => new Promise((resolve, reject) => {
      const ws = new WebSocket(`ws://127.0.0.1:${app.port}/`);
      ws.once('open', () => resolve(ws));
      ws.once('error', reject);
    });
    let opened = 0;
    let closed = 0;
    while (open.length < opts.wsConnections) {
      // A burst of 50 opens while a fifth of those open (at most 25) close, at once.
      const victims = [];
      for (let i = Math.min(25, Math.floor(open.length / 5)); i > 0; i--) victims.push(...open.splice(Math.floor(rand() * open.length), 1));
      const burst = Math.min(50, opts.wsConnections - open.length);
      const closing = victims.map((ws) => new Promise((r) => { ws.once('close', r); ws.close(); }));
      if (!c.overlap) await Promise.all(closing);
      const news = await Promise.all(Array.from({ length: burst }, connect));
      await Promise.all(closing);
      open.push(...news);
      opened += burst;
      closed += victims.length;
    }
    await sleep(300); // closes reach the workers
    const counts = await new Promise((resolve, reject) => {
      const got = new Map();
      const on = (ev) => {
        if (ev.ev !== 'live') return;
        got.set(ev.id, ev.n);
        if (got.size === app.workers.size) {
          app.listeners.delete(on);
          resolve([...got.values()]);
        }
      };
      app.listeners.add(on);
      for (const pid of app.workers.values()) process.kill(pid, 'SIGUSR2');
      setTimeout(() => reject(new Error('live counts: a worker did not answer')), 5000);
    });
    return { perWorker: counts, live: counts.reduce((a, b) => a + b, 0), maxMin: maxMin(counts), opened, closed };
  } finally {
    for (const ws of open) ws.terminate();
    await app.stop();
  }
}

// --- cost: Connection: close hello world, wrk -------------------------------

const COST_CASES = [
  { name: 'rr', env: { NODE_CLUSTER_SCHED_POLICY: 'rr' } },
  { name: 'least', env: { NODE_CLUSTER_SCHED_POLICY: 'least' } },
  { name: 'sticky ip', env: { NODE_CLUSTER_SCHED_POLICY: 'sticky' } },
  { name: 'sticky header:x-session', env: { NODE_CLUSTER_SCHED_POLICY: 'sticky', RS_CLUSTER_STICKY_KEY: 'header:x-session' }, script: SESSIONS_LUA },
  // wrk connects from 127.0.0.1 alone, which sticky-by-ip sends to one
  // worker; the Node load loop can connect from 256 addresses (slower, so
  // it compares these two with each other only).
  { name: 'rr, 256 addresses (node loop)', env: { NODE_CLUSTER_SCHED_POLICY: 'rr' }, addresses: 256 },
  { name: 'sticky ip, 256 addresses (node loop)', env: { NODE_CLUSTER_SCHED_POLICY: 'sticky' }, addresses: 256 },
];

async function costRun(opts, c, wrk) {
  const metricsPort = await freePort();
  const app = await startApp({ script: APP, env: { ...c.env, RS_CLUSTER_METRICS: `127.0.0.1:${metricsPort}` }, workers: 2 });
  try {
    const gen = c.addresses ? loaders.nodeLoader : wrk;
    const base = { port: app.port, connections: 64, threads: 1, keepAlive: false, graceS: 15, script: c.script, addresses: c.addresses };
    await gen.run({ ...base, duration: 1 });
    const accepted = async () => (await getJson(metricsPort, '/stats')).workers.map((w) => w.accepted);
    const a0 = await accepted();
    const p0 = procs.cpuSeconds(app.pid);
    const r = await gen.run({ ...base, duration: opts.costDuration });
    const p1 = procs.cpuSeconds(app.pid);
    const perWorker = (await accepted()).map((n, i) => n - a0[i]);
    const conns = perWorker.reduce((a, b) => a + b, 0);
    return {
      rps: r.requests / r.seconds, p99: r.latencyMs.p99, errors: r.errors, perWorker, maxMin: maxMin(perWorker),
      primaryUsPerConn: conns > 0 ? ((p1 - p0) * 1e6) / conns : null,
    };
  } finally {
    await app.stop();
  }
}

// --- remapping: sticky keys across a reload and an added worker -------------

// One Connection: close request per key, `parallel` at a time; key -> worker id.
async function owners(port, keys, parallel = 16) {
  const out = new Map();
  let next = 0;
  const one = (key) => new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/', agent: false, headers: { 'x-session': key } }, (res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve(+body));
    });
    req.setTimeout(10000, () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
  await Promise.all(Array.from({ length: parallel }, async () => {
    while (next < keys.length) {
      const key = keys[next++];
      out.set(key, await one(key));
    }
  }));
  return out;
}

async function remapRun(opts) {
  const workers = 8;
  const app = await startApp({
    script: APP, workers,
    env: { NODE_CLUSTER_SCHED_POLICY: 'sticky', RS_CLUSTER_STICKY_KEY: 'header:x-session', ROUTING_APP_CONTROL: '1' },
  });
  try {
    const keys = Array.from({ length: opts.remapKeys }, (_, i) => `user-${i}`);
    const before = await owners(app.port, keys);
    // A rolling reload: every worker replaced by a successor that inherits its keys.
    app.child.stdin.write('reload\n');
    await app.waitFor((e) => e.ev === 'reloaded', 60000, 'reload');
    const successor = new Map(app.events.filter((e) => e.ev === 'restart').map((e) => [e.previous, e.id]));
    const afterReload = await owners(app.port, keys);
    const movedReload = keys.filter((k) => afterReload.get(k) !== successor.get(before.get(k))).length;
    // A ninth worker: known keys stay; new ones take it as one of nine.
    app.child.stdin.write('fork\n');
    await app.waitFor(() => app.workers.size >= 2 * workers + 1, 30000, 'a ninth worker');
    const ninth = Math.max(...app.workers.keys());
    const afterAdd = await owners(app.port, keys);
    const movedAdd = keys.filter((k) => afterAdd.get(k) !== afterReload.get(k)).length;
    const fresh = await owners(app.port, keys.map((k) => `new-${k}`));
    const toNinth = [...fresh.values()].filter((id) => id === ninth).length;
    return {
      keys: keys.length, movedReload: movedReload / keys.length, movedAdd: movedAdd / keys.length,
      freshToNew: toNinth / keys.length, workersBefore: new Set(before.values()).size,
    };
  } finally {
    await app.stop();
  }
}

// --- the run ---------------------------------------------------------------

const HELP = `usage: npm run bench:routing -- [options]
  --rounds N          rounds; the cases' order rotates each round (default 3)
  --scenarios LIST    ${SCENARIOS.join(',')} (default all)
  --clients N         socket.io clients (default 200), --messages N each (default 20)
  --busy-duration S   seconds of mixed load per busy-workers run (default 10)
  --ws N              WebSocket connections to end with (default 400)
  --cost-duration S   seconds of wrk per cost run (default 5)
  --remap-keys N      sticky keys in the remapping check (default 2000)
  --out DIR           where the JSON goes (default bench/results)`;
const USAGE = 'usage: npm run bench:routing -- [options]   (--help lists them)';

function options() {
  const str = { type: 'string' };
  const { values: o, fail, number } = parseCli({
    name: 'routing bench', usage: USAGE, help: HELP,
    options: { rounds: str, scenarios: str, clients: str, messages: str, 'busy-duration': str, ws: str, 'cost-duration': str, 'remap-keys': str, out: str },
  });
  const num = (k, def, min, whole = true) => number(k, { def, min, whole });
  const scenarios = (o.scenarios ?? SCENARIOS.join(',')).split(',').map((s) => s.trim()).filter(Boolean);
  const unknown = scenarios.filter((s) => !SCENARIOS.includes(s));
  if (unknown.length || scenarios.length === 0) fail(`--scenarios takes ${SCENARIOS.join(', ')}, not '${o.scenarios}'`);
  return {
    rounds: num('rounds', 3, 1), scenarios, clients: num('clients', 200, 1), messages: num('messages', 20, 1),
    busyDuration: num('busy-duration', 10, 1, false), wsConnections: num('ws', 400, 10), costDuration: num('cost-duration', 5, 1),
    remapKeys: num('remap-keys', 2000, 100), out: path.resolve(o.out ?? path.join(__dirname, 'results')),
  };
}

// Runs every case once per round, the order rotated each round so that a
// slow spell of the machine does not always land on the same case.
async function rounds(opts, scenario, cases, run) {
  const results = cases.map(() => []);
  for (let round = 0; round < opts.rounds; round++) {
    for (let j = 0; j < cases.length; j++) {
      const i = (j + round) % cases.length;
      let r;
      try {
        r = await run(cases[i]);
      } catch (err) {
        r = { failed: String(err && err.message ? err.message : err) };
      }
      r.round = round + 1;
      results[i].push(r);
      log(`[${scenario} ${round + 1}/${opts.rounds}] ${cases[i].name.padEnd(30)} ${r.failed ? `FAILED: ${r.failed}` : JSON.stringify(r)}`);
    }
  }
  return results;
}

// Per-round ratios of case a to case b for `key`, and the ratio of medians.
function ratio(resA, resB, key) {
  const per = resA.map((a, i) => (a[key] != null && resB[i] && resB[i][key] ? a[key] / resB[i][key] : null)).filter((x) => x != null);
  const ma = median(resA.map((r) => r[key]));
  const mb = median(resB.map((r) => r[key]));
  return { median: ma != null && mb ? ma / mb : null, min: per.length ? Math.min(...per) : null, max: per.length ? Math.max(...per) : null };
}
const fr = (r) => (r && r.median != null ? `${r.median.toFixed(2)}× (${r.min.toFixed(2)}–${r.max.toFixed(2)}×)` : '–');
const col = (res, key) => spreadOf(res.map((r) => r[key]));

async function main() {
  const opts = options();
  tracker.installCleanup();
  const started = new Date();
  log(`routing bench: ${opts.rounds} round(s), ${opts.scenarios.join(', ')}; node ${process.version}, ${os.cpus().length} CPUs, load ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  const result = { version: 1, startedAt: started.toISOString(), options: opts, env: { node: process.version, cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model }, scenarios: {}, targets: [] };
  const lines = [];
  const target = (name, pass, measured) => {
    result.targets.push({ name, pass, measured });
    lines.push(`  ${pass === null ? 'n/a ' : pass ? 'PASS' : 'FAIL'}  ${name}: ${measured}`);
  };
  const tables = [];

  if (opts.scenarios.includes('socketio')) {
    const res = await rounds(opts, 'socketio', SIO_CASES, (c) => socketioRun(opts, c));
    result.scenarios.socketio = SIO_CASES.map((c, i) => ({ ...c, runs: res[i] }));
    const rows = SIO_CASES.map((c, i) => {
      const ok = res[i].filter((r) => !r.failed);
      const last = ok[ok.length - 1];
      return `| ${c.name} | ${fs3(col(ok, 'failedClients'))} | ${fs3(col(ok, 'ok'))} | ${last ? last.perWorker.join(' / ') : '–'} | ${fs3(col(ok, 'ms'))} |`;
    });
    tables.push([`socket.io (examples/socket.io, 4 workers, ${opts.clients} long-polling clients × ${opts.messages} messages)`,
      '| case | failed clients | messages answered | messages per worker (last round) | ms |', '| --- | --- | --- | --- | --- |', ...rows].join('\n'));
    SIO_CASES.forEach((c, i) => {
      if (c.target === undefined) return;
      const worst = res[i].some((r) => r.failed) ? null : Math.max(...res[i].map((r) => r.failedClients));
      target(`socket.io ${c.name}: failed clients, worst round = 0`, worst === 0, worst ?? 'a run failed');
    });
  }

  if (opts.scenarios.includes('busy')) {
    const res = await rounds(opts, 'busy', BUSY_CASES, (c) => busyRun(opts, c));
    result.scenarios.busy = BUSY_CASES.map((c, i) => ({ ...c, runs: res[i] }));
    const ok = res.map((r) => r.filter((x) => !x.failed));
    const rows = BUSY_CASES.map((c, i) => `| ${c.name} | ${fs3(col(ok[i], 'rps'))} | ${fs3(col(ok[i], 'fastP50'), 2)} | ${fs3(col(ok[i], 'fastP99'), 1)} | ${fs3(col(ok[i], 'slowP99'), 1)} | ${fs3(spreadOf(ok[i].map((r) => r.fastOver10 * 100)), 1)} | ${fs3(col(ok[i], 'errors'))} | ${fs3(col(ok[i], 'serverCores'), 2)} / ${fs3(col(ok[i], 'clientCores'), 2)} |`);
    const p99 = ratio(res[1], res[0], 'fastP99');
    const rps = ratio(res[1], res[0], 'rps');
    const none = ratio(res[2], res[0], 'fastP99');
    const noneRps = ratio(res[2], res[0], 'rps');
    const random = ratio(res[3], res[0], 'fastP99');
    tables.push([`busy workers (2 workers, 32 clients, a connection per request, 95% ${FAST} / 5% ${SLOW}, ${opts.busyDuration} s)`,
      '| policy | req/s | fast p50 ms | fast p99 ms | slow p99 ms | fast > 10 ms, % | errors | server / client cores |', '| --- | --- | --- | --- | --- | --- | --- | --- |', ...rows,
      `least / rr: fast p99 ${fr(p99)}, req/s ${fr(rps)}; random / rr: fast p99 ${fr(random)}; node:cluster SCHED_NONE / rs rr: fast p99 ${fr(none)}, req/s ${fr(noneRps)}`].join('\n'));
    result.scenarios.busyRatios = { leastP99: p99, leastRps: rps, randomP99: random, noneP99: none, noneRps };
    target('busy: fast p99, least ≤ 0.75× rr', p99.median != null ? p99.median <= 0.75 : null, fr(p99));
    target('busy: req/s, least ≥ 0.95× rr', rps.median != null ? rps.median >= 0.95 : null, fr(rps));
    const errs = ok[1].length === res[1].length ? Math.max(...ok[1].map((r) => r.errors)) : null;
    target('busy: failed requests with least, worst round = 0', errs === 0, errs ?? 'a run failed');
  }

  if (opts.scenarios.includes('ws')) {
    const res = await rounds(opts, 'ws', WS_CASES, (c) => wsRun(opts, c));
    result.scenarios.ws = WS_CASES.map((c, i) => ({ ...c, runs: res[i] }));
    const rows = WS_CASES.map((c, i) => {
      const ok = res[i].filter((r) => !r.failed);
      return `| ${c.name} | ${fs3(col(ok, 'maxMin'), 2)} | ${ok.map((r) => r.perWorker.join('/')).join(', ')} |`;
    });
    tables.push([`long-lived connections (${WS_WORKERS} workers, ${opts.wsConnections} WebSockets opened in bursts of 50; before each, up to 25 of those open close)`,
      '| policy | live per worker max/min | live per worker, each round |', '| --- | --- | --- |', ...rows].join('\n'));
    const worst = res[1].some((r) => r.failed) ? null : Math.max(...res[1].map((r) => r.maxMin));
    target('ws: live connections per worker max/min with least, worst round ≤ 1.1', worst != null ? worst <= 1.1 : false, worst == null ? 'a run failed' : worst.toFixed(3));
  }

  if (opts.scenarios.includes('cost')) {
    const wrk = loaders.pick('wrk', { install: false, log });
    const res = await rounds(opts, 'cost', COST_CASES, (c) => costRun(opts, c, wrk));
    result.scenarios.cost = COST_CASES.map((c, i) => ({ ...c, runs: res[i] }));
    const rows = COST_CASES.map((c, i) => {
      const ok = res[i].filter((r) => !r.failed);
      const vs = c.addresses ? COST_CASES.findIndex((x) => x.addresses) : 0;
      return `| ${c.name} | ${fs3(col(ok, 'rps'))} | ${i === vs ? '1' : fr(ratio(res[i], res[vs], 'rps'))} | ${fs3(col(ok, 'p99'), 1)} | ${fs3(col(ok, 'primaryUsPerConn'), 1)} | ${fs3(col(ok, 'maxMin'), 2)} | ${fs3(col(ok, 'errors'))} |`;
    });
    tables.push([`cost (rs-cluster, 2 workers, wrk 64 connections, Connection: close, hello world, ${opts.costDuration} s)`,
      '| policy | req/s | / rr | p99 ms | primary CPU µs/connection | connections per worker max/min | errors |', '| --- | --- | --- | --- | --- | --- | --- |', ...rows].join('\n'));
    const goals = [[1, 0, 0.95], [5, 4, 0.95], [3, 0, 0.85]];
    for (const [i, vs, min] of goals) {
      const r = ratio(res[i], res[vs], 'rps');
      target(`cost: req/s, ${COST_CASES[i].name} ≥ ${min}× ${COST_CASES[vs].name}`, r.median != null ? r.median >= min : null, fr(r));
    }
  }

  if (opts.scenarios.includes('remap')) {
    let r;
    try {
      r = await remapRun(opts);
    } catch (err) {
      r = { failed: String(err && err.message ? err.message : err) };
    }
    log(`[remap] ${JSON.stringify(r)}`);
    result.scenarios.remap = r;
    const pct = (x) => `${(x * 100).toFixed(2)}%`;
    tables.push(['remapping (8 workers, sticky by header, real processes)',
      r.failed ? `FAILED: ${r.failed}` : [
        `${r.keys} keys on ${r.workersBefore} workers; after a rolling reload, keys not on their worker's successor: ${pct(r.movedReload)}`,
        `a ninth worker forked: known keys moved ${pct(r.movedAdd)}; ${r.keys} new keys, share placed on the new worker ${pct(r.freshToNew)} (1/9 = 11.1%)`,
        'hashing alone (no memory of keys): crates/core/src/primary/schedule.rs tests assert replacing 1 of 8 moves none of the',
        'others\' 10,000 keys and adding a 9th moves ≤ 1/8 + 2% (cargo test replacing_a_worker / adding_a_worker)'].join('\n')].join('\n'));
    target('remap: keys moved by a rolling reload = 0', r.failed ? false : r.movedReload === 0, r.failed ? r.failed : pct(r.movedReload));
    target('remap: known keys moved by an added worker = 0', r.failed ? false : r.movedAdd === 0, r.failed ? r.failed : pct(r.movedAdd));
  }

  console.log('');
  console.log(`routing bench — ${opts.rounds} round(s); medians (min–max over rounds); ratios: of medians (per-round min–max)`);
  for (const t of tables) console.log(`\n${t}`);
  console.log('\ntargets:');
  console.log(lines.join('\n'));
  result.finishedAt = new Date().toISOString();
  fs.mkdirSync(opts.out, { recursive: true });
  const stamp = started.toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
  const file = path.join(opts.out, `routing-${stamp}.json`);
  fs.writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
  fs.copyFileSync(file, path.join(opts.out, 'routing-latest.json'));
  console.log(`\nwrote ${path.relative(process.cwd(), file)}`);
  if (result.targets.some((t) => t.pass === false)) process.exitCode = 1;
  tracker.killAll();
}

main().catch((err) => {
  log(`routing bench: ${err && err.stack ? err.stack : err}`);
  tracker.killAllAndExit(2);
});
