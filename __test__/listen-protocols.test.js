'use strict';
// http, https, tls and http2 servers in workers share their ports under
// rs-cluster as under node:cluster, with real clients; TLS servers get the
// ticket keys of the first worker (the server data the primary keeps), so a
// session made with one worker resumes on another.

const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const https = require('node:https');
const tls = require('node:tls');
const http2 = require('node:http2');
const { eachImpl, get } = require('./helpers');
const { run, waitCount, normalizePorts, tmpDir, hasOpenssl, selfSigned } = require('./listen-helpers');

const CLIENT_TIMEOUT = 5000;

function httpsGet(port, ca) {
  return new Promise((resolve, reject) => {
    const req = https.get({ host: '127.0.0.1', port, ca, agent: false, servername: 'localhost' }, (res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve(body));
      res.on('error', reject);
    });
    req.setTimeout(CLIENT_TIMEOUT, () => req.destroy(new Error('https request timed out')));
    req.on('error', reject);
  });
}

function tlsTalk(port, ca, session) {
  return new Promise((resolve, reject) => {
    let body = '';
    let ticket = null;
    const s = tls.connect({ host: '127.0.0.1', port, ca, servername: 'localhost', session, maxVersion: 'TLSv1.2' });
    s.setTimeout(CLIENT_TIMEOUT, () => s.destroy(new Error('tls exchange timed out')));
    s.on('session', (sess) => { ticket = sess; });
    s.on('data', (d) => { body += d; });
    s.on('end', () => resolve({ body, reused: s.isSessionReused(), session: ticket }));
    s.on('error', reject);
  });
}

function h2Get(url, ca) {
  return new Promise((resolve, reject) => {
    const client = http2.connect(url, { ca, servername: 'localhost' });
    const fail = (err) => {
      client.destroy();
      reject(err);
    };
    client.on('error', fail);
    client.setTimeout(CLIENT_TIMEOUT, () => fail(new Error('http2 request timed out')));
    const req = client.request({ ':path': '/' });
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (d) => { body += d; });
    req.on('end', () => { client.close(); resolve(body); });
    req.on('error', fail);
    req.end();
  });
}

const ids = (bodies) => [...new Set(bodies)].sort();

test('http, https, tls and http2 servers share ports in workers', { timeout: 30000 }, async (t) => {
  const secure = hasOpenssl();
  if (!secure) t.diagnostic('openssl not found: only the cleartext servers are checked');
  const dir = tmpDir(t);
  const files = secure ? selfSigned(dir) : null;
  const ca = secure ? fs.readFileSync(files.cert) : null;
  const seen = {};
  await eachImpl(async (impl) => {
    const c = run(t, 'listen-protocols.js', { impl, env: files ? { KEY: files.key, CERT: files.cert } : {} });
    await waitCount(c, (e) => e.event === 'wdone', 2);
    const ops = c.events.filter((e) => e.event === 'op');
    const port = (name) => ops.find((e) => e.name === name && e.id === 1).addr.port;
    for (const name of new Set(ops.map((e) => e.name))) {
      assert.strictEqual(ops.find((e) => e.name === name && e.id === 2).addr.port, port(name), `${impl} ${name}`);
    }
    const twice = async (fn) => ids([await fn(), await fn(), await fn(), await fn()]);
    assert.deepStrictEqual(await twice(async () => (await get(port('http'))).body), ['1', '2']);
    assert.deepStrictEqual(await twice(() => h2Get(`http://127.0.0.1:${port('h2c')}`)), ['1', '2']);
    if (secure) {
      assert.deepStrictEqual(await twice(() => httpsGet(port('https'), ca)), ['1', '2']);
      assert.deepStrictEqual(await twice(() => h2Get(`https://127.0.0.1:${port('h2')}`, ca)), ['1', '2']);
      assert.deepStrictEqual(await twice(() => httpsGet(port('h2'), ca)), ['1', '2']); // allowHTTP1
      // Both workers hold the same ticket keys, so a ticket from one
      // worker resumes on the other (round-robin alternates them).
      for (const name of ['https', 'tls', 'h2']) {
        const keys = ops.filter((e) => e.name === name).map((e) => e.keys);
        assert.strictEqual(keys[0], keys[1], `${impl}: ${name} ticket keys shared`);
      }
      const first = await tlsTalk(port('tls'), ca);
      const second = await tlsTalk(port('tls'), ca, first.session);
      assert.notStrictEqual(first.body, second.body, `${impl}: round-robin alternates`);
      assert.strictEqual(second.reused, true, `${impl}: session resumed on the other worker`);
    }
    const shape = (e) => ({ name: e.name, id: e.id, addr: e.addr, err: e.err });
    seen[impl] = normalizePorts({
      ops: ops.map(shape).sort((a, b) => a.id - b.id || a.name.localeCompare(b.name)),
      listening: c.events.filter((e) => e.event === 'listening').map((e) => [e.id, e.address]).sort((a, b) => a[0] - b[0] || a[1].port - b[1].port),
    });
  });
  // Port tokens follow first appearance, so compare shapes per worker.
  assert.deepStrictEqual(seen.rs.ops.map(({ addr, ...o }) => o), seen.node.ops.map(({ addr, ...o }) => o));
  assert.deepStrictEqual(seen.rs.listening.map(([id, a]) => [id, { ...a, port: typeof a.port }]),
                         seen.node.listening.map(([id, a]) => [id, { ...a, port: typeof a.port }]));
});
