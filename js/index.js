'use strict';
// Picks the primary or the worker side, as Node's lib/cluster.js does. The
// chosen object is kept on `process` so every copy of rs-cluster loaded into
// one process (nested node_modules, CJS and ESM) shares a single cluster.

const { WORKER_ENV } = require('./env');

const kCluster = Symbol.for('rs-cluster');

if (process[kCluster] === undefined) {
  const cluster = process.env[WORKER_ENV] !== undefined ? require('./child') : require('./primary');
  Object.defineProperty(process, kCluster, { value: cluster });
}

module.exports = process[kCluster];
