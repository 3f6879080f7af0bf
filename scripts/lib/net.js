'use strict';
// Network helpers of the tests and the bench: a free port, and the churn
// load.

const http = require('node:http');
const net = require('node:net');

// Clients that open a new connection for every request, each sending the
// next as soon as the last is answered: the load under which a reload is
// judged, since every request goes through accept and hand-off again. With
// `keepAlive`, each client keeps one connection open instead, as a browser
// or a proxy does (and as a reload must not break either).
// Starts `clients` loops on 127.0.0.1:port; stop() ends them and resolves
// with { ok, failures, errors (reason -> count), bodies (body -> count) }.
function churn(port, clients, { keepAlive = false } = {}) {
  let running = true;
  const result = { ok: 0, failures: 0, errors: new Map(), bodies: new Map() };
  const count = (map, key) => map.set(key, (map.get(key) || 0) + 1);
  const once = (agent) => new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/', agent }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => { body += c; });
      res.on('end', () => {
        if (res.statusCode === 200) {
          result.ok++;
          count(result.bodies, body);
        } else {
          result.failures++;
          count(result.errors, `status ${res.statusCode}`);
        }
        resolve();
      });
      res.on('error', fail);
    });
    function fail(err) {
      result.failures++;
      count(result.errors, err.code || err.message);
      resolve();
    }
    req.setTimeout(10000, () => req.destroy(new Error('timeout')));
    req.on('error', fail);
  });
  const loops = Array.from({ length: clients }, async () => {
    const agent = keepAlive ? new http.Agent({ keepAlive: true, maxSockets: 1 }) : false;
    while (running) await once(agent);
    if (agent) agent.destroy();
  });
  return {
    result,
    stop: async () => {
      running = false;
      await Promise.all(loops);
      return result;
    },
  };
}

// A port nothing listens on right now on `host` (the OS's next one).
function freePort(host = '127.0.0.1') {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, host, () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

module.exports = { churn, freePort };
