'use strict';
// The routing bench's app, written for node:cluster (it asks for
// `node:cluster`; the bench preloads rs-cluster's register hook for
// rs-cluster and sets the policy through the environment).
//   GET /work?ms=X   burns X ms of CPU in a busy loop, answers the worker id
//   WebSocket        held open until the client closes it
// Workers print `@@routing {"ev":"live","id","n"}` (open WebSockets) on
// SIGUSR2; the primary prints `listening` per worker. With
// ROUTING_APP_CONTROL=1 the primary takes `reload` (cluster.reload(), then
// `reloaded`; each replacement as `restart`) and `fork` lines on stdin.
const cluster = require('node:cluster');
const http = require('node:http');

const out = (ev) => process.stdout.write(`@@routing ${JSON.stringify({ ...ev, pid: process.pid })}\n`);

require('./lib/orphan').exitWithBench(() => process.exit(1));

if (cluster.isPrimary) {
  // What the app really runs: rs-cluster keeps its cluster object on `process`.
  const impl = process[Symbol.for('rs-cluster')] === cluster ? 'rs' : 'node';
  out({ ev: 'primary', impl, policy: cluster.schedulingPolicy });
  cluster.on('listening', (w, a) => out({ ev: 'listening', id: w.id, child: w.process.pid, port: a.port }));
  for (let i = 0; i < +(process.env.WORKERS || 2); i++) cluster.fork();
  if (process.env.ROUTING_APP_CONTROL === '1') {
    cluster.on('restart', (w, info) => out({ ev: 'restart', id: w.id, previous: info.previous.id }));
    require('node:readline').createInterface({ input: process.stdin }).on('line', (line) => {
      if (line === 'fork') cluster.fork();
      if (line === 'reload') cluster.reload().then(() => out({ ev: 'reloaded' }), (err) => out({ ev: 'reloaded', error: err.message }));
    });
  }
} else {
  const id = cluster.worker.id;
  const server = http.createServer((req, res) => {
    const ms = Number(new URL(req.url, 'http://x').searchParams.get('ms')) || 0;
    const until = performance.now() + ms;
    while (performance.now() < until) {
      // Busy: the event loop serves nothing else meanwhile.
    }
    res.end(`${id}`);
  });
  let live = 0;
  const { WebSocketServer } = require('ws');
  new WebSocketServer({ server }).on('connection', (ws) => {
    live++;
    ws.on('close', () => live--);
  });
  process.on('SIGUSR2', () => out({ ev: 'live', id, n: live }));
  server.listen(+process.env.PORT, '127.0.0.1');
}
