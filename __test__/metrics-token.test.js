'use strict';
// The status page's files and the endpoint's token: the page and its assets
// served from the package with a strict Content-Security-Policy, holding no
// data, light enough (gzip ≤ 100 KB); with metricsToken, /stats, /metrics
// and any other path ask for it (401, no detail), the probes and the page's
// files do not; a bad token is refused at once without being shown; an
// endpoint beyond loopback with no token warns once.
const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const zlib = require('node:zlib');
const { spawnSync } = require('node:child_process');
const { get } = require('./helpers');
const { startMetricsApp } = require('./metrics-helpers');

const ROOT = path.resolve(__dirname, '..');
const PAGE = ['index.html', 'status.css', 'status.js', 'view.js'];
const TOKEN = 'b4ee6f0a-9a1e-4d7c-8f35-status-page';

test('the page and its assets weigh at most 100 KB gzipped, and the package ships them', (t) => {
  const gzipped = PAGE.reduce((n, f) => n + zlib.gzipSync(fs.readFileSync(path.join(ROOT, 'js', 'status', f)), { level: 9 }).length, 0);
  t.diagnostic(`${gzipped} bytes gzipped`);
  assert.ok(gzipped <= 100 * 1024, `${gzipped} bytes gzipped`);
  const { files } = require('../package.json');
  assert.ok(files.includes('js/'), 'package.json files ships js/ (and so js/status/)');
});

test('GET / serves the page shell: its own files only, no inline script, no data', { timeout: 30000 }, async () => {
  const { app, metricsPort } = await startMetricsApp();
  try {
    const page = await get(metricsPort, { path: '/' });
    assert.strictEqual(page.status, 200);
    assert.strictEqual(page.headers['content-type'], 'text/html; charset=utf-8');
    assert.strictEqual(page.headers['x-content-type-options'], 'nosniff');
    const csp = page.headers['content-security-policy'];
    assert.match(csp, /default-src 'self'/);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
    // Scripts come from files, by relative URLs (a proxy's prefix applies).
    assert.doesNotMatch(page.body, /<script>|<script [^>]*>[^<]/);
    for (const src of page.body.matchAll(/(?:src|href)="([^"]+)"/g)) assert.match(src[1], /^(?:[a-z]+\.(?:js|css)|data:,)$/);
    const pid = String(app.events.find((e) => e.event === 'primary').pid);
    assert.ok(!page.body.includes(pid), 'no data in the shell');
    for (const [file, type] of [['status.js', 'text/javascript'], ['view.js', 'text/javascript'], ['status.css', 'text/css']]) {
      const r = await get(metricsPort, { path: `/${file}` });
      assert.strictEqual(r.status, 200, file);
      assert.strictEqual(r.headers['content-type'], `${type}; charset=utf-8`);
      assert.strictEqual(r.body, fs.readFileSync(path.join(ROOT, 'js', 'status', file), 'utf8'));
    }
    assert.strictEqual((await get(metricsPort, { path: '/stats' })).headers['x-content-type-options'], 'nosniff');
  } finally {
    await app.stop();
  }
});

test('with a token: data paths answer 401 with no detail unless it is given; probes and the page stay open', { timeout: 30000 }, async () => {
  const { app, metricsPort } = await startMetricsApp({ RS_CLUSTER_METRICS_TOKEN: TOKEN });
  try {
    const refusals = [];
    for (const p of ['/stats', '/metrics', '/nothing']) {
      for (const authorization of [undefined, `Bearer ${TOKEN}x`, `Bearer ${TOKEN.slice(0, -1)}`, `Basic ${TOKEN}`, 'Bearer', TOKEN]) {
        const r = await get(metricsPort, { path: p, headers: authorization === undefined ? {} : { authorization } });
        refusals.push([r.status, r.headers['www-authenticate'], r.body]);
      }
    }
    // Every refusal alike: nothing tells a missing token from a wrong one.
    assert.deepStrictEqual(new Set(refusals.map((r) => JSON.stringify(r))), new Set([JSON.stringify([401, 'Bearer', 'unauthorized\n'])]));
    for (const authorization of [`Bearer ${TOKEN}`, `bearer ${TOKEN}`]) {
      const s = await get(metricsPort, { path: '/stats', headers: { authorization } });
      assert.strictEqual(s.status, 200);
      assert.strictEqual(JSON.parse(s.body).workers.length, 2);
    }
    assert.strictEqual((await get(metricsPort, { path: '/metrics', headers: { authorization: `Bearer ${TOKEN}` } })).status, 200);
    assert.strictEqual((await get(metricsPort, { path: '/nothing', headers: { authorization: `Bearer ${TOKEN}` } })).status, 404);
    for (const p of ['/healthz', '/readyz', '/', '/status.js', '/status.css', '/view.js']) {
      assert.strictEqual((await get(metricsPort, { path: p })).status, 200, p);
    }
  } finally {
    await app.stop();
  }
});

test('a bad token is refused at once and not shown: setupPrimary, the environment, the command', () => {
  const cluster = require('../js/index.js');
  for (const bad of ['two words', '', 'x'.repeat(1025), 'tab\there']) {
    assert.throws(() => cluster.setupPrimary({ metricsToken: bad }), (err) => {
      assert.strictEqual(err.code, 'ERR_INVALID_ARG_VALUE');
      assert.ok(bad === '' || !err.message.includes(bad), err.message);
      return true;
    });
  }
  assert.throws(() => cluster.setupPrimary({ metricsToken: 42 }), { code: 'ERR_INVALID_ARG_TYPE' });
  assert.throws(() => require('../js/settings').fromEnv({ RS_CLUSTER_METRICS_TOKEN: 'sec ret' }),
                (err) => err.code === 'ERR_INVALID_ARG_VALUE' && !err.message.includes('sec ret'));
  const cli = (args, env = {}) => spawnSync(process.execPath, [path.join(ROOT, 'bin', 'rs-cluster.js'), ...args],
                                            { env: { ...process.env, ...env }, encoding: 'utf8', timeout: 10000 });
  const spaced = cli(['--metrics', '9', '--metrics-token', 'my secret', 'app.js']);
  assert.strictEqual(spaced.status, 2);
  assert.match(spaced.stderr, /--metrics-token must be 1 to 1024 visible ASCII characters/);
  assert.ok(!spaced.stderr.includes('my secret'), spaced.stderr);
  const alone = cli(['--metrics-token', TOKEN, 'app.js'], { RS_CLUSTER_METRICS: '' });
  assert.strictEqual(alone.status, 2);
  assert.match(alone.stderr, /--metrics-token guards the metrics endpoint: it needs --metrics/);
});

test('beyond loopback without a token: one warning at start; with one, or on loopback, none', { timeout: 30000 }, async () => {
  const { freePort } = require('./metrics-helpers');
  for (const [env, warns] of [
    [{ METRICS: `0.0.0.0:${await freePort()}` }, true],
    [{ METRICS: `0.0.0.0:${await freePort()}`, RS_CLUSTER_METRICS_TOKEN: TOKEN }, false],
    [{}, false],
  ]) {
    const { app } = await startMetricsApp(env);
    try {
      const n = (app.stderr.match(/\[RS_CLUSTER_METRICS_OPEN\] Warning: the metrics endpoint listens on 0\.0\.0\.0/g) ?? []).length;
      assert.strictEqual(n, warns ? 1 : 0, `${JSON.stringify(env)}: ${app.stderr}`);
    } finally {
      await app.stop();
    }
  }
});
