'use strict';
// Connections in workers under rs-cluster and node:cluster: server options
// (allowHalfOpen, pauseOnConnect, noDelay, keepAlive), maxConnections,
// getConnections(), close() waiting for open connections, address(), the
// port closing with the last server; server.unref() letting a worker exit,
// and a worker whose servers are closed exiting after disconnect.

const test = require('node:test');
const assert = require('node:assert');
const net = require('node:net');
const { eachImpl, FALLBACK } = require('./helpers');
const {
  POLICIES, run, waitCount, control, sleep, until, talk, hold, normalizePorts, opOf, HAS_SS, ss,
} = require('./listen-helpers');

const HOST = '127.0.0.1';

// Reads the first line the server sends, looks at the server side of the
// connection with `ss`, then ends it.
function keepAliveProbe(port) {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, HOST);
    const fail = (err) => {
      sock.destroy();
      reject(err);
    };
    let data = '';
    sock.setEncoding('utf8');
    sock.setTimeout(5000, () => fail(new Error('no line from the server')));
    sock.on('error', fail);
    sock.on('data', (d) => {
      data += d;
      if (!data.includes('\n')) return;
      sock.removeAllListeners('data');
      sock.setTimeout(0);
      try {
        const text = HAS_SS ? ss(['-tnoH', 'state', 'established', `( sport = :${port} )`]) : 'timer:(keepalive (no ss)';
        sock.end();
        sock.resume();
        resolve({ options: JSON.parse(data), timer: /timer:\(keepalive/.test(text) });
      } catch (err) {
        fail(err);
      }
    });
  });
}

for (const policy of POLICIES) {
  test(`connection options, maxConnections, getConnections, close() (${policy})`, { timeout: 30000 }, async (t) => {
    const seen = {};
    await eachImpl(async (impl) => {
      const c = run(t, 'listen-conn.js', { impl, policy });
      await waitCount(c, (e) => e.event === 'wdone', 2);
      const port = (i) => opOf(c, 1, i).addr.port;
      const r = {};

      r.halfOpen = await talk({ port: port(0), host: HOST }, { end: true });
      assert.match(r.halfOpen, /^half:[12]$/, `${impl}: allowHalfOpen`);
      r.paused = await talk({ port: port(1), host: HOST }, { write: 'hello' });
      assert.match(r.paused, /^[12]:0$/, `${impl}: pauseOnConnect`);
      const ka = await keepAliveProbe(port(2));
      assert.strictEqual(ka.timer, true, `${impl}: SO_KEEPALIVE on the accepted socket`);
      r.options = { ...ka.options, id: typeof ka.options.id };

      // maxConnections = 1 per worker: hold one connection on each.
      const held = {};
      let tries = 0;
      while (Object.keys(held).length < 2 && tries++ < 20) {
        const h = await hold(t, port(3));
        if (h.greeting) held[h.greeting] = h;
        else h.sock.destroy();
      }
      assert.deepStrictEqual(Object.keys(held).sort(), ['1', '2'], `${impl}: one held connection per worker`);
      // Round-robin: the second connection goes to the other worker at once.
      if (policy === 'rr') assert.strictEqual(tries, 2, `${impl}: needed ${tries} connections`);
      for (const id of [1, 2]) await control(c, 'send', id, { cmd: 'count', i: 3 });
      r.counts = (await waitCount(c, (e) => e.event === 'count', 2)).map(({ i, n, err }) => ({ i, n, err }));

      // Over the limit everywhere: never served. (rs-cluster closes it once
      // every worker refused; node:cluster's primary keeps offering it.)
      const over = await hold(t, port(3), { timeout: 400 });
      assert.strictEqual(over.greeting, undefined, `${impl}: over-limit connection served`);
      r.over = over.pending ? 'pending' : 'closed';
      over.sock.destroy();

      // close() waits for worker 1's open connection.
      await control(c, 'send', 1, { cmd: 'close', i: 3 });
      const closing = await c.waitFor((e) => e.event === 'closing' && e.id === 1);
      r.closing = { listening: closing.listening, address: closing.address };
      await sleep(200);
      assert.ok(!c.events.some((e) => e.event === 'closed' && e.id === 1), `${impl}: close() waits for the connection`);
      held['1'].sock.destroy();
      await c.waitFor((e) => e.event === 'closed' && e.id === 1);

      // Worker 2 still serves the port once it has room again.
      held['2'].sock.destroy();
      await until(async () => {
        const h = await hold(t, port(3));
        h.sock.destroy();
        return h.greeting === '2';
      }, { what: `${impl}: worker 2 serving after worker 1 closed` });
      await control(c, 'send', 2, { cmd: 'address', i: 3 });
      r.address = (await c.waitFor((e) => e.event === 'address' && e.id === 2)).address;

      // The last server closing closes the port.
      await control(c, 'send', 2, { cmd: 'close', i: 3 });
      await c.waitFor((e) => e.event === 'closed' && e.id === 2);
      await until(async () => (await talk({ port: port(3), host: HOST })).error === 'ECONNREFUSED',
                  { what: `${impl}: port closed after the last worker's close()` });
      r.drops = c.events.filter((e) => e.event === 'drop').length > 0;
      seen[impl] = normalizePorts(r, { LIMITED: port(3), KEEPALIVE: port(2) });
    });
    if (policy === 'rr') {
      // Without the native primary, node:cluster's way.
      assert.strictEqual(seen.rs.over, FALLBACK ? 'pending' : 'closed');
      t.diagnostic(`over-limit connection: rs=${seen.rs.over} node=${seen.node.over}`);
      delete seen.rs.over;
      delete seen.node.over;
    }
    seen.rs.halfOpen = seen.rs.halfOpen.replace(/\d/, 'N');
    seen.node.halfOpen = seen.node.halfOpen.replace(/\d/, 'N');
    seen.rs.paused = seen.rs.paused.replace(/^\d/, 'N');
    seen.node.paused = seen.node.paused.replace(/^\d/, 'N');
    assert.deepStrictEqual(seen.rs, seen.node);
  });
}

test('server.unref() lets a worker exit; a worker with its servers closed exits after disconnect', { timeout: 30000 }, async (t) => {
  const seen = {};
  await eachImpl(async (impl) => {
    const c = run(t, 'listen-unref.js', { impl });
    await c.waitFor((e) => e.event === 'exit' && e.id === 1);
    await c.waitFor((e) => e.event === 'exit' && e.id === 2);
    const exitCode = await c.waitExit();
    seen[impl] = {
      events: c.events.filter((e) => ['exit', 'disconnect', 'listening', 'closed', 'unrefd', 'still-alive'].includes(e.event))
        .map(({ pid, port, address, ...e }) => e)
        .sort((a, b) => a.id - b.id || a.event.localeCompare(b.event)),
      exitCode,
    };
  });
  assert.deepStrictEqual(seen.rs, seen.node);
});
