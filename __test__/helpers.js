'use strict';
// Shared test plumbing: start a fixture cluster (rs-cluster or node:cluster,
// chosen by CLUSTER_IMPL), read the JSON lines it prints, and kill every
// process it started by pid when the test ends.

const { spawn, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const http = require('node:http');
const readline = require('node:readline');
const { readStat, descendants } = require('../scripts/lib/procs');

const ROOT = path.resolve(__dirname, '..');
// The fallback pass (npm run test:fallback): RS_CLUSTER_NATIVE=0, so
// rs-cluster is node:cluster itself, with the additions that need no Rust.
const FALLBACK = process.env.RS_CLUSTER_NATIVE === '0';

// A test's `skip` for what only the native primary does: in the fallback
// pass, the reason; else false.
const nativeOnly = (why) => (FALLBACK ? `the native primary's: ${why}` : false);

// `stderr` as node:cluster would have written it: in the fallback pass,
// without the one warning that says rs-cluster runs as node:cluster.
function asNodeStderr(text) {
  return FALLBACK ? text.replace(/^\(node:\d+\) \[RS_CLUSTER_FALLBACK\].*\n(?:\(Use `node --trace-warnings.*\n)?/m, '') : text;
}
const FIXTURES = path.join(__dirname, 'fixtures');
const IMPLS = ['rs', 'node'];

// `ss` (iproute2) shows which process holds a socket, listen backlogs and
// TCP timers. Without it, tests leave those checks out.
const HAS_SS = (() => {
  try {
    execFileSync('ss', ['-V'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

// When `pid` started (clock ticks since boot), or null if it is gone: a pid
// the kernel has since given to another process has another start time.
function startTime(pid) {
  const stat = readStat(pid);
  return stat === null ? null : stat.starttime;
}

// Starts `node fixtures/<name>` with CLUSTER_IMPL=impl. Every JSON line the
// fixture prints is kept in `events`; any `pid`/`pids` field in them is
// remembered so `stop()` can kill stragglers by pid.
// `program`: run `name` as that program (not node), with `args`. `stdio`
// may give the child more fds from 3 on (a service manager's sockets).
function startCluster(name, { impl = 'rs', env = {}, args = [], execArgv = [], cwd = ROOT, stdio = undefined, program = false } = {}) {
  const file = path.isAbsolute(name) || program ? name : path.join(FIXTURES, name);
  const child = spawn(program ? file : process.execPath, program ? args : [...execArgv, file, ...args], {
    cwd,
    env: { ...process.env, CLUSTER_IMPL: impl, NODE_CLUSTER_SCHED_POLICY: undefined, ...env },
    stdio: stdio ?? ['ignore', 'pipe', 'pipe'],
  });
  const pids = new Set([child.pid]);
  // Start time of each pid when it was first seen, so stop() never kills a
  // process that later got a recycled pid.
  const born = new Map([[child.pid, startTime(child.pid)]]);
  const remember = (pid) => {
    if (!born.has(pid)) born.set(pid, startTime(pid));
    pids.add(pid);
  };
  const events = [];
  const waiters = [];
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d) => { stderr += d; });
  const rl = readline.createInterface({ input: child.stdout });
  rl.on('line', (line) => {
    let ev;
    try {
      ev = JSON.parse(line);
    } catch {
      ev = { text: line };
    }
    if (ev && typeof ev.pid === 'number') remember(ev.pid);
    if (ev && Array.isArray(ev.pids)) ev.pids.forEach(remember);
    events.push(ev);
    for (const w of [...waiters]) {
      if (w.match(ev)) {
        waiters.splice(waiters.indexOf(w), 1);
        clearTimeout(w.timer);
        w.resolve(ev);
      }
    }
  });
  const exited = new Promise((resolve) => {
    child.on('exit', (code, signal) => resolve({ code, signal }));
  });

  function waitFor(match, timeout = 10000) {
    const pred = typeof match === 'function' ? match : (ev) => ev.event === match;
    const found = events.find(pred);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const w = { match: pred, resolve };
      w.timer = setTimeout(() => {
        waiters.splice(waiters.indexOf(w), 1);
        reject(new Error(`timed out waiting in ${name} (${impl}); events: ${JSON.stringify(events)}; stderr: ${stderr}`));
      }, timeout);
      waiters.push(w);
    });
  }

  async function waitExit(timeout = 10000) {
    let timer;
    const t = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${name} (${impl}) did not exit; events: ${JSON.stringify(events)}; stderr: ${stderr}`)), timeout);
    });
    try {
      return await Promise.race([exited, t]);
    } finally {
      clearTimeout(timer);
    }
  }

  // Kills, by pid, every process this cluster started: the ones it printed
  // and every descendant of them still running, printed or not.
  async function stop() {
    for (const w of waiters.splice(0)) clearTimeout(w.timer);
    const mine = [...pids].filter((pid) => born.get(pid) !== null && startTime(pid) === born.get(pid));
    for (const pid of new Set([...mine, ...mine.flatMap(descendants)])) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
    }
    let timer;
    await Promise.race([exited, new Promise((r) => { timer = setTimeout(r, 2000); })]);
    clearTimeout(timer);
  }

  return {
    child, events, pids, waitFor, waitExit, stop,
    send: (msg) => child.stdin && child.stdin.write(`${JSON.stringify(msg)}\n`),
    get stderr() { return asNodeStderr(stderr); },
    get rawStderr() { return stderr; },
  };
}

// Workers forked with setupPrimary({ uid: OTHER_UID, gid: OTHER_GID }) run
// as nobody, who owns none of the files involved.
const OTHER_UID = 65534;
const OTHER_GID = 65534;

// Whether a user who is neither the owner nor in the group may use `file`:
// search on every directory above it, read on it (and execute, with `exec`).
function othersCanUse(file, exec = false) {
  let mode = fs.statSync(file).mode;
  if (!(mode & 0o004) || (exec && !(mode & 0o001))) return false;
  for (let dir = path.dirname(file); ; dir = path.dirname(dir)) {
    mode = fs.statSync(dir).mode;
    if (!(mode & 0o001)) return false;
    if (dir === path.dirname(dir)) return true;
  }
}

// Why a test that forks workers as OTHER_UID cannot run here, or false.
// Where the checkout lives does not matter: such tests run a copy
// (copyForWorkers); the node binary and the temp dir must be usable.
function otherUserSkip() {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return 'needs root';
  if (!othersCanUse(fs.realpathSync(process.execPath), true)) return `uid ${OTHER_UID} cannot run ${process.execPath}`;
  const tmp = fs.realpathSync(os.tmpdir());
  if (!othersCanUse(tmp) || !(fs.statSync(tmp).mode & 0o001)) return `uid ${OTHER_UID} cannot enter ${tmp}`;
  return false;
}

// Copies what a worker loads (rs-cluster's js/, its loader and addon) and
// the named fixtures, laid out as in the checkout, to a new directory under
// os.tmpdir() that test `t` removes when it ends. Every file is readable by
// all, and the directory open to all unless `closed` (then 0700, as a
// checkout under `mktemp -d` is). Returns { dir, fixture(name) }.
function copyForWorkers(t, fixtures, { closed = false } = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rs-cluster-copy-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const copy = (from, to) => {
    if (fs.statSync(from).isDirectory()) {
      fs.mkdirSync(to, { recursive: true });
      fs.chmodSync(to, 0o755);
      for (const name of fs.readdirSync(from)) copy(path.join(from, name), path.join(to, name));
    } else {
      fs.copyFileSync(from, to);
      fs.chmodSync(to, 0o644);
    }
  };
  const addons = fs.readdirSync(ROOT).filter((f) => f.endsWith('.node'));
  for (const f of ['js', 'binding.js', ...addons]) copy(path.join(ROOT, f), path.join(dir, f));
  const fixturesCopy = path.join(dir, path.relative(ROOT, FIXTURES));
  fs.mkdirSync(fixturesCopy, { recursive: true });
  for (let d = fixturesCopy; d !== dir; d = path.dirname(d)) fs.chmodSync(d, 0o755);
  for (const f of fixtures) copy(path.join(FIXTURES, f), path.join(fixturesCopy, f));
  fs.chmodSync(dir, closed ? 0o700 : 0o755);
  return { dir, fixture: (name) => path.join(fixturesCopy, name) };
}

// One HTTP GET on 127.0.0.1 with a fresh connection; resolves { status, body }.
function get(port, { path: p = '/', timeout = 5000, headers = {}, host = '127.0.0.1' } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.get({ host, port, path: p, agent: false, headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => { body += c; });
      res.on('end', () => resolve({ status: res.statusCode, body, headers: res.headers }));
      res.on('error', reject);
    });
    req.setTimeout(timeout, () => req.destroy(new Error('request timed out')));
    req.on('error', reject);
  });
}

// Runs `fn(impl)` for each implementation side by side. It waits for every
// one to settle, so none is still running when the test's cleanup starts,
// then fails with the first error.
async function eachImpl(fn, impls = IMPLS) {
  const results = await Promise.allSettled(impls.map(fn));
  const failed = results.find((r) => r.status === 'rejected');
  if (failed !== undefined) throw failed.reason;
  return results.map((r) => r.value);
}

module.exports = {
  ROOT, FIXTURES, IMPLS, HAS_SS, FALLBACK, nativeOnly, asNodeStderr, OTHER_UID, OTHER_GID, startCluster, eachImpl, get, otherUserSkip, copyForWorkers,
};
