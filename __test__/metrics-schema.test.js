'use strict';
// One stats schema. index.d.ts's `Stats` is the definition of what
// cluster.stats() returns; js/prometheus.js's METRICS table of what
// cluster.metrics() exports. Held together here:
// - tsc checks js/stats.js (built from the binding's ReactorStats, typed in
//   binding.d.ts), js/prometheus.js and js/top.js against those types;
// - a real cluster's cluster.stats(), before any fork and while serving,
//   matches `Stats` key for key, value for value (numbers, not BigInt);
// - cluster.metrics() exports METRICS' families, in order, with their labels;
//   README's metrics table and the additions contract name the same metrics.
const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const ts = require('typescript');
const { startCluster, ROOT, FALLBACK, nativeOnly } = require('./helpers');
const { parseExposition } = require('./metrics-helpers');
const { METRICS } = require('../js/prometheus');

const INDEX = path.join(ROOT, 'index.d.ts');
const TYPED_JS = ['stats.js', 'prometheus.js', 'top.js', 'address.js', 'procinfo.js', 'metrics-server.js']
  .map((f) => path.join(ROOT, 'js', f));
// The contract the additions were built to: in the shared folder beside the
// checkout (as on a developer's machine and CI's), not in the repository.
const ADDITIONS = path.join(ROOT, '..', 'shared', 'notes', 'additions.md');

let program = null;
function compile() {
  program ??= ts.createProgram([INDEX, ...TYPED_JS], {
    allowJs: true, checkJs: true, noEmit: true, target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.CommonJS, moduleResolution: ts.ModuleResolutionKind.Node10, types: ['node'], skipLibCheck: true, strictNullChecks: true,
  });
  return program;
}

// The type of `cluster.<name>` in index.d.ts.
function publicType(name) {
  const checker = compile().getTypeChecker();
  const file = compile().getSourceFile(INDEX);
  for (const s of file.statements) {
    if (!ts.isModuleDeclaration(s) || s.name.text !== 'cluster') continue;
    for (const d of s.body.statements) {
      if (ts.isInterfaceDeclaration(d) && d.name.text === name) return { checker, type: checker.getTypeAtLocation(d.name), at: d };
    }
  }
  throw new Error(`no cluster.${name} in index.d.ts`);
}

const describe = (v) => JSON.stringify(v) ?? String(v);

// Where `value` differs from `type`: missing or extra keys, a value of
// another kind (the fixture tags BigInt, undefined and NaN as objects).
function mismatches(checker, type, value, where, at, out = []) {
  if (type.isUnion()) {
    const tries = type.types.map((t) => mismatches(checker, t, value, where, at, []));
    if (!tries.some((m) => m.length === 0)) out.push(...tries.reduce((a, b) => (a.length <= b.length ? a : b)));
    return out;
  }
  const expect = (ok) => {
    if (!ok) out.push(`${where}: ${describe(value)} is not ${checker.typeToString(type)}`);
    return out;
  };
  if (type.flags & ts.TypeFlags.Null) return expect(value === null);
  if (type.flags & ts.TypeFlags.Number) return expect(typeof value === 'number');
  if (type.flags & ts.TypeFlags.String) return expect(typeof value === 'string');
  if (type.flags & ts.TypeFlags.Boolean) return expect(typeof value === 'boolean');
  if (type.isStringLiteral() || type.isNumberLiteral()) return expect(value === type.value);
  if (type.flags & ts.TypeFlags.BooleanLiteral) return expect(value === (checker.typeToString(type) === 'true'));
  if (checker.isArrayType(type)) {
    if (!Array.isArray(value)) return expect(false);
    const [element] = checker.getTypeArguments(type);
    value.forEach((v, i) => mismatches(checker, element, v, `${where}[${i}]`, at, out));
    return out;
  }
  if (type.flags & ts.TypeFlags.Object) {
    if (value === null || typeof value !== 'object' || Array.isArray(value) || '$bigint' in value || '$undefined' in value || '$number' in value) {
      return expect(false);
    }
    const props = checker.getPropertiesOfType(type);
    const names = props.map((p) => p.name);
    for (const key of Object.keys(value)) if (!names.includes(key)) out.push(`${where}.${key}: not in ${checker.typeToString(type)}`);
    for (const p of props) {
      if (!Object.hasOwn(value, p.name)) {
        out.push(`${where}.${p.name}: missing`);
        continue;
      }
      mismatches(checker, checker.getTypeOfSymbolAtLocation(p, at), value[p.name], `${where}.${p.name}`, at, out);
    }
    return out;
  }
  return expect(false);
}

function checkStats(value) {
  const { checker, type, at } = publicType('Stats');
  return mismatches(checker, type, value, 'stats', at);
}

let running = null;
// Both snapshots of the fixture, taken once for all the tests below.
function snapshots() {
  running ??= (async () => {
    const socket = path.join(os.tmpdir(), `rs-cluster-schema-${process.pid}.sock`);
    fs.rmSync(socket, { force: true });
    // Sticky, for every listener field; node:cluster's own rr without the native primary.
    const app = startCluster('stats-schema-app.js', { env: { SOCKET: socket, NODE_CLUSTER_SCHED_POLICY: FALLBACK ? 'rr' : 'sticky' } });
    try {
      const before = await app.waitFor((e) => e.event === 'stats' && e.when === 'before');
      const serving = await app.waitFor((e) => e.event === 'stats' && e.when === 'serving', 20000);
      return { before: before.stats, serving: serving.stats, metrics: serving.metrics };
    } finally {
      await app.stop();
      fs.rmSync(socket, { force: true });
    }
  })();
  return running;
}

test('the stats modules type-check against index.d.ts and binding.d.ts', { timeout: 60000 }, () => {
  const p = compile();
  const errors = TYPED_JS.flatMap((f) => ts.getPreEmitDiagnostics(p, p.getSourceFile(f)))
    .filter((d) => d.file && TYPED_JS.includes(path.resolve(d.file.fileName)))
    .map((d) => `${path.relative(ROOT, d.file.fileName)}: ${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`);
  assert.deepStrictEqual(errors, []);
});

test('cluster.stats() matches index.d.ts Stats key for key, before any fork and while serving', { timeout: 60000 }, async () => {
  const { before, serving } = await snapshots();
  assert.deepStrictEqual(checkStats(before), [], 'before any fork');
  // Every array holds something, so that its elements are checked too.
  assert.strictEqual(serving.workers.length, 2);
  if (FALLBACK) {
    // What node:cluster's primary does not know is null, or no listener.
    assert.deepStrictEqual([serving.listeners, serving.rerouted, serving.totals.handoff], [[], null, null]);
    assert.ok(serving.workers.every((w) => w.accepted === null && w.eventLoopLag === null && w.rss > 0));
  } else {
    assert.deepStrictEqual(serving.listeners.map((l) => l.address.startsWith('/')).sort(), [false, true], 'a TCP and a unix listener');
    assert.ok(serving.handoffBounds.length > 0 && serving.workers.every((w) => w.handoff.buckets.length > 0));
  }
  assert.deepStrictEqual(checkStats(serving), [], 'while serving');
});

test('the check fails on a missing, extra or mistyped key', { timeout: 60000, skip: nativeOnly('the listeners it mistypes') }, async () => {
  const { serving } = await snapshots();
  const copy = () => JSON.parse(JSON.stringify(serving));
  const missing = copy();
  delete missing.workers[0].eventLoopLag;
  assert.deepStrictEqual(checkStats(missing), ['stats.workers[0].eventLoopLag: missing']);
  const extra = copy();
  extra.listeners[0].backlog = 1;
  assert.match(checkStats(extra).join('\n'), /stats\.listeners\[0\]\.backlog: not in ListenerStats/);
  const big = copy();
  big.totals.accepted = { $bigint: '20' };
  assert.match(checkStats(big).join('\n'), /stats\.totals\.accepted: .* is not (?:number|null)/);
  const policy = copy();
  policy.listeners[0].policy = 'fastest';
  assert.strictEqual(checkStats(policy).length, 1);
});

test('cluster.metrics() exports the METRICS table: its families in order, with their labels', { timeout: 60000 }, async () => {
  const { metrics } = await snapshots();
  const families = parseExposition(metrics);
  // Without the native primary, its families are not exported.
  const exported = METRICS.filter((m) => !(FALLBACK && m.native));
  assert.deepStrictEqual([...families.keys()], exported.map((m) => m.name));
  for (const m of exported) {
    const f = families.get(m.name);
    assert.strictEqual(f.type, m.type, m.name);
    assert.ok(f.samples.length > 0, `${m.name} has samples`);
    const used = new Set(f.samples.flatMap((s) => Object.keys(s.labels)).filter((l) => !(m.type === 'histogram' && l === 'le')));
    // sticky_key only with policy sticky, which needs the native primary.
    const labels = FALLBACK ? m.labels.filter((l) => l !== 'sticky_key') : m.labels;
    assert.deepStrictEqual([...used].sort(), [...labels].sort(), `${m.name}'s labels`);
  }
});

// `rs_cluster_x{a, b}` -> ['rs_cluster_x', ['a', 'b']], for each metric named in `text`.
function named(text) {
  return [...text.matchAll(/`(rs_cluster_\w+)(?:\{([^}]*)\})?`/g)].map((m) => [m[1], m[2] ? m[2].split(',').map((l) => l.trim()).sort() : []]);
}

test('README\'s metrics table lists the METRICS table: names, labels and types', () => {
  const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const rows = readme.split('\n').filter((l) => l.startsWith('| `rs_cluster_'));
  const listed = rows.flatMap((row) => {
    const [, names, type] = row.split('|').map((c) => c.trim());
    return named(names).map(([name, labels]) => ({ name, labels, type }));
  });
  assert.deepStrictEqual(listed, METRICS.map((m) => ({ name: m.name, labels: [...m.labels].sort(), type: m.type })));
});

test('every metric the additions contract names is exported', { skip: (!fs.existsSync(ADDITIONS) && `${ADDITIONS} is not here`) || nativeOnly('the connection metrics') }, async () => {
  const text = fs.readFileSync(ADDITIONS, 'utf8');
  const section = text.slice(text.indexOf('## Metrics')).split(/\n## /)[0];
  const names = named(section);
  assert.ok(names.length >= 12, `${names.length} metrics named`);
  const { metrics } = await snapshots();
  const families = parseExposition(metrics);
  for (const [name, labels] of names) {
    assert.ok(families.has(name), `${name} is not in cluster.metrics()`);
    const declared = METRICS.find((m) => m.name === name).labels;
    for (const l of labels) assert.ok(declared.includes(l), `${name}: label ${l}`);
  }
});
