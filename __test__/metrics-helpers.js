'use strict';
// Plumbing for the metrics tests: start metrics-app.js with an endpoint on a
// free port, read /stats and /metrics, and check Prometheus text: with
// promtool when it is on the PATH, and always with the parser below, which
// also gives the samples' values to assert on.

const assert = require('node:assert');
const { spawnSync } = require('node:child_process');
const { startCluster, get } = require('./helpers');
const { freePort } = require('../scripts/lib/net');

const HAS_PROMTOOL = spawnSync('promtool', ['--version'], { stdio: 'ignore' }).status === 0;

// metrics-app.js with METRICS=127.0.0.1:<free port>, once its workers listen.
async function startMetricsApp(env = {}) {
  const metricsPort = await freePort();
  const app = startCluster('metrics-app.js', { env: { METRICS: `127.0.0.1:${metricsPort}`, ...env } });
  const { port } = await app.waitFor('ready');
  return { app, port, metricsPort };
}

async function stats(metricsPort) {
  const r = await get(metricsPort, { path: '/stats' });
  assert.strictEqual(r.status, 200, r.body);
  return JSON.parse(r.body);
}

const NAME = '[a-zA-Z_:][a-zA-Z0-9_:]*';
const VALUE = '[-+]?(?:[0-9]*\\.?[0-9]+(?:[eE][-+]?[0-9]+)?|Inf|NaN)';
const SAMPLE = new RegExp(`^(${NAME})(?:\\{(.*)\\})? (${VALUE})$`);
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)/y;
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);

function parseLabels(text, line) {
  const labels = {};
  LABEL.lastIndex = 0;
  while (LABEL.lastIndex < text.length) {
    const m = LABEL.exec(text);
    assert.ok(m, `bad labels in: ${line}`);
    labels[m[1]] = m[2].replace(/\\(.)/g, (_, c) => (c === 'n' ? '\n' : c));
  }
  return labels;
}

// Text format 0.0.4 as Prometheus reads it, strictly: one HELP and TYPE per
// family before its samples, families not interleaved, no repeated series,
// counters named *_total, histograms' buckets cumulative up to +Inf ==
// _count. Returns name -> { type, help, samples: [{ name, labels, value }] }.
function parseExposition(text) {
  assert.ok(text.endsWith('\n'), 'ends with a newline');
  const families = new Map();
  const seen = new Set();
  let current = null;
  for (const line of text.slice(0, -1).split('\n')) {
    const meta = /^# (HELP|TYPE) (\S+) (.*)$/.exec(line);
    if (meta) {
      const [, kind, name, rest] = meta;
      assert.match(name, new RegExp(`^${NAME}$`));
      if (!families.has(name)) {
        assert.ok(current === null || current.samples.length > 0 || current.name === name, `${current?.name} has no samples`);
        families.set(name, { name, type: 'untyped', help: null, samples: [] });
      }
      current = families.get(name);
      assert.strictEqual(current.samples.length, 0, `${kind} of ${name} after its samples`);
      if (kind === 'TYPE') {
        assert.ok(TYPES.has(rest), `type ${rest}`);
        current.type = rest;
      } else {
        assert.strictEqual(current.help, null, `a second HELP for ${name}`);
        current.help = rest;
      }
      continue;
    }
    assert.ok(!line.startsWith('#') || line.startsWith('# '), `bad comment: ${line}`);
    if (line.startsWith('#')) continue;
    const m = SAMPLE.exec(line);
    assert.ok(m, `bad sample line: ${JSON.stringify(line)}`);
    const [, name, labelText = '', value] = m;
    const base = current && current.type === 'histogram' ? name.replace(/_(bucket|sum|count)$/, '') : name;
    assert.ok(current && current.name === base, `${name} outside its family (after ${current?.name})`);
    const labels = parseLabels(labelText, line);
    const key = `${name}{${Object.entries(labels).sort().map(([k, v]) => `${k}=${v}`)}}`;
    assert.ok(!seen.has(key), `repeated series ${key}`);
    seen.add(key);
    current.samples.push({ name, labels, value: Number(value.replace('Inf', 'Infinity')) });
  }
  for (const f of families.values()) {
    if (f.type === 'counter') assert.match(f.name, /_total$/, 'counters end in _total');
    if (f.type === 'histogram') checkHistogram(f);
  }
  return families;
}

function checkHistogram(f) {
  const buckets = f.samples.filter((s) => s.name === `${f.name}_bucket`);
  const les = buckets.map((s) => Number(s.labels.le.replace('Inf', 'Infinity')));
  assert.ok(les.length > 0 && les.at(-1) === Infinity, `${f.name}: buckets end in +Inf`);
  for (let i = 1; i < les.length; i++) {
    assert.ok(les[i] > les[i - 1], `${f.name}: le ascending`);
    assert.ok(buckets[i].value >= buckets[i - 1].value, `${f.name}: buckets cumulative`);
  }
  const count = f.samples.find((s) => s.name === `${f.name}_count`);
  assert.ok(count && f.samples.some((s) => s.name === `${f.name}_sum`), `${f.name}: _sum and _count`);
  assert.strictEqual(buckets.at(-1).value, count.value, `${f.name}: +Inf bucket == _count`);
}

// GET /metrics, checked (promtool too, if installed); returns the families.
async function metrics(metricsPort) {
  const r = await get(metricsPort, { path: '/metrics' });
  assert.strictEqual(r.status, 200, r.body);
  assert.strictEqual(r.headers['content-type'], 'text/plain; version=0.0.4; charset=utf-8');
  if (HAS_PROMTOOL) {
    const check = spawnSync('promtool', ['check', 'metrics'], { input: r.body, encoding: 'utf8', timeout: 10000 });
    assert.strictEqual(check.status, 0, `promtool: ${check.stdout}${check.stderr}\n${r.body}`);
  }
  return parseExposition(r.body);
}

// The sum of the samples named `name` (those whose labels match `where`).
function total(families, name, where = () => true) {
  const samples = [...families.values()].flatMap((f) => f.samples).filter((s) => s.name === name);
  assert.ok(samples.length > 0, `no ${name}`);
  return samples.filter((s) => where(s.labels)).reduce((a, s) => a + s.value, 0);
}

module.exports = { HAS_PROMTOOL, startMetricsApp, stats, metrics, parseExposition, total, freePort };
