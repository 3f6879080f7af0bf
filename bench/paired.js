#!/usr/bin/env node
'use strict';
// CPU per request in paired rounds: rs-cluster's round-robin and
// node:cluster's SCHED_NONE (or any two of rs/node × rr/none) run side by
// side, both warm, and wrk switches between them every few seconds, so a
// slow spell of the machine hits both. Each round gives a ratio; the median
// of the ratios is steadier than a ratio of two runs minutes apart. The
// primary's CPU is shown apart from the workers'. A side may be rs-cluster
// from another checkout (`rs:rr@../old`, built there): two versions of
// rs-cluster, paired. With --syscalls, each side's system calls per request
// are counted afterwards, in a window of their own (tracing costs CPU).
//
// A side may also open the metrics endpoint (`rs:rr+metrics`: nobody
// reads it), with the status page open in headless Chromium (`+page`), or
// with /stats read every second over one keep-alive connection, as the page
// does, by the bench itself (`+poll`): what a page open costs the primary.
//
//   node bench/paired.js [--a rs:rr] [--b node:none] [--rounds 10] [--duration 3] [--syscalls]

const path = require('node:path');
const http = require('node:http');
const tracker = require('./lib/tracker');
const syscalls = require('./lib/syscalls');
const loaders = require('./lib/loaders');
const procs = require('../scripts/lib/procs');
const { freePort } = require('../scripts/lib/net');
const { parseCli } = require('../scripts/lib/cli');

const ROOT = path.resolve(__dirname, '..');
const APP = path.join(__dirname, 'app.js');
const USAGE = 'usage: npm run bench:paired -- [--a rs:rr] [--b node:none] [--rounds N] [--duration S] [--connections N] [--syscalls]';
const WATCHERS = ['metrics', 'page', 'poll'];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const median = (v) => {
  const s = [...v].sort((x, y) => x - y);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

const { values, fail, number } = parseCli({
  name: 'bench:paired',
  usage: USAGE,
  help: `${USAGE}\n  --a, --b        impl:policy[:placement][@checkout][+watch], impl rs or node, policy rr or none (default\n` +
    '                  rs:rr, node:none); placement kernel or primary (rs); @checkout: rs-cluster as built in that\n' +
    '                  directory; +metrics: the metrics endpoint on, +page: and the status page open in Chromium,\n' +
    '                  +poll: and /stats read every second (rs)\n' +
    '  --rounds N      paired rounds (default 10)\n  --duration S    seconds of wrk per side and round (default 3)\n' +
    '  --connections N wrk connections (default 64)\n  --syscalls      then count each side\'s system calls per request (perf)',
  options: {
    a: { type: 'string', default: 'rs:rr' },
    b: { type: 'string', default: 'node:none' },
    rounds: { type: 'string' },
    duration: { type: 'string' },
    connections: { type: 'string' },
    syscalls: { type: 'boolean', default: false },
  },
});
const side = (spec) => {
  const [base, watch] = spec.split('+');
  if (watch !== undefined && (!WATCHERS.includes(watch) || !base.startsWith('rs:'))) fail(`+${watch}: an rs side's +metrics, +page or +poll`);
  const [triple, checkout] = base.split('@');
  const [impl, policy, placement] = triple.split(':');
  if (!['rs', 'node'].includes(impl) || !['rr', 'none'].includes(policy)) fail(`not impl:policy[:placement][@checkout]: ${spec}`);
  if ((checkout !== undefined || placement !== undefined) && impl !== 'rs') fail(`only an rs side has a checkout or a placement: ${spec}`);
  if (placement !== undefined && !['kernel', 'primary'].includes(placement)) fail(`placement kernel or primary: ${spec}`);
  const root = checkout === undefined ? ROOT : path.resolve(checkout);
  return { impl, policy, placement, watch, name: spec, register: path.join(root, 'js', 'register.js') };
};
const sides = [side(values.a), side(values.b)];
const rounds = number('rounds', { def: 10 });
const duration = number('duration', { def: 3 });
const connections = number('connections', { def: 64 });

let wrk = null; // picked in main()

// Requests wrk completed in `seconds` of Connection: close load.
async function load(port, seconds) {
  const r = await wrk.run({ port, connections, threads: 1, duration: seconds, keepAlive: false, graceS: 15 });
  return r.requests;
}

let browser = null; // Chromium, for the +page sides

// Starts what watches side `s`'s metrics endpoint, as asked.
async function watch(s) {
  if (s.watch === 'page') {
    browser ??= await require('../scripts/lib/chromium').launch();
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    await page.goto(`http://127.0.0.1:${s.metricsPort}/`);
    await page.waitForSelector('#conn[data-state="live"]', { timeout: 10000 });
  } else if (s.watch === 'poll') {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    setInterval(() => {
      http.get({ host: '127.0.0.1', port: s.metricsPort, path: '/stats', agent, timeout: 2000 }, (res) => res.resume())
        .on('error', () => {});
    }, 1000).unref();
  }
}

async function start(s) {
  s.port = await freePort();
  s.metricsPort = s.watch === undefined ? undefined : await freePort();
  const args = s.impl === 'rs' ? ['-r', s.register, APP] : [APP];
  s.child = tracker.spawnTracked(process.execPath, args, {
    env: { ...process.env, NODE_CLUSTER_SCHED_POLICY: s.policy, RS_CLUSTER_PLACEMENT: s.placement, WORKERS: '2', PORT: `${s.port}`,
           RS_CLUSTER_METRICS: s.metricsPort && `127.0.0.1:${s.metricsPort}` },
    stdio: 'ignore',
  }, s.name, { tree: true });
  const until = Date.now() + 15000;
  while (procs.descendants(s.child.pid).length < 2) {
    if (Date.now() > until) throw new Error(`${s.name}: workers did not start`);
    await sleep(50);
  }
  await sleep(500);
  await watch(s);
  await load(s.port, 2); // warm-up: JIT, caches
  s.total = [];
  s.primary = [];
  s.rps = [];
}

async function measure(s) {
  const pids = [s.child.pid, ...procs.descendants(s.child.pid)];
  const cpu = () => pids.reduce((t, p) => t + (procs.cpuSeconds(p) || 0), 0);
  const c0 = cpu();
  const p0 = procs.cpuSeconds(s.child.pid);
  const t0 = process.hrtime.bigint();
  const n = await load(s.port, duration);
  s.rps.push(n / (Number(process.hrtime.bigint() - t0) / 1e9));
  s.total.push(((cpu() - c0) * 1e6) / n);
  s.primary.push(((procs.cpuSeconds(s.child.pid) - p0) * 1e6) / n);
}

// System calls per request of one side, over `duration` seconds of load.
async function countSyscalls(s, perf) {
  const pids = [s.child.pid, ...procs.descendants(s.child.pid)];
  const counter = syscalls.attach(pids, perf.breakdown.length > 0 ? perf.breakdown : []);
  await counter.enable();
  let n;
  try {
    n = await load(s.port, duration);
  } catch (err) {
    counter.abort();
    throw err;
  }
  const counted = await counter.finish();
  return { perRequest: counted.total / n, bySyscall: counted.bySyscall, requests: n };
}

async function main() {
  tracker.installCleanup();
  wrk = loaders.pick('wrk', { install: false, log: (line) => process.stderr.write(`${line}\n`) });
  for (const s of sides) await start(s);
  const ratios = [];
  const rpsRatios = [];
  const primaryRatios = [];
  for (let r = 0; r < rounds; r++) {
    for (const s of r % 2 === 0 ? sides : [...sides].reverse()) await measure(s);
    ratios.push(sides[0].total[r] / sides[1].total[r]);
    rpsRatios.push(sides[0].rps[r] / sides[1].rps[r]);
    primaryRatios.push(sides[0].primary[r] / sides[1].primary[r]);
    process.stderr.write(`[round ${r + 1}/${rounds}] ${sides.map((s) => `${s.name} ${s.total[r].toFixed(1)} µs/req`).join(', ')}\n`);
  }
  for (const s of sides) {
    const workers = s.total.map((t, i) => t - s.primary[i]);
    console.log(`${s.name.padEnd(10)} server CPU ${median(s.total).toFixed(1)} µs/req (primary ${median(s.primary).toFixed(1)}, ` +
                `workers ${median(workers).toFixed(1)})`);
  }
  console.log(`${sides[0].name} / ${sides[1].name}: CPU per request ${median(ratios).toFixed(3)}× (rounds ` +
              `${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)}×), req/s ${median(rpsRatios).toFixed(3)}× ` +
              `(rounds ${Math.min(...rpsRatios).toFixed(2)}–${Math.max(...rpsRatios).toFixed(2)}×), primary CPU per request ` +
              `${median(primaryRatios).toFixed(3)}× (rounds ${Math.min(...primaryRatios).toFixed(2)}–${Math.max(...primaryRatios).toFixed(2)}×)`);
  if (values.syscalls) {
    const perf = syscalls.probe();
    if (!perf.ok) throw new Error(`--syscalls: ${perf.note}`);
    for (const s of sides) {
      const c = await countSyscalls(s, perf);
      const top = c.bySyscall === null ? '' : ` = ${Object.entries(c.bySyscall).filter(([, v]) => v / c.requests >= 0.05)
        .sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${(v / c.requests).toFixed(2)}`).join(', ')}`;
      console.log(`${s.name.padEnd(10)} syscalls ${c.perRequest.toFixed(2)}/req${top}`);
    }
  }
  await browser?.close();
  tracker.killAll();
}

main().catch((err) => {
  console.error(err);
  tracker.killAllAndExit(1);
});
