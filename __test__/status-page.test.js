'use strict';
// The status page (GET / on the metrics endpoint) in a real browser: the
// system's Chromium, headless (scripts/lib/chromium.js). A 2-worker cluster
// under load: one row per worker with its pid, a reload's new pids and its
// marker, a killed worker's restart for 'crash', the primary stopped for 3 s
// shown as "not answering" and then recovered; behind a proxy under an odd
// path prefix, with answers that are not JSON for a while; with a token
// asked once. No console error, no failed request but those the test causes.
// Screenshots (light, dark, phone) go to a temp dir, or to
// RS_CLUSTER_SCREENSHOTS=dir (docs/status-page/ holds the README's).
// Without Chromium the tests skip, unless CI is set: then they fail.
const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const http = require('node:http');
const { sleep } = require('./fixtures/faults-lib');
const { startMetricsApp } = require('./metrics-helpers');
const { churn } = require('../scripts/lib/net');
const { FALLBACK } = require('./helpers');
const chromium = require('../scripts/lib/chromium');

const why = chromium.missing();
const skip = why !== null && !process.env.CI && `${why}; with CI set this test fails instead`;
if (why !== null && process.env.CI) throw new Error(`status-page test in CI: ${why}`);

// The cluster's pids as the fixture printed them (fork minus exit).
function livePids(app) {
  const pids = new Map();
  for (const e of app.events) {
    if (e.event === 'fork') pids.set(e.id, e.pid);
    if (e.event === 'exit') pids.delete(e.id);
  }
  return [...pids.values()].sort();
}

// A page that records what went wrong in it: console errors, failed
// requests and answers >= 400, each with when it happened.
async function openPage(browser, { viewport = { width: 1280, height: 800 } } = {}) {
  const page = await browser.newPage({ viewport });
  const problems = [];
  page.on('console', (m) => { if (m.type() === 'error') problems.push({ at: Date.now(), what: `console: ${m.text()}` }); });
  page.on('pageerror', (err) => problems.push({ at: Date.now(), what: `page error: ${err.message}` }));
  page.on('requestfailed', (r) => problems.push({ at: Date.now(), what: `failed: ${r.url()} ${r.failure()?.errorText}`, url: r.url() }));
  page.on('response', (r) => { if (r.status() >= 400) problems.push({ at: Date.now(), what: `${r.status()}: ${r.url()}`, url: r.url() }); });
  return { page, problems };
}

const rowPids = (page) => page.$$eval('#workers tbody tr', (rows) => rows.map((r) => Number(r.dataset.pid)).sort());

async function until(what, check, timeout) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const last = await check();
    if (last === true) return;
    if (Date.now() > deadline) assert.fail(`${what} within ${timeout} ms; last: ${JSON.stringify(last)}`);
    await sleep(100);
  }
}

function shotsDir() {
  const dir = process.env.RS_CLUSTER_SCREENSHOTS || fs.mkdtempSync(path.join(os.tmpdir(), 'rs-cluster-shots-'));
  fs.mkdirSync(dir, { recursive: true });
  return dir;
}

test('under load: a row per worker, a reload, a crash, a stopped primary; screenshots', { skip, timeout: 90000 }, async (t) => {
  const { app, port, metricsPort } = await startMetricsApp({ RS_CLUSTER_RESPAWN: '1', RS_CLUSTER_RELOAD_SIGNAL: 'SIGHUP' });
  // Also if the browser cannot start: no cluster left behind.
  t.after(() => app.stop());
  const browser = await chromium.launch();
  const load = churn(port, 4);
  try {
    const { page, problems } = await openPage(browser);
    const t0 = Date.now();
    await page.goto(`http://127.0.0.1:${metricsPort}/`);
    await page.waitForSelector('#workers tbody tr');
    const firstRender = Date.now() - t0;
    t.diagnostic(`first render: ${firstRender} ms`);
    // The target is 1 s; a loaded CI machine gets room.
    assert.ok(firstRender < 5000, `first render took ${firstRender} ms`);
    await until('the rows show the fork pids', async () => {
      const shown = await rowPids(page);
      return JSON.stringify(shown) === JSON.stringify(livePids(app)) || shown;
    }, 3000);
    // It says so when the counters are unknown (no native primary).
    assert.strictEqual(await page.isVisible('#no-native'), FALLBACK);

    // The README's screenshot: a few seconds of load drawn.
    await sleep(12000);
    const dir = shotsDir();
    await page.screenshot({ path: path.join(dir, 'light.png') });
    await page.emulateMedia({ colorScheme: 'dark' });
    await sleep(1100);
    await page.screenshot({ path: path.join(dir, 'dark.png') });
    await page.emulateMedia({ colorScheme: 'light' });
    t.diagnostic(`screenshots in ${dir}`);

    // A rolling reload: its marker, then the new pids within 2 s of its end.
    const old = livePids(app);
    process.kill(app.child.pid, 'SIGHUP');
    await page.waitForSelector('#events li[data-kind="reload"]', { timeout: 5000 });
    await app.waitFor((e) => e.event === 'exit' && e.id === 2, 20000);
    const fresh = livePids(app);
    assert.ok(fresh.every((pid) => !old.includes(pid)), `${old} -> ${fresh}`);
    await until('the new pids shown', async () => {
      const shown = await rowPids(page);
      return JSON.stringify(shown) === JSON.stringify(fresh) || shown;
    }, 2000);

    // A killed worker: a restart for 'crash', and its successor's pid.
    const victim = fresh[0];
    process.kill(victim, 'SIGKILL');
    await page.waitForSelector('#events li[data-kind="restart"][data-reason="crash"]', { timeout: 5000 });
    await until('the successor shown', async () => {
      const shown = await rowPids(page);
      return (shown.length === 2 && !shown.includes(victim) && JSON.stringify(shown) === JSON.stringify(livePids(app))) || shown;
    }, 5000);

    // The primary stopped for 3 s: "not answering", then live again by itself.
    const stoppedAt = Date.now();
    process.kill(app.child.pid, 'SIGSTOP');
    try {
      await page.waitForSelector('#conn[data-state="down"]', { timeout: 3000 });
      assert.match(await page.textContent('#conn'), /not answering since \d\d:\d\d:\d\d/);
      await sleep(Math.max(0, 3000 - (Date.now() - stoppedAt)));
    } finally {
      process.kill(app.child.pid, 'SIGCONT');
    }
    await page.waitForSelector('#conn[data-state="live"]', { timeout: 4000 });
    const recovered = Date.now();

    // Phone-sized, after all that: the events list holds them.
    await page.setViewportSize({ width: 390, height: 844 });
    await sleep(1100);
    await page.screenshot({ path: path.join(dir, 'phone.png'), fullPage: true });

    // Only the reads of stats cut short while the primary was stopped failed.
    const unexpected = problems.filter((p) => !(p.url?.endsWith('/stats') && p.at >= stoppedAt && p.at <= recovered));
    assert.deepStrictEqual(unexpected.map((p) => p.what), []);
  } finally {
    await load.stop();
    await browser.close();
    await app.stop();
  }
});

// A reverse proxy serving the endpoint under `prefix`; `garbage` turns its
// /stats answers into something that is not JSON.
function proxy(prefix, metricsPort) {
  const state = { garbage: false };
  const server = http.createServer((req, res) => {
    if (!req.url.startsWith(prefix)) {
      res.writeHead(404).end();
      return;
    }
    const rest = `/${req.url.slice(prefix.length)}`;
    if (state.garbage && rest === '/stats') {
      res.writeHead(200, { 'Content-Type': 'text/html' }).end('<html>502 Bad Gateway, said nobody</html>');
      return;
    }
    const up = http.request({ host: '127.0.0.1', port: metricsPort, path: rest, method: req.method, headers: req.headers }, (r) => {
      res.writeHead(r.statusCode, r.headers);
      r.pipe(res);
    });
    up.on('error', () => res.writeHead(502).end());
    req.pipe(up);
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ server, state, port: server.address().port })));
}

test('behind a proxy under an odd path prefix; answers that are not JSON for 3 s', { skip, timeout: 60000 }, async (t) => {
  const { app, metricsPort } = await startMetricsApp();
  // Also if the browser cannot start: no cluster left behind.
  t.after(() => app.stop());
  const browser = await chromium.launch();
  const url = new URL('/ops/rs cluster%20x/<i>"\'&/', 'http://127.0.0.1:1/');
  const front = await proxy(url.pathname, metricsPort);
  try {
    const { page, problems } = await openPage(browser);
    await page.goto(`http://127.0.0.1:${front.port}${url.pathname}`);
    await page.waitForSelector('#conn[data-state="live"]', { timeout: 5000 });
    assert.strictEqual(await page.$$eval('#workers tbody tr', (r) => r.length), 2);
    // The prefix is shown as text, as the browser encoded it; nothing of it became markup.
    assert.strictEqual(await page.textContent('#where'), `127.0.0.1:${front.port}${url.pathname}`);
    assert.strictEqual(await page.$$eval('header i, header b', (els) => els.length), 0);

    front.state.garbage = true;
    await page.waitForSelector('#conn[data-state="down"]', { timeout: 3000 });
    assert.match(await page.textContent('#conn'), /not answering since .*not JSON/);
    await sleep(3000);
    front.state.garbage = false;
    await page.waitForSelector('#conn[data-state="live"]', { timeout: 3000 });
    assert.strictEqual(await page.$$eval('#workers tbody tr', (r) => r.length), 2);
    assert.deepStrictEqual(problems.map((x) => x.what), []);
  } finally {
    front.server.close();
    await browser.close();
    await app.stop();
  }
});

test('with a token: the page asks once, a wrong one is refused, the right one kept for the tab', { skip, timeout: 60000 }, async (t) => {
  const token = 'a-token-for-the-test';
  const { app, metricsPort } = await startMetricsApp({ RS_CLUSTER_METRICS_TOKEN: token });
  // Also if the browser cannot start: no cluster left behind.
  t.after(() => app.stop());
  const browser = await chromium.launch();
  try {
    const { page, problems } = await openPage(browser);
    await page.goto(`http://127.0.0.1:${metricsPort}/`);
    await page.waitForSelector('#login:not([hidden])', { timeout: 5000 });
    assert.strictEqual(await page.getAttribute('#conn', 'data-state'), 'auth');
    await page.fill('#token', 'wrong');
    await page.press('#token', 'Enter');
    await page.waitForSelector('#login-bad:not([hidden])', { timeout: 5000 });
    await page.fill('#token', token);
    await page.press('#token', 'Enter');
    await page.waitForSelector('#conn[data-state="live"]', { timeout: 5000 });
    assert.strictEqual(await page.$$eval('#workers tbody tr', (r) => r.length), 2);
    // The only refusals: the first read and the wrong token's (which Chromium logs).
    const refused = [`401: http://127.0.0.1:${metricsPort}/stats`,
      'console: Failed to load resource: the server responded with a status of 401 (Unauthorized)'];
    assert.deepStrictEqual(problems.splice(0).map((x) => x.what), [...refused, ...refused]);
    // Reloaded, the tab still has it: no question. (The reload cuts short a read.)
    await page.reload();
    await page.waitForSelector('#conn[data-state="live"]', { timeout: 5000 });
    assert.ok(await page.isHidden('#login'));
    assert.deepStrictEqual(problems.map((x) => x.what).filter((w) => !w.endsWith('/stats net::ERR_ABORTED')), []);
  } finally {
    await browser.close();
    await app.stop();
  }
});
