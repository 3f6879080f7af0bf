'use strict';
// The register hooks: `node -r ./js/register.js app.js` and
// `node --import ./js/register.mjs app.mjs` make require('cluster'),
// require('node:cluster') and `import cluster from 'node:cluster'` return
// rs-cluster in the primary and in every worker (inherited execArgv). Proof:
// the object is js/index.js's, the primary runs the Rust reactor thread, and
// the workers were started without NODE_UNIQUE_ID. Without a hook the same
// app runs on node:cluster and behaves the same otherwise.

const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const { startCluster, get, ROOT, FIXTURES, FALLBACK } = require('./helpers');
const { waitCount, stop } = require('./listen-helpers');

const APP = path.join(FIXTURES, 'register-app');

// The environment a process was started with (process.env edits aside).
function startEnv(pid) {
  return fs.readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').filter(Boolean).map((kv) => kv.split('=')[0]);
}

async function runApp(t, file, execArgv) {
  const c = startCluster(path.join(APP, file), {
    execArgv, cwd: ROOT, env: { RS_CLUSTER_INDEX: path.join(ROOT, 'js', 'index.js') },
  });
  t.after(() => stop(c));
  const ready = await c.waitFor('ready');
  const { rsThread } = await c.waitFor('threads');
  const identities = await waitCount(c, (e) => e.event === 'identity', 3);
  const workers = c.events.filter((e) => e.event === 'fork').map((e) => e.pid);
  const env = workers.map(startEnv);
  const bodies = new Set();
  for (let i = 0; i < 4; i++) bodies.add((await get(ready.port)).body);
  return {
    identities: identities.map(({ pid, ...rest }) => rest).sort((a, b) => (a.id ?? 0) - (b.id ?? 0)),
    rsThread,
    workerEnv: {
      NODE_UNIQUE_ID: env.map((keys) => keys.includes('NODE_UNIQUE_ID')),
      RS_CLUSTER_WORKER_ID: env.map((keys) => keys.includes('RS_CLUSTER_WORKER_ID')),
    },
    address: { ...ready.address, port: typeof ready.address.port },
    served: [...bodies].sort(),
  };
}

// Without the native primary, rs-cluster is node:cluster's own object and
// workers, hooks or not.
const NODE = {
  rsThread: false,
  workerEnv: { NODE_UNIQUE_ID: [true, true], RS_CLUSTER_WORKER_ID: [false, false] },
  isRs: FALLBACK,
};
const RS = FALLBACK ? NODE : {
  rsThread: true,
  workerEnv: { NODE_UNIQUE_ID: [false, false], RS_CLUSTER_WORKER_ID: [true, true] },
  isRs: true,
};

function check(result, want) {
  assert.strictEqual(result.rsThread, want.rsThread, 'Rust reactor thread in the primary');
  assert.deepStrictEqual(result.workerEnv, want.workerEnv);
  assert.deepStrictEqual(result.identities.map((i) => i.isRs), [want.isRs, want.isRs, want.isRs]);
  assert.deepStrictEqual(result.identities.map((i) => i.same), [true, true, true], 'every specifier gives one object');
  assert.deepStrictEqual(result.identities.map((i) => [i.isPrimary, i.isWorker, i.id]), [[true, false, undefined], [false, true, 1], [false, true, 2]]);
  assert.deepStrictEqual(result.served, ['1', '2']);
}

// What must not depend on the implementation.
const observable = ({ identities, address, served }) => ({
  identities: identities.map(({ isRs, ...rest }) => rest),
  address,
  served,
});

test('node -r register and --import register give rs-cluster everywhere; without them node:cluster', { timeout: 30000 }, async (t) => {
  const [cjsR, esmImport, cjsImport, cjsPlain, esmPlain] = await Promise.all([
    runApp(t, 'app.cjs', ['-r', './js/register.js']),
    runApp(t, 'app.mjs', ['--import', './js/register.mjs']),
    runApp(t, 'app.cjs', ['--import', 'rs-cluster/register']), // the package's own specifier
    runApp(t, 'app.cjs', []),
    runApp(t, 'app.mjs', []),
  ]);
  check(cjsR, RS);
  check(esmImport, RS);
  check(cjsImport, RS);
  check(cjsPlain, NODE);
  check(esmPlain, NODE);
  assert.deepStrictEqual(observable(cjsR), observable(cjsPlain));
  assert.deepStrictEqual(observable(esmImport), observable(esmPlain));
  assert.deepStrictEqual(observable(cjsImport), observable(cjsPlain));
});
