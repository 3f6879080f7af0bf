'use strict';
// The scheduling policies' table lives in Rust (crates/core/src/primary/
// policy/mod.rs, `policies()` in the binding); the cluster object, the
// environment variable, the command and index.d.ts must all follow it.
const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const { ROOT } = require('./helpers');

const native = require(path.join(ROOT, 'js', 'native.js'));
const TABLE = native.policies();

test('the table: Node\'s two first with Node\'s values, names and numbers unique', { timeout: 5000 }, () => {
  assert.deepStrictEqual(TABLE.slice(0, 2).map((p) => [p.name, p.sched, p.constant]), [['none', 1, 'SCHED_NONE'], ['rr', 2, 'SCHED_RR']]);
  assert.strictEqual(new Set(TABLE.map((p) => p.name)).size, TABLE.length);
  assert.strictEqual(new Set(TABLE.map((p) => p.sched)).size, TABLE.length);
  for (const p of TABLE) assert.strictEqual(p.primaryAccepts, p.name !== 'none', p.name);
});

test('cluster.SCHED_* and NODE_CLUSTER_SCHED_POLICY follow the table', { timeout: 20000 }, () => {
  const probe = `const c = require(${JSON.stringify(path.join(ROOT, 'js', 'index.js'))});
    process.stdout.write(JSON.stringify({ policy: c.schedulingPolicy, values: ${JSON.stringify(TABLE.map((p) => p.constant))}.map((k) => c[k]),
      keys: Object.keys(c).filter((k) => k.startsWith('SCHED_')) }));`;
  for (const p of TABLE) {
    const out = JSON.parse(execFileSync(process.execPath, ['-e', probe], { env: { ...process.env, NODE_CLUSTER_SCHED_POLICY: p.name }, encoding: 'utf8' }));
    assert.strictEqual(out.policy, p.sched, `NODE_CLUSTER_SCHED_POLICY=${p.name}`);
    assert.deepStrictEqual(out.values, TABLE.map((q) => q.sched));
    assert.deepStrictEqual(out.keys, ['SCHED_NONE', 'SCHED_RR'], 'only node:cluster\'s own are enumerable');
  }
});

test('the command takes every policy word and lists them in its help', { timeout: 20000 }, () => {
  const help = execFileSync(process.execPath, [path.join(ROOT, 'bin', 'rs-cluster.js'), '--help'], { encoding: 'utf8' });
  assert.match(help, new RegExp(`--policy <${TABLE.map((p) => p.name).join('\\|')}>`));
});

test('index.d.ts (and the generated binding.d.ts) declare each constant and name each policy', { timeout: 5000 }, () => {
  const dts = fs.readFileSync(path.join(ROOT, 'index.d.ts'), 'utf8');
  const declared = new Set([...dts.matchAll(/readonly (SCHED_[A-Z]+): number;/g)].map((m) => m[1]));
  for (const p of TABLE.filter((q) => q.primaryAccepts && q.name !== 'rr')) assert.ok(declared.has(p.constant), `${p.constant} in index.d.ts`);
  const union = TABLE.map((p) => `"${p.name}"`).join(' | ');
  const unions = [...dts.matchAll(/policy: ("[a-z]+"(?: \| "[a-z]+")+)/g)].map((m) => m[1]);
  assert.ok(unions.length >= 2, 'the listener\'s and the routing policy types');
  for (const u of unions) assert.strictEqual(u, union);
  const binding = fs.readFileSync(path.join(ROOT, 'binding.d.ts'), 'utf8');
  const bindingUnions = [...binding.matchAll(/policy: ('[a-z]+'(?: \| '[a-z]+')+)/g)].map((m) => m[1]);
  assert.deepStrictEqual(bindingUnions, [union.replaceAll('"', "'")], 'ListenerStats.policy in src/stats.rs');
});
