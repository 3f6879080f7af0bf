#!/usr/bin/env node
'use strict';
// Rolling reload under load: clients opening a new connection per request
// (and, in a second measurement, clients each keeping one keep-alive
// connection) at full speed while the cluster's workers are replaced several
// times; counts the requests that failed. Compares `rs-cluster` (SIGHUP) with
// `pm2 reload` on node:cluster (pm2 is installed on demand into a cache
// folder outside the project, never into it).
//
// Replacing the primary itself (--impls takeover,restart,pm2-kill): each
// "reload" is a new primary, the second one on another Node (Node 22, or 20
// when this is 22, from the test matrix's cache): `rs-cluster --takeover`;
// a plain restart of the command (SIGTERM, wait, start); pm2's way (`pm2
// kill`, `pm2 start` on the new Node).
//
//   node bench/reload.js [--duration 12] [--reloads 5] [--clients 8] [--workers 2]
//                        [--impls rs,pm2] [--modes close,keep-alive] [--no-install]
//   node bench/reload.js --impls takeover,restart,pm2-kill --reloads 3

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const net = require('node:net');
const { execFileSync, execFile } = require('node:child_process');
const tracker = require('./lib/tracker');
const { churn, freePort } = require('../scripts/lib/net');
const { parseCli } = require('../scripts/lib/cli');

const ROOT = path.resolve(__dirname, '..');
const APP = path.join(__dirname, 'single.js'); // the docs hello world, no cluster code
const BIN = path.join(ROOT, 'bin', 'rs-cluster.js');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (m) => process.stderr.write(`${m}\n`);

async function waitServing(port, timeoutMs = 15000) {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    const ok = await new Promise((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => { s.destroy(); resolve(true); });
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    await sleep(50);
  }
  throw new Error(`nothing listens on ${port} after ${timeoutMs} ms`);
}

// rs-cluster: the command, one SIGHUP per reload, each awaited in its log.
async function rsCluster(opts, port) {
  const child = tracker.spawnTracked(process.execPath, [BIN, '-w', `${opts.workers}`, APP],
                                   { env: { ...process.env, PORT: `${port}` }, stdio: ['ignore', 'ignore', 'pipe'] },
                                   'rs-cluster', { tree: true });
  let stderr = '';
  child.stderr.on('data', (d) => { stderr += d; });
  return {
    async reload(n) {
      child.kill('SIGHUP');
      const done = new RegExp(`(reload(ed in \\d+ ms| failed)[^]*){${n}}`);
      while (!done.test(stderr)) await sleep(20);
      if (/reload failed/.test(stderr)) throw new Error(stderr);
    },
    async stop() {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    },
  };
}

// pm2's own node:cluster mode (`-i N`), its daemon in a private PM2_HOME.
function pm2Bin(install) {
  const dir = path.join(process.env.RS_CLUSTER_BENCH_CACHE || path.join(os.homedir(), '.cache', 'rs-cluster-bench'), 'pm2');
  const bin = path.join(dir, 'node_modules', 'pm2', 'bin', 'pm2');
  if (!fs.existsSync(bin)) {
    if (!install) throw new Error('pm2 is not installed and --no-install was given');
    log(`installing pm2 into ${dir}`);
    fs.mkdirSync(dir, { recursive: true });
    execFileSync('npm', ['install', '--no-save', '--no-audit', '--no-fund', '--prefix', dir, 'pm2'], { stdio: 'ignore' });
  }
  return bin;
}

async function pm2(opts, port) {
  const bin = pm2Bin(opts.install);
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'rs-cluster-pm2-'));
  const env = { ...process.env, PM2_HOME: home, PORT: `${port}` };
  const run = (...args) => new Promise((resolve, reject) => {
    execFile(process.execPath, [bin, ...args], { env, timeout: 120000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`pm2 ${args.join(' ')}: ${err.message}\n${stderr}`));
      else resolve(stdout);
    });
  });
  const interpreter = opts.interpreter ? ['--interpreter', opts.interpreter] : [];
  await run('start', APP, '-i', `${opts.workers}`, '--name', 'bench', ...interpreter);
  // The daemon is not our child: kill its tree by pid if `pm2 kill` fails.
  const daemon = Number(fs.readFileSync(path.join(home, 'pm2.pid'), 'utf8'));
  tracker.track(daemon, 'pm2 daemon', { tree: true });
  return {
    reload: () => run('reload', 'bench'),
    async stop() {
      await run('kill').catch((err) => log(String(err.message)));
      tracker.killPids([daemon]);
      fs.rmSync(home, { recursive: true, force: true });
    },
  };
}

// The node for the i-th new primary: the other major for the second.
function nodeForStep(opts, i) {
  return i === 2 && opts.otherNode !== null ? opts.otherNode : process.execPath;
}

// `rs-cluster --control`, each "reload" a new primary with --takeover; done
// when the old one has exited. `restart`: SIGTERM, wait, start again.
function rsPrimaries(how) {
  return async (opts, port) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rs-cluster-takeover-'));
    const socket = path.join(dir, 'ctl.sock');
    const env = { ...process.env, PORT: `${port}` };
    const start = (node, extra) => {
      const child = tracker.spawnTracked(node, [BIN, '-w', `${opts.workers}`, ...extra, APP],
                                         { env, stdio: ['ignore', 'ignore', 'ignore'] }, 'rs-cluster', { tree: true });
      return child;
    };
    let current = start(process.execPath, ['--control', socket]);
    return {
      async reload(i) {
        const old = current;
        const gone = new Promise((r) => old.once('exit', r));
        if (how === 'takeover') {
          current = start(nodeForStep(opts, i), ['--takeover', socket]);
          await gone;
        } else {
          old.kill('SIGTERM');
          await gone;
          current = start(nodeForStep(opts, i), ['--control', socket]);
          await waitServing(port);
        }
      },
      async stop() {
        current.kill('SIGTERM');
        await new Promise((r) => current.once('exit', r));
        fs.rmSync(dir, { recursive: true, force: true });
      },
    };
  };
}

// pm2's way of moving to a new Node: kill the daemon and its apps, start again.
async function pm2Kill(opts, port) {
  let server = await pm2(opts, port);
  return {
    async reload(i) {
      await server.stop();
      server = await pm2({ ...opts, interpreter: nodeForStep(opts, i) }, port);
      await waitServing(port);
    },
    stop: () => server.stop(),
  };
}

const IMPLS = {
  rs: { label: 'rs-cluster (SIGHUP)', start: rsCluster },
  pm2: { label: 'pm2 reload', start: pm2 },
  takeover: { label: 'rs-cluster --takeover', start: rsPrimaries('takeover') },
  restart: { label: 'rs-cluster restart', start: rsPrimaries('restart') },
  'pm2-kill': { label: 'pm2 kill + start', start: pm2Kill },
};

const MODES = { close: 'a new connection per request', 'keep-alive': 'one keep-alive connection per client' };

async function measure(opts, impl, mode) {
  const port = await freePort();
  const server = await IMPLS[impl].start(opts, port);
  try {
    await waitServing(port);
    const load = churn(port, opts.clients, { keepAlive: mode === 'keep-alive' });
    const t0 = Date.now();
    const gap = (opts.duration * 1000) / (opts.reloads + 1);
    const reloadMs = [];
    for (let i = 1; i <= opts.reloads; i++) {
      await sleep(Math.max(0, t0 + gap * i - Date.now()));
      const r0 = Date.now();
      await server.reload(i);
      reloadMs.push(Date.now() - r0);
    }
    await sleep(Math.max(0, t0 + opts.duration * 1000 - Date.now()));
    const result = await load.stop();
    const wall = (Date.now() - t0) / 1000;
    return { impl, mode, ...result, rps: result.ok / wall, reloadMs };
  } finally {
    await server.stop();
  }
}

const USAGE = 'usage: node bench/reload.js [--duration 12] [--reloads 5] [--clients 8] [--workers 2] [--impls rs,pm2] [--modes close,keep-alive] [--no-install]';

async function main() {
  const { values, fail, number } = parseCli({
    name: 'reload bench',
    usage: USAGE,
    help: USAGE,
    options: {
      duration: { type: 'string' },
      reloads: { type: 'string' },
      clients: { type: 'string' },
      workers: { type: 'string' },
      impls: { type: 'string', default: 'rs,pm2' },
      modes: { type: 'string', default: 'close,keep-alive' },
      'no-install': { type: 'boolean', default: false },
    },
  });
  const opts = {
    duration: number('duration', { def: 12, min: 1, whole: false }), reloads: number('reloads', { def: 5 }),
    clients: number('clients', { def: 8 }), workers: number('workers', { def: 2 }), install: !values['no-install'],
    otherNode: null,
  };
  const impls = values.impls.split(',');
  if (impls.some((i) => !IMPLS[i])) fail(`--impls takes ${Object.keys(IMPLS).join(', ')}, not '${values.impls}'`);
  const modes = values.modes.split(',');
  if (modes.some((m) => !MODES[m])) fail(`--modes takes ${Object.keys(MODES).join(', ')}, not '${values.modes}'`);
  tracker.installCleanup();
  if (impls.some((i) => ['takeover', 'restart', 'pm2-kill'].includes(i))) {
    const other = process.version.startsWith('v22.') ? 20 : 22;
    opts.otherNode = opts.install ? (await require('../scripts/lib/nodes').nodeFor(other, { log })).bin
      : require('../scripts/lib/nodes').cachedNode(other);
    log(`the second new primary runs ${opts.otherNode ?? `this Node (no Node ${other} here, --no-install)`}`);
  }
  log(`reload bench: ${opts.clients} clients, ${opts.duration} s, ${opts.reloads} reloads of ${opts.workers} workers`);
  const rows = [];
  for (const mode of modes) {
    log(`${mode}: ${MODES[mode]}`);
    for (const impl of impls) {
      const r = await measure(opts, impl, mode);
      rows.push(r);
      const errors = [...r.errors].map(([k, v]) => `${k} ${v}`).join(', ') || '-';
      log(`  ${IMPLS[impl].label.padEnd(20)} ${String(r.ok).padStart(7)} ok  ${String(r.failures).padStart(5)} failed  ` +
          `${r.rps.toFixed(0).padStart(6)} req/s  reload ${r.reloadMs.join('/')} ms  errors: ${errors}`);
    }
  }
  process.stdout.write(`${JSON.stringify(rows.map((r) => ({ ...r, errors: Object.fromEntries(r.errors), bodies: undefined })))}\n`);
}

main().catch((err) => {
  log(err.stack);
  tracker.killAllAndExit(1);
});
