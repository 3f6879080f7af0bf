'use strict';
// Node's docs "hello world" cluster server on rs-cluster: 4 workers share
// one port; the primary then sends 20 requests, prints who served each,
// and shuts the cluster down.

const cluster = require('rs-cluster');
const http = require('node:http');

const WORKERS = 4;
const REQUESTS = 20;

function get(port) {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/', agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => { body += chunk; });
      res.on('end', () => resolve({ status: res.statusCode, body }));
    });
    req.setTimeout(5000, () => req.destroy(new Error('request timed out')));
    req.on('error', reject);
  });
}

if (cluster.isPrimary) {
  console.log(`Primary ${process.pid} is running`);
  let listening = 0;
  let port = 0;
  for (let i = 0; i < WORKERS; i++) cluster.fork();
  cluster.on('exit', (worker, code, signal) => {
    console.log(`worker ${worker.process.pid} died (${signal || code})`);
  });
  cluster.on('listening', async (worker, address) => {
    port = address.port;
    if (++listening < WORKERS) return;
    const served = {};
    for (let i = 0; i < REQUESTS; i++) {
      const { status, body } = await get(port);
      console.log(`request ${String(i + 1).padStart(2)}: ${status} ${body.trim()}`);
      served[body.trim()] = (served[body.trim()] || 0) + 1;
    }
    console.log('requests per worker:', served);
    cluster.disconnect(() => {
      console.log('all workers disconnected');
      process.exitCode = 0;
    });
  });
} else {
  http.createServer((req, res) => {
    res.writeHead(200);
    res.end(`hello world from worker ${cluster.worker.id} (pid ${process.pid})\n`);
  }).listen(process.env.PORT || 0);
  console.log(`Worker ${process.pid} started`);
}
