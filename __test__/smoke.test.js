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
