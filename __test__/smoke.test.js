'use strict';
const test = require('node:test');
const assert = require('node:assert');
const { startCluster, get, IMPLS } = require('./helpers');

for (const impl of IMPLS) {
  test(`hello world serves from every worker (${impl})`, { timeout: 30000 }, async (t) => {
    const c = startCluster('hello.js', { impl, env: { WORKERS: '2' } });
    t.after(() => c.stop());
    const { port } = await c.waitFor('ready');
    const seen = new Set();
    for (let i = 0; i < 10; i++) seen.add((await get(port)).body);
    assert.deepStrictEqual([...seen].sort(), ['1', '2']);
  });
}

// Workers load the addon from the file the primary found (RS_CLUSTER_ADDON);
// a path that no longer loads falls back to the platform lookup.
test('the addon loads from an inherited path, and through the loader when that path is bad', { timeout: 15000 }, () => {
  const { execFileSync } = require('node:child_process');
  const path = require('node:path');
  const native = path.join(__dirname, '..', 'js', 'native.js');
  const probe = `const n = require(${JSON.stringify(native)}); console.log(JSON.stringify([n.addonFile, typeof n.PrimaryReactor]))`;
  const load = (env) => JSON.parse(execFileSync(process.execPath, ['-e', probe], {
    env: { ...process.env, ...env }, encoding: 'utf8', timeout: 10000,
  }));
  const [found, ctor] = load({ RS_CLUSTER_ADDON: '' });
  assert.match(found, /\.node$/);
  assert.strictEqual(ctor, 'function');
  assert.deepStrictEqual(load({ RS_CLUSTER_ADDON: found }), [found, 'function']);
  assert.deepStrictEqual(load({ RS_CLUSTER_ADDON: path.join(__dirname, 'no-such-addon.node') }), [found, 'function']);
});
