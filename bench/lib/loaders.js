'use strict';
// Load generators, in order of preference: wrk, autocannon, then the bench's
// own Node load loop (bench/loadgen.js). Each `run()` takes the same
// options and resolves to the same shape:
//   { requests, seconds, errors, latencyMs: { p50, p99, max, mean }, raw }
// and is bounded in time: the generator is SIGKILLed (by pid) if it runs
// `graceS` past its duration.

const path = require('node:path');
const fs = require('node:fs');
const { spawnSync } = require('node:child_process');
const tracker = require('./tracker');

const ROOT = path.resolve(__dirname, '..', '..');
const LOADGEN = path.join(__dirname, '..', 'loadgen.js');
const WRK_LUA = path.join(__dirname, '..', 'wrk-report.lua');

function which(cmd) {
  for (const dir of (process.env.PATH || '').split(':')) {
    if (!dir) continue;
    const p = path.join(dir, cmd);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch {
      // Not here.
    }
  }
  return null;
}

function wrkVersion(bin) {
  const r = spawnSync(bin, ['-v'], { encoding: 'utf8', timeout: 5000 });
  const m = /wrk\s+(\S+)/.exec(`${r.stdout}${r.stderr}`);
  return m ? m[1] : 'unknown';
}

// Runs `cmd args`, tracked, collecting stdout; resolves { code, signal, stdout, stderr }.
function runBounded(cmd, args, { timeoutMs, env }) {
  return new Promise((resolve, reject) => {
    const child = tracker.spawnTracked(cmd, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, BENCH_PARENT_PID: `${process.pid}`, ...env },
    }, path.basename(cmd));
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr = (stderr + d).slice(-4000); });
    const timer = setTimeout(() => tracker.killPids([child.pid]), timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

const nodeLoader = {
  name: 'node',
  version: process.version,
  note: 'bench/loadgen.js (built-in Node load loop, one process)',
  async run(o) {
    const args = JSON.stringify({
      port: o.port,
      connections: o.connections,
      duration: o.duration,
      keepAlive: o.keepAlive,
      slowMs: o.slowMs,
      mix: o.mix,
      overMs: o.overMs,
      addresses: o.addresses,
    });
    const r = await runBounded(process.execPath, [LOADGEN, args], {
      timeoutMs: (o.duration + o.graceS) * 1000,
    });
    const line = r.stdout.trim().split('\n').pop();
    let j;
    try {
      j = JSON.parse(line);
    } catch {
      throw new Error(`loadgen failed (${r.code ?? r.signal}): ${r.stderr || r.stdout}`);
    }
    return {
      requests: j.requests,
      seconds: j.seconds,
      errors: j.errors + j.status,
      latencyMs: j.latencyMs,
      slow: j.slow,
      byPath: j.byPath,
      raw: j,
    };
  },
};

function makeWrk(bin) {
  return {
    name: 'wrk',
    version: wrkVersion(bin),
    note: `${bin} (latency percentiles are wrk's, corrected for coordinated omission)`,
    async run(o) {
      const args = [
        `-t${o.threads}`, `-c${Math.max(o.connections, o.threads)}`, `-d${Math.max(1, Math.round(o.duration))}s`,
        // `script`: one that makes its own requests (and reports as wrk-report.lua does).
        '--timeout', '10s', '-s', o.script || WRK_LUA,
      ];
      if (!o.keepAlive) args.push('-H', 'Connection: close');
      args.push(`http://127.0.0.1:${o.port}/`);
      const r = await runBounded(bin, args, { timeoutMs: (o.duration + o.graceS) * 1000 });
      const m = /^@@wrk (.*)$/m.exec(r.stdout);
      if (!m) throw new Error(`wrk failed (${r.code ?? r.signal}): ${r.stderr || r.stdout}`);
      const j = JSON.parse(m[1]);
      const e = j.errors;
      const us = (v) => v / 1000;
      return {
        requests: j.requests,
        seconds: j.duration_us / 1e6,
        errors: e.connect + e.read + e.write + e.status + e.timeout,
        latencyMs: {
          p50: us(j.latency_us.p50),
          p99: us(j.latency_us.p99),
          max: us(j.latency_us.max),
          mean: us(j.latency_us.mean),
        },
        raw: j,
      };
    },
  };
}

function makeAutocannon(cmd, prefixArgs, version) {
  return {
    name: 'autocannon',
    version,
    note: `${[cmd, ...prefixArgs].join(' ')}`,
    async run(o) {
      const args = [...prefixArgs, '-j', '-c', `${o.connections}`, '-d', `${Math.max(1, Math.round(o.duration))}`];
      if (!o.keepAlive) args.push('-H', 'Connection=close');
      args.push(`http://127.0.0.1:${o.port}/`);
      const r = await runBounded(cmd, args, { timeoutMs: (o.duration + o.graceS + 30) * 1000 });
      const line = r.stdout.trim().split('\n').filter((l) => l.startsWith('{')).pop();
      if (!line) throw new Error(`autocannon failed (${r.code ?? r.signal}): ${r.stderr}`);
      const j = JSON.parse(line);
      return {
        requests: j.requests.total,
        seconds: j.duration,
        errors: (j.errors || 0) + (j.timeouts || 0) + (j.non2xx || 0),
        latencyMs: { p50: j.latency.p50, p99: j.latency.p99, max: j.latency.max, mean: j.latency.average },
        raw: { requests: j.requests, latency: j.latency, errors: j.errors, timeouts: j.timeouts },
      };
    },
  };
}

function tryInstallWrk(log) {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0 || !which('apt-get')) return null;
  log('wrk not found: trying apt-get update && apt-get install -y wrk');
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const opts = { stdio: 'ignore', timeout: 180000, env };
  if (spawnSync('apt-get', ['update'], opts).status !== 0) return null;
  if (spawnSync('apt-get', ['install', '-y', 'wrk'], opts).status !== 0) return null;
  return which('wrk');
}

function findAutocannon(log, allowFetch) {
  try {
    const pkg = require.resolve('autocannon/package.json', { paths: [ROOT] });
    const bin = path.join(path.dirname(pkg), 'autocannon.js');
    const version = JSON.parse(fs.readFileSync(pkg, 'utf8')).version;
    return makeAutocannon(process.execPath, [bin], version);
  } catch {
    // Not installed locally.
  }
  if (!allowFetch || !which('npx')) return null;
  log('trying autocannon through npx (installs into npm\'s cache, not the project)');
  const r = spawnSync('npx', ['--yes', 'autocannon', '--version'], { encoding: 'utf8', timeout: 180000 });
  if (r.status !== 0) return null;
  const m = /autocannon v?(\S+)/.exec(r.stdout);
  return makeAutocannon('npx', ['--yes', 'autocannon'], m ? m[1] : 'unknown');
}

// Picks the load generator: `which` is auto|wrk|autocannon|node. With
// `install`, auto may apt-get wrk or fetch autocannon; without it (--quick,
// the smoke test) it uses wrk if present and the Node loop otherwise.
function pick(which_, { install, log }) {
  if (which_ === 'node') return nodeLoader;
  if (which_ === 'wrk' || which_ === 'auto') {
    let bin = which('wrk');
    if (!bin && install) bin = tryInstallWrk(log);
    if (bin) return makeWrk(bin);
    if (which_ === 'wrk') throw new Error('wrk is not installed (apt-get install -y wrk)');
    log(install ? 'wrk could not be installed' : 'wrk not found');
  }
  if (which_ === 'autocannon' || (which_ === 'auto' && install)) {
    const ac = findAutocannon(log, install || which_ === 'autocannon');
    if (ac) return ac;
    if (which_ === 'autocannon') throw new Error('autocannon is not available');
    log('autocannon not available');
  }
  log('falling back to the built-in Node load loop');
  return nodeLoader;
}

module.exports = { pick, nodeLoader };
