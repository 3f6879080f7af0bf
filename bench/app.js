'use strict';
// The app under test: Node's documentation "hello world" cluster server,
// unchanged except that the worker count, the port and the loopback address
// come from the bench. It always asks for `node:cluster`; the bench runs it
// as is for node:cluster and as `node -r ./js/register.js bench/app.js` for
// rs-cluster, which is how an existing app adopts rs-cluster.

const cluster = require('node:cluster');
const http = require('node:http');
const { availableParallelism } = require('node:os');
const process = require('node:process');

const numCPUs = +process.env.WORKERS || availableParallelism();

if (cluster.isPrimary) {
  console.log(`Primary ${process.pid} is running`);

  // Fork workers.
  for (let i = 0; i < numCPUs; i++) {
    cluster.fork();
  }

  cluster.on('exit', (worker, code, signal) => {
    console.log(`worker ${worker.process.pid} died`);
  });
} else {
  // Workers can share any TCP connection
  // In this case it is an HTTP server
  http.createServer((req, res) => {
    res.writeHead(200);
    res.end('hello world\n');
  }).listen(+process.env.PORT || 8000, '127.0.0.1');

  console.log(`Worker ${process.pid} started`);
}
