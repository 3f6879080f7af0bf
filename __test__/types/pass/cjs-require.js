// @ts-check
// Plain CommonJS JavaScript with checkJs: `require('rs-cluster')` is typed.
'use strict';
const cluster = require('rs-cluster');
const { fork, isPrimary, workers } = require('rs-cluster');

/** @type {import('node:cluster').Cluster} */
const asNode = cluster;

/** @param {import('rs-cluster').Worker} w */
function useWorker(w) {
  /** @type {number} */
  const id = w.id;
  w.send({ id }, (error) => { if (error) throw error; });
  w.on('exit', (code, signal) => {
    /** @type {number} */
    const c = code;
    /** @type {string} */
    const s = signal;
    return [c, s];
  });
  return w.isConnected() && !w.isDead() && !w.exitedAfterDisconnect;
}

if (isPrimary) {
  cluster.setupPrimary({ exec: __filename });
  useWorker(fork({ A: '1' }));
  cluster.on('exit', (worker, code) => {
    /** @type {number} */
    const c = code;
    if (!worker.exitedAfterDisconnect && c !== 0) cluster.fork();
  });
  for (const w of Object.values(workers ?? {})) if (w) w.kill();
  cluster.disconnect(() => {});
} else if (cluster.worker) {
  cluster.worker.send('ready');
}

module.exports = { asNode };
