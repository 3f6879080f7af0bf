'use strict';
// The package as published, with no .node anywhere (a platform without a
// prebuilt binary, or an install that skipped it): it loads with one
// warning, runs Node's docs hello world and the command, and a reload under
// load fails no more requests than node:cluster doing the same steps.

const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const { startCluster, get, ROOT, FIXTURES } = require('./helpers');
const { waitForLog } = require('./supervisor-helpers');
const { freePort, churn } = require('../scripts/lib/net');
const { hostPlatform } = require('../scripts/lib');

// npm pack's tarball unpacked as node_modules/rs-cluster of a new app.
function installPacked(t) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rs-cluster-nobinary-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const out = execFileSync('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', dir], { cwd: ROOT, encoding: 'utf8' });
  const { filename } = JSON.parse(out.slice(out.indexOf('[')))[0];
  const pkg = path.join(dir, 'node_modules', 'rs-cluster');
  fs.mkdirSync(pkg, { recursive: true });
  execFileSync('tar', ['-xzf', path.join(dir, filename), '-C', pkg, '--strip-components=1']);
  assert.deepStrictEqual(execFileSync('find', [dir, '-name', '*.node'], { encoding: 'utf8' }), '');
  for (const f of ['hello.js', 'supervisor-hello.js']) fs.copyFileSync(path.join(FIXTURES, f), path.join(dir, f));
  // The docs' hello world requires node:cluster's replacement by name.
  fs.writeFileSync(path.join(dir, 'cluster.js'), "module.exports = require('rs-cluster');\n");
  return { dir, bin: path.join(pkg, 'bin', 'rs-cluster.js') };
}

// Not where the checkout's own node_modules could lend a binary.
const ENV = { RS_CLUSTER_NATIVE: undefined, NODE_OPTIONS: undefined };

test('no .node in the package: node:cluster with one warning; hello world and the command serve; a reload under load fails no more than node:cluster\'s', { timeout: 120000 }, async (t) => {
  const { dir, bin } = installPacked(t);
  const expected = `rs-cluster-${hostPlatform().name}`;

  const hello = startCluster(path.join(dir, 'hello.js'), { cwd: dir, env: ENV });
  t.after(() => hello.stop());
  const { port } = await hello.waitFor('ready');
  const ids = new Set();
  for (let i = 0; i < 40 && ids.size < 2; i++) ids.add((await get(port)).body);
  assert.strictEqual(ids.size, 2);
  const warnings = hello.rawStderr.match(/\[RS_CLUSTER_FALLBACK\] Warning: rs-cluster runs as node:cluster: (.*)/g) ?? [];
  assert.strictEqual(warnings.length, 1, hello.rawStderr);
  assert.match(warnings[0], new RegExp(`the native binary for ${hostPlatform().name} did not load \\(the package ${expected} is missing`));
  await hello.stop();

  // The command and node:cluster, each reloaded twice under the same load.
  const sides = {
    rs: { file: bin, args: ['-w', '2', 'supervisor-hello.js'], ready: /listening on/, done: /reloaded in/g },
    node: { file: path.join(FIXTURES, 'node-reload.js'), args: [path.join(dir, 'supervisor-hello.js')], ready: /listening/, done: /reloaded/g },
  };
  const failures = {};
  for (const [name, side] of Object.entries(sides)) {
    const sidePort = await freePort();
    const h = startCluster(side.file, { cwd: dir, args: side.args, env: { ...ENV, PORT: `${sidePort}` } });
    t.after(() => h.stop());
    await waitForLog(h, side.ready);
    const load = churn(sidePort, 4);
    for (let round = 1; round <= 2; round++) {
      await new Promise((r) => setTimeout(r, 500));
      process.kill(h.child.pid, 'SIGHUP');
      await waitForLog(h, new RegExp(`(${side.done.source}[^]*){${round}}`), 30000);
    }
    await new Promise((r) => setTimeout(r, 300));
    const result = await load.stop();
    assert.ok(result.ok > 100, `${name}: only ${result.ok} requests answered`);
    failures[name] = result.failures;
    process.kill(h.child.pid, 'SIGTERM');
    assert.strictEqual((await h.waitExit(15000)).code, 0, h.stderr);
    if (name === 'rs') assert.strictEqual((h.rawStderr.match(/RS_CLUSTER_FALLBACK/g) ?? []).length, 1, h.rawStderr);
  }
  t.diagnostic(`failed requests during two reloads: rs-cluster without a binary ${failures.rs}, node:cluster ${failures.node}`);
  // Both are node:cluster's round-robin, whose losses at a reload are few and
  // random: no more than node:cluster's count, within three of its standard
  // deviations (as a Poisson count).
  assert.ok(failures.rs <= failures.node + 3 * Math.sqrt(failures.node + 1),
            `rs-cluster failed ${failures.rs} requests, node:cluster ${failures.node}`);
});
