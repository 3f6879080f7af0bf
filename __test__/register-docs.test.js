'use strict';
// Every example of Node's cluster docs (fixtures/register-docs), unchanged,
// under `node -r rs-cluster/register` (CommonJS) or `node --import
// rs-cluster/register` (ES modules), beside the same file on the built-in
// node:cluster: the same output, the same answers to real HTTP clients, the
// same exit. Each run gets a network namespace of its own (`unshare -n`),
// so the examples keep their fixed port 8000 without clashing; the client
// runs in that namespace through `nsenter`. Every process is killed by pid.

const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const { spawn, execFile, execFileSync } = require('node:child_process');
const { promisify } = require('node:util');
const { FIXTURES, asNodeStderr } = require('./helpers');
const { isAlive, descendants } = require('../scripts/lib/procs');
const { sleep, until } = require('./listen-helpers');

const DOCS = path.join(FIXTURES, 'register-docs');

function canUnshare() {
  try {
    execFileSync('unshare', ['-n', '--', 'sh', '-c', 'ip link set lo up'], { stdio: 'ignore' });
    execFileSync('nsenter', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
const SKIP = canUnshare() ? false : 'needs unshare -n, ip and nsenter (root or CAP_SYS_ADMIN)';

// Runs DOCS/<file> in a fresh network namespace; with impl 'rs' through the
// register hook.
function runDoc(t, file, impl) {
  const hook = impl === 'rs' ? [file.endsWith('.mjs') ? '--import' : '-r', 'rs-cluster/register'] : [];
  const child = spawn('unshare', ['-n', '--', 'sh', '-c', 'ip link set lo up && exec "$@"', 'sh', process.execPath, ...hook, file], {
    cwd: DOCS,
    env: { ...process.env, NODE_CLUSTER_SCHED_POLICY: '', NODE_OPTIONS: '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const pids = new Set([child.pid]);
  const remember = () => descendants(child.pid).forEach((p) => pids.add(p));
  const timer = setInterval(remember, 50);
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d) => { stdout += d; remember(); });
  child.stderr.setEncoding('utf8').on('data', (d) => { stderr += d; });
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  t.after(async () => {
    clearInterval(timer);
    remember();
    for (const p of pids) if (isAlive(p)) try { process.kill(p, 'SIGKILL'); } catch { /* gone */ }
    let timer2;
    await Promise.race([exited, new Promise((resolve) => { timer2 = setTimeout(resolve, 2000); })]);
    clearTimeout(timer2);
  });
  const lines = () => stdout.split('\n').filter(Boolean);
  return {
    child,
    lines,
    get stderr() { return asNodeStderr(stderr); },
    exited,
    workers: () => descendants(child.pid),
    waitLines: (re, n = 1, timeout = 10000) => until(() => lines().filter((l) => re.test(l)).length >= n,
      { timeout, what: `${impl} ${file}: ${n} x ${re}; stdout: ${stdout}; stderr: ${stderr}` }),
    // `n` HTTP GETs to 127.0.0.1:8000 from inside the namespace, one after
    // the other, retrying while the server is not up yet.
    http: async (n = 1) => {
      // nsenter must not run before unshare made the namespace.
      const own = fs.readlinkSync('/proc/self/ns/net');
      await until(() => {
        try {
          return fs.readlinkSync(`/proc/${child.pid}/ns/net`) !== own;
        } catch {
          return false;
        }
      }, { what: 'the network namespace' });
      const code = `
        const http = require('node:http');
        const get = () => new Promise((resolve) => {
          const req = http.get({ host: '127.0.0.1', port: 8000, agent: false }, (res) => {
            let b = ''; res.setEncoding('utf8'); res.on('data', (d) => { b += d; }); res.on('end', () => resolve(b));
          });
          req.setTimeout(3000, () => req.destroy(new Error('timeout')));
          req.on('error', (e) => resolve({ error: e.code || e.message }));
        });
        (async () => {
          const out = [];
          const deadline = Date.now() + 5000;
          while (out.length < ${n}) {
            const r = await get();
            if (typeof r !== 'string' && Date.now() < deadline) { await new Promise((s) => setTimeout(s, 50)); continue; }
            out.push(r);
          }
          console.log(JSON.stringify(out));
        })();`;
      const { stdout: text } = await promisify(execFile)('nsenter', [`--net=/proc/${child.pid}/ns/net`, '--', process.execPath, '-e', code], { encoding: 'utf8', timeout: 15000 });
      return JSON.parse(text);
    },
  };
}

// Output lines with pids/ports as N, sorted: order across processes is free.
const norm = (lines) => lines.map((l) => l.replace(/\d+/g, 'N')).sort();

// Runs `scenario(run, impl)` for both implementations side by side; returns
// { rs, node } of what each scenario returned.
async function both(t, scenario) {
  const [rs, node] = await Promise.all(['rs', 'node'].map((impl) => scenario((file) => runDoc(t, file, impl), impl)));
  return { rs, node };
}

const opts = { timeout: 30000, skip: SKIP };

for (const file of ['intro.mjs', 'intro.cjs', 'seed-intro.js']) {
  test(`docs: the introduction's hello-world server (${file})`, opts, async (t) => {
    const r = await both(t, async (run) => {
      const d = run(file);
      await d.waitLines(/^Worker \d+ started$/, 2);
      const bodies = await d.http(4);
      const victim = +d.lines().find((l) => l.startsWith('Worker ')).split(' ')[1];
      process.kill(victim, 'SIGKILL');
      await d.waitLines(new RegExp(`^worker ${victim} died$`));
      const after = await d.http(2);
      return { bodies, after, lines: norm(d.lines()) };
    });
    assert.deepStrictEqual(r.rs.bodies, ['hello world\n', 'hello world\n', 'hello world\n', 'hello world\n']);
    assert.deepStrictEqual(r.rs, r.node);
  });
}

for (const file of ['message.mjs', 'message.cjs', 'seed-message.js']) {
  test(`docs: counting requests in the primary with worker messages (${file})`, opts, async (t) => {
    const r = await both(t, async (run) => {
      const d = run(file);
      const bodies = await d.http(5);
      await d.waitLines(/^numReqs = 5$/, 1, 5000);
      return { bodies, last: d.lines().at(-1) };
    });
    assert.deepStrictEqual(r.rs.bodies, Array(5).fill('hello world\n'));
    assert.deepStrictEqual(r.rs, r.node);
  });
}

test('docs: worker.isDead() with workers that kill themselves (is-dead.mjs)', opts, async (t) => {
  const r = await both(t, async (run) => {
    const d = run('is-dead.mjs');
    await d.waitLines(/^worker is dead: false$/, 2);
    const first = await d.http(1);
    await d.waitLines(/^worker is dead: true$/, 1);
    const second = await d.http(1);
    await d.waitLines(/^worker is dead: true$/, 2);
    const exit = await d.exited;
    return { bodies: [...first, ...second].map((b) => b.replace(/\d+/, 'PID')), lines: norm(d.lines()), exit };
  });
  assert.deepStrictEqual(r.rs.bodies, ['Current process\n PID', 'Current process\n PID']);
  assert.deepStrictEqual(r.rs, r.node);
});

for (const file of ['setup-primary.mjs', 'seed-setup-master.js']) {
  test(`docs: cluster.setupPrimary() with exec, args and silent (${file})`, opts, async (t) => {
    const r = await both(t, async (run) => {
      const d = run(file);
      // Nothing says when the second worker listens: ask until both answered.
      const seen = new Set();
      for (let round = 0; round < 10 && seen.size < 2; round++) (await d.http(4)).forEach((b) => seen.add(b));
      const bodies = [...seen].sort();
      await sleep(100);
      return { bodies, lines: d.lines(), stderr: d.stderr };
    });
    // Settings carry over between setupPrimary() calls: both workers are
    // silent, their output goes to pipes nobody reads. Both serve port 8000.
    assert.deepStrictEqual(r.rs, { bodies: ['--use http', '--use https'], lines: [], stderr: '' });
    assert.deepStrictEqual(r.rs, r.node);
  });
}

test('docs (older): cluster.worker in a request handler (seed-worker.js)', opts, async (t) => {
  const r = await both(t, async (run) => {
    const d = run('seed-worker.js');
    const seen = new Set();
    // Ask until both workers logged a request (the second may listen later).
    for (let round = 0; round < 10 && seen.size < 2; round++) {
      await d.http(2);
      d.lines().forEach((l) => seen.add(l));
    }
    return [...seen].sort();
  });
  assert.deepStrictEqual(r.rs, ['I am worker #1', 'I am worker #2']);
  assert.deepStrictEqual(r.rs, r.node);
});

test('docs (older): message arguments, iterating cluster.workers, worker.send echo (seed-events.js)', opts, async (t) => {
  const r = await both(t, async (run) => {
    const d = run('seed-events.js');
    await d.waitLines(/^#\d: big announcement to all workers$/, 2);
    const bodies = await d.http(2);
    return { bodies, lines: d.lines().sort() };
  });
  assert.deepStrictEqual(r.rs.lines, ['#1: big announcement to all workers', '#2: big announcement to all workers']);
  assert.deepStrictEqual(r.rs, r.node);
});

test('docs: cluster.worker (worker-id.mjs)', opts, async (t) => {
  const r = await both(t, async (run) => {
    const d = run('worker-id.mjs');
    await d.waitLines(/^I am worker #\d$/, 2);
    return d.lines().sort();
  });
  assert.deepStrictEqual(r.rs, ['I am primary', 'I am worker #1', 'I am worker #2']);
  assert.deepStrictEqual(r.rs, r.node);
});

for (const file of ['workers.mjs', 'workers.cjs']) {
  test(`docs: iterating cluster.workers with none forked (${file})`, opts, async (t) => {
    const r = await both(t, async (run) => {
      const d = run(file);
      const exit = await d.exited;
      return { exit, lines: d.lines(), stderr: d.stderr };
    });
    assert.deepStrictEqual(r.rs, { exit: { code: 0, signal: null }, lines: [], stderr: '' });
    assert.deepStrictEqual(r.rs, r.node);
  });
}

test('docs: worker.disconnect() with a timeout (disconnect.cjs)', opts, async (t) => {
  const r = await both(t, async (run) => {
    const d = run('disconnect.cjs');
    const started = Date.now();
    const exit = await d.exited;
    t.diagnostic(`exited after ${Date.now() - started} ms`);
    return { exit, lines: d.lines(), stderr: d.stderr };
  });
  assert.deepStrictEqual(r.rs, { exit: { code: 0, signal: null }, lines: [], stderr: '' });
  assert.deepStrictEqual(r.rs, r.node);
});

test('docs: worker.send() echo (send.cjs)', opts, async (t) => {
  const r = await both(t, async (run) => {
    const d = run('send.cjs');
    await d.waitLines(/^echo from/);
    await sleep(100);
    return d.lines();
  });
  assert.deepStrictEqual(r.rs, ['echo from #1: hi there']);
  assert.deepStrictEqual(r.rs, r.node);
});

test("docs: the cluster events ('fork', 'listening', 'online', 'disconnect', 'exit' restarting) (events.cjs)", opts, async (t) => {
  const r = await both(t, async (run) => {
    const d = run('events.cjs');
    await d.waitLines(/^A worker is now connected to null:8000$/, 2);
    const [victim] = d.workers();
    process.kill(victim, 'SIGKILL');
    await d.waitLines(/restarting\.\.\.$/);
    await d.waitLines(/^A worker is now connected to null:8000$/, 3);
    const bodies = await d.http(2);
    return { bodies, lines: norm(d.lines()), stderr: d.stderr.split('\n').filter(Boolean) };
  });
  assert.deepStrictEqual(r.rs.stderr, ['Something must be wrong with the connection ...']);
  assert.ok(r.rs.lines.includes('worker N died (SIGKILL). restarting...'), JSON.stringify(r.rs.lines));
  assert.deepStrictEqual(r.rs, r.node);
});

test("docs: the Worker events ('disconnect', 'exit', 'listening', 'online') (worker-events.cjs)", opts, async (t) => {
  const r = await both(t, async (run) => {
    const d = run('worker-events.cjs');
    await until(() => d.workers().length === 4, { what: 'four workers' });
    const bodies = await d.http(4);
    for (const p of d.workers()) process.kill(p, 'SIGKILL');
    await d.waitLines(/^worker was killed by signal/);
    const exit = await d.exited;
    return { bodies, lines: d.lines(), exit };
  });
  assert.deepStrictEqual(r.rs, { bodies: Array(4).fill('hello world\n'), lines: ['worker was killed by signal: SIGKILL'], exit: { code: 0, signal: null } });
  assert.deepStrictEqual(r.rs, r.node);
});

test('docs: worker.exitedAfterDisconnect after worker.kill() (voluntary.cjs)', opts, async (t) => {
  const r = await both(t, async (run) => {
    const d = run('voluntary.cjs');
    const exit = await d.exited;
    return { exit, lines: d.lines() };
  });
  // node:cluster's kill() in the primary only signals the worker, so
  // exitedAfterDisconnect ends up false and the snippet prints nothing.
  assert.deepStrictEqual(r.node, { exit: { code: 0, signal: null }, lines: [] });
  assert.deepStrictEqual(r.rs, r.node);
});
