'use strict';
// Fault tolerance of the cluster's lifecycle: the primary dying or being
// signalled, a worker stopped gracefully with open connections, and workers
// whose event loop blocks for a moment. rs-cluster and node:cluster side by side.
const test = require('node:test');
const assert = require('node:assert');
const http = require('node:http');
const net = require('node:net');
const { startCluster, IMPLS } = require('./helpers');
const { sleep, waitBindable, request } = require('./fixtures/faults-lib');
const { isAlive, waitGone } = require('../scripts/lib/procs');

// The ms it took every pid to be gone, or null if some still ran after `timeout`.
async function msUntilGone(pids, timeout) {
  const start = Date.now();
  return (await waitGone(pids, timeout)) ? Date.now() - start : null;
}

const report = (t, label, value) => t.diagnostic(`${label}: ${JSON.stringify(value)}`);

const workerPids = (c) => c.events.filter((e) => e.event === 'fork').map((e) => e.pid);

// A keep-alive HTTP connection that has served one request and stays open.
function keepAliveConn(port) {
  return new Promise((resolve, reject) => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const req = http.get({ host: '127.0.0.1', port, agent }, (res) => {
      res.resume();
      res.on('end', () => resolve(agent));
    });
    req.on('error', (err) => {
      agent.destroy();
      reject(err);
    });
    req.setTimeout(3000, () => req.destroy(new Error('timeout')));
  });
}

for (const policy of ['rr', 'none']) {
  test(`primary SIGKILLed (${policy}): every worker gone in < 1 s, port free`, { timeout: 30000 }, async (t) => {
    const figures = {};
    for (const impl of ['node', 'rs']) {
      const c = startCluster('faults-app.js', { impl, env: { WORKERS: '2', NODE_CLUSTER_SCHED_POLICY: policy } });
      const agents = [];
      try {
        const { port } = await c.waitFor('ready');
        const workers = workerPids(c);
        // An open keep-alive connection on each worker must not keep it alive.
        agents.push(await keepAliveConn(port), await keepAliveConn(port));
        const t0 = Date.now();
        process.kill(c.child.pid, 'SIGKILL');
        const goneMs = await msUntilGone(workers, 3000);
        const bindable = await waitBindable(port, 1000);
        figures[impl] = { goneMs, portFreeMs: bindable === null ? null : Date.now() - t0 };
      } finally {
        for (const a of agents) a.destroy();
        await c.stop();
      }
    }
    report(t, `orphans after primary SIGKILL (${policy}) {impl: {ms until all workers gone, ms until the port can be bound}}`, figures);
    assert.ok(figures.rs.goneMs !== null && figures.rs.goneMs < 1000, `rs-cluster workers gone in < 1 s (${figures.rs.goneMs} ms)`);
    assert.ok(figures.rs.portFreeMs !== null && figures.rs.portFreeMs < 1000, `port can be bound again within 1 s (${figures.rs.portFreeMs} ms)`);
  });
}

for (const signal of ['SIGTERM', 'SIGINT']) {
  test(`${signal} to the primary with the docs' handler: workers exit, primary exits 0`, { timeout: 30000 }, async (t) => {
    const figures = {};
    for (const impl of ['node', 'rs']) {
      const c = startCluster('faults-app.js', { impl, env: { WORKERS: '2', SIGNALS: '1' } });
      const agents = [];
      try {
        const { port } = await c.waitFor('ready');
        const workers = workerPids(c);
        agents.push(await keepAliveConn(port));
        // A request in progress when the signal comes is still answered.
        const inFlight = request(port, { path: '/slow?ms=400', hangMs: 3000 });
        await sleep(100);
        const t0 = Date.now();
        process.kill(c.child.pid, signal);
        const { code, signal: sig } = await c.waitExit(5000);
        const exitMs = Date.now() - t0;
        const goneMs = await msUntilGone(workers, 2000);
        const slow = await inFlight;
        figures[impl] = {
          code, signal: sig, exitMs, workersGone: goneMs !== null, portFree: (await waitBindable(port, 1000)) !== null,
          inFlightRequest: slow.ok ? 'ok' : slow.code,
          workerExits: c.events.filter((e) => e.event === 'exit').map((e) => ({ code: e.code, signal: e.signal, exitedAfterDisconnect: e.exitedAfterDisconnect })),
        };
      } finally {
        for (const a of agents) a.destroy();
        await c.stop();
      }
    }
    report(t, `${signal} with handler`, figures);
    assert.strictEqual(figures.rs.code, 0, 'rs-cluster primary exits 0');
    assert.ok(figures.rs.workersGone, 'rs-cluster workers exited');
    assert.ok(figures.rs.portFree, 'port can be bound again');
    assert.strictEqual(figures.rs.inFlightRequest, 'ok', 'the request in progress is answered');
    assert.deepStrictEqual(figures.rs.workerExits, figures.node.workerExits, 'workers exit as under node:cluster');
  });
}

test('SIGTERM to a primary without handlers: it dies, its workers follow in < 1 s', { timeout: 30000 }, async (t) => {
  const figures = {};
  for (const impl of ['node', 'rs']) {
    const c = startCluster('faults-app.js', { impl, env: { WORKERS: '2' } });
    try {
      const { port } = await c.waitFor('ready');
      const workers = workerPids(c);
      process.kill(c.child.pid, 'SIGTERM');
      const { signal } = await c.waitExit(5000);
      figures[impl] = { signal, goneMs: await msUntilGone(workers, 3000), portFree: (await waitBindable(port, 1000)) !== null };
    } finally {
      await c.stop();
    }
  }
  report(t, 'SIGTERM without handler', figures);
  assert.strictEqual(figures.rs.signal, 'SIGTERM');
  assert.ok(figures.rs.goneMs !== null && figures.rs.goneMs < 1000, `workers gone in < 1 s (${figures.rs.goneMs} ms)`);
  assert.ok(figures.rs.portFree);
});

// A persistent TCP connection to the 'net' app: resolves { sock, id, pid, ask() }.
function persistent(port) {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: '127.0.0.1', port });
    sock.setEncoding('utf8');
    let buf = '';
    const lines = [];
    const waiters = [];
    sock.on('data', (d) => {
      buf += d;
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        const w = waiters.shift();
        if (w) w(line);
        else lines.push(line);
      }
    });
    const next = (ms = 2000) => new Promise((res, rej) => {
      if (lines.length) return res(lines.shift());
      const timer = setTimeout(() => rej(new Error('no answer')), ms);
      waiters.push((l) => { clearTimeout(timer); res(l); });
    });
    const fail = (err) => {
      sock.destroy();
      reject(err);
    };
    sock.on('error', fail);
    next(3000).then((greeting) => {
      const [id, pid] = greeting.split(':').map(Number);
      resolve({
        sock, id, pid,
        ask: () => { sock.write('?'); return next(); },
      });
    }, fail);
  });
}

// Connections opened one after another (8 at a time) until `stop()`;
// each must be greeted. Resolves counts per worker id and failures.
function connectionStream(port) {
  let stopped = false;
  const stats = { ok: 0, failed: 0, codes: {}, byWorker: {} };
  const one = () => new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.setEncoding('utf8');
    let data = '';
    const timer = setTimeout(() => { s.destroy(); resolve('HUNG'); }, 3000);
    s.on('data', (d) => {
      data += d;
      if (data.includes('\n')) {
        clearTimeout(timer);
        s.destroy();
        resolve(+data.split(':')[0]);
      }
    });
    s.on('error', (err) => { clearTimeout(timer); resolve(err.code); });
  });
  const loops = Array.from({ length: 8 }, async () => {
    while (!stopped) {
      const r = await one();
      if (typeof r === 'number') {
        stats.ok++;
        stats.byWorker[r] = (stats.byWorker[r] || 0) + 1;
      } else {
        stats.failed++;
        stats.codes[r] = (stats.codes[r] || 0) + 1;
      }
    }
  });
  return { stop: async () => { stopped = true; await Promise.all(loops); return stats; } };
}

test('graceful stop: worker.disconnect() with open connections', { timeout: 40000 }, async (t) => {
  const figures = {};
  for (const impl of ['node', 'rs']) {
    const c = startCluster('faults-app.js', { impl, env: { WORKERS: '2', MODE: 'net' } });
    const conns = [];
    let stream = null;
    try {
      const { port } = await c.waitFor('ready');
      for (let i = 0; i < 6; i++) conns.push(await persistent(port));
      const victim = Math.min(...conns.map((x) => x.id));
      const mine = conns.filter((x) => x.id === victim);
      assert.ok(mine.length >= 1, 'the worker to stop holds connections');

      stream = connectionStream(port);
      await sleep(200);
      process.kill(c.child.pid, 'SIGUSR2');
      const { id } = await c.waitFor('disconnecting', 3000);
      assert.strictEqual(id, victim);
      // New connections go to the other worker at once.
      const fresh = await Promise.all(Array.from({ length: 10 }, () => persistent(port).catch((e) => e)));
      const freshIds = fresh.map((x) => (x instanceof Error ? x.code || x.message : x.id));
      for (const f of fresh) if (!(f instanceof Error)) f.sock.destroy();
      // Its open connections still work, and it does not exit while they are open.
      const answers = await Promise.all(mine.map((x) => x.ask().catch((e) => e.message)));
      await sleep(300);
      const aliveWhileOpen = isAlive(mine[0].pid) && !c.events.some((e) => e.event === 'exit');
      // Once they end, it exits.
      const t0 = Date.now();
      for (const x of mine) x.sock.end();
      const ex = await c.waitFor('exit', 3000).catch(() => null);
      const exitAfterMs = ex ? Date.now() - t0 : null;
      await sleep(200);
      const streamStats = await stream.stop();
      stream = null;
      figures[impl] = {
        victim,
        freshIds,
        answersFromVictim: answers,
        aliveWhileOpen,
        exitAfterMs,
        exit: ex && { code: ex.code, signal: ex.signal, exitedAfterDisconnect: ex.exitedAfterDisconnect },
        stream: streamStats,
      };
    } finally {
      if (stream) await stream.stop();
      for (const x of conns) x.sock.destroy();
      await c.stop();
    }
  }
  report(t, 'graceful stop', figures);
  const rs = figures.rs;
  const other = rs.victim === 1 ? 2 : 1;
  assert.deepStrictEqual(rs.freshIds, Array(10).fill(other), 'new connections go to the other worker at once');
  assert.ok(rs.answersFromVictim.every((a) => a === `${rs.victim}`), `open connections keep working (${rs.answersFromVictim})`);
  assert.ok(rs.aliveWhileOpen, 'the worker stays while its connections are open');
  assert.ok(rs.exitAfterMs !== null && rs.exitAfterMs < 3000, `it exits once they end (${rs.exitAfterMs} ms)`);
  assert.deepStrictEqual(rs.exit, { code: 0, signal: null, exitedAfterDisconnect: true });
  assert.strictEqual(rs.stream.failed, 0, `nothing refused while another worker listens (${JSON.stringify(rs.stream.codes)})`);
  assert.ok(rs.stream.ok > 0);
});

// Every worker busy (event loop blocked) for 300 ms at once while more
// connections arrive: they must be served once the workers are free again,
// and the cluster must keep serving afterwards.
for (const impl of IMPLS) {
  test(`workers blocked for 300 ms at once lose no connections (${impl})`, { timeout: 20000 }, async (t) => {
    const c = startCluster('faults-app.js', { impl, env: { WORKERS: '2' } });
    t.after(() => c.stop());
    const { port } = await c.waitFor('ready');
    const blocked = [request(port, { path: '/block?ms=300', hangMs: 3000 }), request(port, { path: '/block?ms=300', hangMs: 3000 })];
    await sleep(50);
    const during = await Promise.all(Array.from({ length: 4 }, () => request(port, { hangMs: 3000 })));
    const after = await Promise.all(Array.from({ length: 10 }, () => request(port, { hangMs: 3000 })));
    const sum = (rs) => rs.map((r) => (r.ok ? `ok ${r.ms}ms` : r.code));
    const figures = { blocked: sum(await Promise.all(blocked)), during: sum(during), after: sum(after) };
    report(t, `blocked workers (${impl})`, figures);
    assert.ok([...during, ...after].every((r) => r.ok), `every request served: ${JSON.stringify(figures)}`);
  });
}

// One worker busy (event loop blocked) for 300 ms while a connection waits
// for it: afterwards it must be back in rotation.
for (const impl of IMPLS) {
  test(`a worker blocked for 300 ms is back in rotation afterwards (${impl})`, { timeout: 20000 }, async (t) => {
    const c = startCluster('faults-app.js', { impl, env: { WORKERS: '2' } });
    t.after(() => c.stop());
    const { port } = await c.waitFor('ready');
    const blocked = request(port, { path: '/block?ms=300', hangMs: 3000 });
    await sleep(50);
    const during = await Promise.all(Array.from({ length: 4 }, () => request(port, { hangMs: 3000 })));
    const b = await blocked;
    await sleep(50);
    const after = await Promise.all(Array.from({ length: 10 }, () => request(port, { hangMs: 3000 })));
    const figures = {
      blockedWorker: b.ok ? b.body : b.code,
      during: during.map((r) => (r.ok ? r.body : r.code)),
      after: after.map((r) => (r.ok ? r.body : r.code)),
    };
    report(t, `one blocked worker (${impl})`, figures);
    assert.ok([...during, ...after].every((r) => r.ok), `every request served: ${JSON.stringify(figures)}`);
    assert.ok(figures.after.includes(figures.blockedWorker), `worker ${figures.blockedWorker} serves again: ${JSON.stringify(figures)}`);
  });
}
