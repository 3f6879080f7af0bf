'use strict';
// A socket.io 4 chat-style server for a cluster, written for node:cluster:
// @socket.io/cluster-adapter relays broadcasts between workers, and nothing
// else is needed for sessions to work: run it on rs-cluster with sticky
// routing, which keeps each client's requests on the worker that holds its
// session (HTTP long-polling needs that).
//
//   NODE_CLUSTER_SCHED_POLICY=sticky node -r rs-cluster/register server.js
//   NODE_CLUSTER_SCHED_POLICY=sticky RS_CLUSTER_STICKY_KEY=header:x-forwarded-for \
//     node -r rs-cluster/register server.js          # behind a proxy
//
// No @socket.io/sticky. Env: WORKERS (4), PORT (3000; 0 = any), HOST.
const cluster = require('node:cluster');
const http = require('node:http');
const { Server } = require('socket.io');
const { setupPrimary, createAdapter } = require('@socket.io/cluster-adapter');

const WORKERS = +(process.env.WORKERS || 4);

if (cluster.isPrimary) {
  setupPrimary();
  for (let i = 0; i < WORKERS; i++) cluster.fork();
  cluster.on('listening', (worker, address) => {
    process.stdout.write(`${JSON.stringify({ event: 'listening', id: worker.id, port: address.port })}\n`);
  });
} else {
  const server = http.createServer();
  const io = new Server(server, { adapter: createAdapter() });
  io.on('connection', (socket) => {
    socket.on('echo', (message, ack) => ack({ message, worker: cluster.worker.id }));
    socket.on('broadcast', (message) => io.emit('news', message));
  });
  server.listen(+(process.env.PORT ?? 3000), process.env.HOST || '127.0.0.1');
}
