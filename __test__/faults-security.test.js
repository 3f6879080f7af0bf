'use strict';
// Security-minded faults: garbage on the control channel, fds escaping into
// a worker's own children, who can reach the control channel, and uid/gid.
const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const { execFileSync } = require('node:child_process');
const {
  startCluster, HAS_SS, OTHER_UID, OTHER_GID, otherUserSkip, copyForWorkers,
} = require('./helpers');
const { sleep, load, request, waitUntil, fdList, openIdle } = require('./fixtures/faults-lib');
const { isAlive } = require('../scripts/lib/procs');

const report = (t, label, value) => t.diagnostic(`${label}: ${JSON.stringify(value)}`);

test('hostile control traffic: the garbling worker is cut off and reported, the others keep serving', { timeout: 40000 }, async (t) => {
  const c = startCluster('faults-hostile.js', { impl: 'rs', env: { GOOD: '2' } });
  t.after(() => c.stop());
  const roles = await c.waitFor('roles');
  const hostileIds = Object.keys(roles.hostile).map(Number);
  await waitUntil(() => c.events.filter((e) => e.event === 'armed').length === hostileIds.length
    && c.events.filter((e) => e.event === 'listening').length === hostileIds.length + roles.good.length, 15000, 50);
  const { port } = c.events.find((e) => e.event === 'listening');
  const armed = c.events.filter((e) => e.event === 'armed');
  assert.strictEqual(armed.length, hostileIds.length, `every hostile worker is listening: ${c.stderr}`);
  // Frames with fds attached send /dev/null: none of those may stay in the primary.
  const devNull = () => Object.values(fdList(c.child.pid)).filter((x) => x === '/dev/null').length;
  const devNullBefore = devNull();

  // Garbage lands while connections flow.
  const during = load(port, { concurrency: 8, durationMs: 1500, hangMs: 3000 });
  await sleep(300);
  for (const a of armed) process.kill(a.pid, 'SIGUSR2');
  const duringStats = await during;
  await waitUntil(() => hostileIds.every((id) => c.events.some((e) => e.event === 'exit' && e.id === id)), 3000, 50);

  const outcome = {};
  for (const id of hostileIds) {
    const kind = roles.hostile[id];
    const err = c.events.find((e) => e.event === 'worker-error' && e.id === id);
    const warn = c.events.find((e) => e.event === 'warning' && new RegExp(`worker ${id}\\b`).test(e.message));
    const exit = c.events.find((e) => e.event === 'exit' && e.id === id);
    outcome[kind] = {
      id,
      sent: c.events.some((e) => e.event === 'garbage-sent' && e.id === id),
      reported: err ? `error ${err.code}: ${err.message}` : warn ? `warning ${warn.code}: ${warn.message}` : null,
      exit: exit ? { code: exit.code, signal: exit.signal } : null,
    };
  }
  const after = await load(port, { concurrency: 4, total: 40, durationMs: 3000, hangMs: 3000 });
  const leakedFds = devNull() - devNullBefore;
  report(t, 'hostile workers', outcome);
  report(t, 'load during garbage', { ok: duringStats.ok, failed: duringStats.failed, hung: duringStats.hung, codes: duringStats.codes });
  report(t, 'after garbage', { ok: after.ok, failed: after.failed, hung: after.hung, servedBy: after.bodies, primaryFdsLeaked: leakedFds });

  assert.ok(isAlive(c.child.pid), `the primary never crashes: ${c.stderr}`);
  // Every shortfall at once, so one run shows them all.
  const problems = [];
  for (const [kind, o] of Object.entries(outcome)) {
    if (!o.sent) problems.push(`${kind}: garbage was not written`);
    if (!/ERR_RS_CLUSTER_PROTOCOL/.test(o.reported || '')) problems.push(`${kind}: not reported as ERR_RS_CLUSTER_PROTOCOL (${o.reported})`);
    if (!o.exit) problems.push(`${kind}: the worker was not cut off`);
  }
  if (leakedFds !== 0) problems.push(`the primary kept ${leakedFds} fds that came with hostile frames`);
  if (duringStats.hung !== 0) problems.push(`${duringStats.hung} requests hung while workers were cut off`);
  if (after.ok !== 40) problems.push(`the good workers did not serve every request afterwards (${JSON.stringify(after.codes)})`);
  assert.deepStrictEqual(problems, []);
  const servedBy = Object.keys(after.bodies).map(Number);
  assert.deepStrictEqual(servedBy.filter((id) => !roles.good.includes(id)), [], 'only good workers serve afterwards');
});

// fds a child may have beyond 0-2: ls's own handle on /proc/self/fd, and
// whatever this test process itself passed down (its harness's inherited fds).
function escapedFds(childFds) {
  const mine = fdList(process.pid);
  return Object.fromEntries(Object.entries(childFds).filter(([n, target]) => +n > 2
    && !/^\/proc\/\d+\/fd$/.test(target) && mine[n] !== target));
}

// Listening sockets (tcp, udp, unix) held by `pid`, from `ss`.
function listeningOf(pid) {
  const text = execFileSync('ss', ['-H', '-lntuxp'], { encoding: 'utf8' });
  return text.split('\n').filter((l) => l.includes(`pid=${pid},`)).map((l) => {
    const f = l.trim().split(/\s+/);
    return { netid: f[0], local: f[4] };
  });
}

// Paths of the unix sockets `pid` holds (a control channel must have none).
function unixPathsOf(pid) {
  const inodes = new Set(Object.values(fdList(pid)).map((t) => (/^socket:\[(\d+)\]$/.exec(t) || [])[1]).filter(Boolean));
  const paths = [];
  for (const line of fs.readFileSync('/proc/net/unix', 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length >= 8 && inodes.has(f[6])) paths.push(f.slice(7).join(' '));
  }
  return paths;
}


test('no fd escapes into children; the control channel has no address anyone else can reach', { timeout: 40000 }, async (t) => {
  const figures = {};
  for (const impl of ['rs', 'node']) {
    for (const policy of ['rr', 'none']) {
      const c = startCluster('faults-spawn.js', { impl, env: { NODE_CLUSTER_SCHED_POLICY: policy } });
      let idle = [];
      try {
        const { port, udpPort } = await c.waitFor('ready');
        const primaryChild = c.events.find((e) => e.event === 'primary-child');
        const worker = c.events.find((e) => e.event === 'fork').pid;
        idle = await openIdle(port, 3);
        await sleep(200);
        const r = await request(port, { path: '/spawn', hangMs: 5000, headers: { Connection: 'keep-alive' } });
        assert.ok(r.ok, `GET /spawn: ${r.code} ${c.stderr}`);
        const seen = JSON.parse(r.body);
        assert.ok(['0', '1', '2'].every((n) => n in seen.fds), `the child's fds were listed: ${JSON.stringify(seen)}`);
        const workerSockets = Object.entries(seen.own).filter(([n, tg]) => +n > 2 && tg.startsWith('socket:')).length;
        const fig = {
          workerSocketsAtSpawn: workerSockets,
          workerChildEscaped: escapedFds(seen.fds),
          workerChildEnv: seen.env,
          primaryChildEscaped: escapedFds(primaryChild.fds),
          primaryChildEnv: primaryChild.env,
          appPorts: { tcp: port, udp: udpPort },
        };
        if (HAS_SS) {
          fig.primaryListening = listeningOf(c.child.pid);
          fig.workerListening = listeningOf(worker);
        }
        fig.primaryUnixPaths = unixPathsOf(c.child.pid).filter(Boolean);
        fig.workerUnixPaths = unixPathsOf(worker).filter(Boolean);
        figures[`${impl}/${policy}`] = fig;
      } finally {
        for (const s of idle) s.destroy();
        await c.stop();
      }
    }
  }
  report(t, 'fd escapes and reachability', figures);
  for (const policy of ['rr', 'none']) {
    const f = figures[`rs/${policy}`];
    assert.ok(f.workerSocketsAtSpawn >= 6, `${policy}: the worker held channel, IPC, UDP and connections when it spawned (${f.workerSocketsAtSpawn})`);
    assert.deepStrictEqual(f.workerChildEscaped, {}, `${policy}: a worker's child inherits only 0-2`);
    assert.deepStrictEqual(f.primaryChildEscaped, {}, `${policy}: the primary's child inherits only 0-2`);
    assert.deepStrictEqual(f.workerChildEnv.filter((v) => /RS_CLUSTER|rs-cluster|js\/index\.js/.test(v)), [], `${policy}: no rs-cluster variables reach a worker's child`);
    if (HAS_SS) {
      const ok = (l) => (l.netid === 'tcp' && l.local.endsWith(`:${f.appPorts.tcp}`)) || (l.netid === 'udp' && l.local.endsWith(`:${f.appPorts.udp}`));
      assert.deepStrictEqual(f.primaryListening.filter((l) => !ok(l)), [], `${policy}: the primary listens on the app's ports only`);
      assert.deepStrictEqual(f.workerListening.filter((l) => !ok(l)), [], `${policy}: the worker listens on the app's ports only`);
    }
    assert.deepStrictEqual(f.primaryUnixPaths, [], `${policy}: no unix socket of the primary has a filesystem path`);
    assert.deepStrictEqual(f.workerUnixPaths, [], `${policy}: no unix socket of the worker has a filesystem path`);
  }
});

test('uid/gid from setupPrimary apply to workers, which still serve', { timeout: 30000, skip: otherUserSkip() }, async (t) => {
  const copy = copyForWorkers(t, ['cluster.js', 'faults-spawn.js']);
  const figures = {};
  for (const impl of ['rs', 'node']) {
    for (const policy of ['rr', 'none']) {
      const c = startCluster(copy.fixture('faults-spawn.js'), {
        impl, cwd: copy.dir, env: { UID: `${OTHER_UID}`, GID: `${OTHER_GID}`, NODE_CLUSTER_SCHED_POLICY: policy },
      });
      try {
        const { port } = await c.waitFor('ready');
        const ids = await request(port, { path: '/ids', hangMs: 3000 });
        const served = await request(port, { hangMs: 3000 });
        figures[`${impl}/${policy}`] = { ids: ids.ok ? JSON.parse(ids.body) : ids.code, served: served.ok ? 'ok' : served.code };
      } finally {
        await c.stop();
      }
    }
  }
  report(t, 'uid/gid', figures);
  for (const policy of ['rr', 'none']) {
    const f = figures[`rs/${policy}`];
    assert.strictEqual(f.ids.uid, OTHER_UID, `${policy}: worker uid`);
    assert.strictEqual(f.ids.gid, OTHER_GID, `${policy}: worker gid`);
    assert.strictEqual(f.served, 'ok', `${policy}: the worker serves`);
    assert.deepStrictEqual(f.ids, figures[`node/${policy}`].ids, `${policy}: same ids and groups as node:cluster`);
  }
});
