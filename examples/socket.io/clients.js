'use strict';
// Load for server.js: CLIENTS socket.io clients on HTTP long-polling only
// (no WebSocket upgrade, so every message is an HTTP request that must reach
// the worker holding the session), each sending MESSAGES acknowledged
// messages one after another. With PROXY=1 every client sends an
// X-Forwarded-For of its own, as clients behind one proxy would look. With
// ADDRESSES=1 each client connects from an address of its own (127.1.x.y),
// as clients on a network would: on loopback they all share 127.0.0.1,
// which sticky routing by `ip` sees as a single client.
// Prints one JSON line: {clients, ok, errors, workers: {id: messages}, ms}.
//
//   node clients.js <port> [CLIENTS=200] [MESSAGES=20]
const http = require('node:http');
const { io } = require('socket.io-client');

const [port, clients = 200, messages = 20] = process.argv.slice(2).map(Number);
const proxied = process.env.PROXY === '1';
const ownAddress = process.env.ADDRESSES === '1';
const TIMEOUT = 10000;

function client(n) {
  return new Promise((resolve) => {
    const result = { ok: 0, errors: [], workers: {} };
    const socket = io(`http://127.0.0.1:${port}`, {
      transports: ['polling'],
      reconnection: false,
      timeout: TIMEOUT,
      // No keep-alive, as without an agent: one connection per request.
      agent: ownAddress ? new http.Agent({ localAddress: `127.1.${(n >> 8) & 255}.${n & 255}` }) : false,
      extraHeaders: proxied ? { 'x-forwarded-for': `10.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}` } : {},
    });
    const done = () => {
      socket.close();
      resolve(result);
    };
    socket.on('connect_error', (err) => {
      result.errors.push(`connect_error: ${err.message}`);
      done();
    });
    socket.on('disconnect', (reason) => {
      if (reason !== 'io client disconnect') result.errors.push(`disconnect: ${reason}`);
    });
    socket.on('connect', async () => {
      for (let i = 0; i < messages && socket.connected; i++) {
        try {
          const reply = await socket.timeout(TIMEOUT).emitWithAck('echo', `${n}:${i}`);
          if (reply.message === `${n}:${i}`) {
            result.ok++;
            result.workers[reply.worker] = (result.workers[reply.worker] || 0) + 1;
          } else {
            result.errors.push('wrong reply');
          }
        } catch (err) {
          result.errors.push(`emit: ${err.message}`);
          break;
        }
      }
      done();
    });
  });
}

(async () => {
  const t0 = Date.now();
  const results = await Promise.all(Array.from({ length: clients }, (_, n) => client(n)));
  const workers = {};
  const errors = {};
  let ok = 0;
  for (const r of results) {
    ok += r.ok;
    for (const [w, k] of Object.entries(r.workers)) workers[w] = (workers[w] || 0) + k;
    for (const e of r.errors) errors[e] = (errors[e] || 0) + 1;
  }
  const failed = results.filter((r) => r.errors.length > 0).length;
  process.stdout.write(`${JSON.stringify({ clients, messages, ok, failedClients: failed, errors, workers, ms: Date.now() - t0 })}\n`,
    // Polls of broken sessions may still be open on the server: don't wait for them.
    () => process.exit(0));
})();
