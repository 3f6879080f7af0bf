'use strict';
// Test-side plumbing of the port-sharing suites (listen*, dgram*, register*):
// run one fixture under rs-cluster and node:cluster, drive its primary over
// its control server, talk to the workers with real clients, and compare
// what both printed once random ports are replaced by stable tokens.

const net = require('node:net');
const http = require('node:http');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const { startCluster, get, HAS_SS } = require('./helpers');
const { isAlive } = require('../scripts/lib/procs');

const POLICIES = ['rr', 'none'];

function run(t, fixture, { impl, policy = 'rr', env = {}, cwd } = {}) {
  const c = startCluster(fixture, { impl, cwd, env: { NODE_CLUSTER_SCHED_POLICY: policy, ...env } });
  t.after(() => stop(c));
  return c;
}

// helpers.stop(), minus its uncleared 2 s timer (which holds every test
// file open 2 s after its last test): SIGKILL every pid the cluster
// printed, then wait for the primary's exit.
async function stop(c) {
  for (const pid of c.pids) {
    if (isAlive(pid)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
    }
  }
  await c.waitExit(2000).catch(() => {});
}

// Waits until `n` events match, returns them.
async function waitCount(c, match, n, timeout = 10000) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const found = c.events.filter(match);
    if (found.length >= n) return found;
    if (Date.now() > deadline) {
      throw new Error(`waited for ${n} events, have ${found.length}: ${JSON.stringify(c.events)}; stderr: ${c.stderr}`);
    }
    await sleep(10);
  }
}

async function control(c, ...parts) {
  const { port } = await c.waitFor('control');
  const p = `/${parts.map((x) => encodeURIComponent(typeof x === 'string' ? x : JSON.stringify(x))).join('/')}`;
  return (await get(port, { path: p })).body;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Polls `fn` until it returns a truthy value.
async function until(fn, { timeout = 5000, what = 'condition' } = {}) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

// A raw TCP (or unix socket) exchange: connect, optionally write, read until
// the server ends (`end`: half-close first). Resolves the text, or
// `{ error: code, data }`.
function talk(target, { write = null, end = false, timeout = 3000 } = {}) {
  return new Promise((resolve) => {
    const sock = net.connect(target);
    let data = '';
    const timer = setTimeout(() => {
      sock.destroy();
      resolve({ error: 'TIMEOUT', data });
    }, timeout);
    sock.setEncoding('utf8');
    sock.on('connect', () => {
      if (write !== null) sock.write(write);
      if (end) sock.end();
    });
    sock.on('data', (d) => { data += d; });
    sock.on('end', () => { clearTimeout(timer); sock.end(); resolve(data); });
    sock.on('error', (e) => { clearTimeout(timer); resolve({ error: e.code, data }); });
  });
}

// Opens a connection and waits for the first data (`greeting`), the server
// closing it (`closed`) or `timeout` ms (`pending`). The socket stays open
// for the caller, and is destroyed when the test ends.
function hold(t, port, { timeout = 500, host = '127.0.0.1' } = {}) {
  return new Promise((resolve) => {
    const sock = net.connect(port, host);
    t.after(() => sock.destroy());
    let settled = false;
    const settle = (v) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve({ sock, ...v });
    };
    const timer = setTimeout(() => settle({ pending: true }), timeout);
    sock.setEncoding('utf8');
    sock.once('data', (d) => settle({ greeting: d }));
    sock.on('error', (e) => settle({ closed: true, error: e.code }));
    sock.on('close', () => settle({ closed: true }));
  });
}

// HTTP GET over a unix socket.
function getPath(socketPath, { timeout = 3000 } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.get({ socketPath, path: '/', agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode, body }));
    });
    req.setTimeout(timeout, () => req.destroy(new Error('timed out')));
    req.on('error', reject);
  });
}

// Replaces every port found in `port` fields (in traversal order of `value`)
// by P1, P2... everywhere in the structure, strings included, so two runs
// with different random ports compare equal. `known` maps fixed ports to names.
function normalizePorts(value, known = {}) {
  const names = new Map(Object.entries(known).map(([k, v]) => [v, k]));
  let next = 1;
  const walk = (v) => {
    if (Array.isArray(v)) v.forEach(walk);
    else if (v && typeof v === 'object') {
      for (const [k, x] of Object.entries(v)) {
        if ((k === 'port' || k.endsWith('Port')) && typeof x === 'number' && x >= 1024 && !names.has(x)) {
          names.set(x, `P${next++}`);
        }
        walk(x);
      }
    }
  };
  walk(value);
  const swap = (v) => {
    if (typeof v === 'number') return names.has(v) ? `<${names.get(v)}>` : v;
    if (typeof v === 'string') return v.replace(/\d{4,5}/g, (m) => (names.has(+m) ? `<${names.get(+m)}>` : m));
    if (Array.isArray(v)) return v.map(swap);
    if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, swap(x)]));
    return v;
  };
  return swap(value);
}

// What every worker of a listen-forms run printed, by worker id, in order:
// its op results and the 'listening' events the primary saw for it.
function byWorker(c, ids) {
  const result = {};
  for (const id of ids) {
    result[id] = {
      ops: c.events.filter((e) => e.event === 'op' && e.id === id).map(({ i, addr, err, thrown, listening }) => ({ i, addr, err, thrown, listening })),
      listening: c.events.filter((e) => e.event === 'listening' && e.id === id).map((e) => e.address),
      wlistening: c.events.filter((e) => e.event === 'wlistening' && e.id === id).map((e) => e.address),
    };
  }
  return result;
}

function opOf(c, id, i) {
  const ev = c.events.find((e) => e.event === 'op' && e.id === id && e.i === i);
  if (!ev) throw new Error(`no op ${i} of worker ${id}: ${JSON.stringify(c.events)}`);
  return ev;
}


function ss(args) {
  return execFileSync('ss', args, { encoding: 'utf8' });
}

// pids holding a socket `proto` ('t' TCP listening, 'u' UDP) on `port`.
function owners(proto, port) {
  const text = ss([`-l${proto}npH`, `sport = :${port}`]);
  return new Set([...text.matchAll(/pid=(\d+)/g)].map((m) => +m[1]));
}

// The listen backlog (Send-Q of `ss`) of the TCP listener on `port`.
function backlogOf(port) {
  if (!HAS_SS) return null;
  return ss(['-ltnH', `sport = :${port}`]).trim().split('\n').filter(Boolean).map((l) => +l.trim().split(/\s+/)[2]);
}

function tmpDir(t, prefix = 'rsc-listen-') {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function hasOpenssl() {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

// A self-signed certificate for 127.0.0.1 / localhost, made at test time.
function selfSigned(dir) {
  const key = path.join(dir, 'key.pem');
  const cert = path.join(dir, 'cert.pem');
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-sha256', '-days', '1',
    '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
    '-keyout', key, '-out', cert,
  ], { stdio: 'ignore' });
  return { key, cert };
}

module.exports = {
  POLICIES, run, stop, waitCount, control, sleep, until, talk, hold, getPath,
  normalizePorts, byWorker, opOf, HAS_SS, ss, owners, backlogOf, tmpDir, hasOpenssl, selfSigned,
};
