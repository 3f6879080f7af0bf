'use strict';
// Picks the primary or the worker side, as Node's lib/cluster.js does. The
// chosen object is kept on `process` so every copy of rs-cluster loaded into
// one process (nested node_modules, CJS and ESM) shares a single cluster.

const { WORKER_ENV } = require('./env');

const kCluster = Symbol.for('rs-cluster');

// For the type check: the object primary.js and child.js build field by field
// (index.d.ts types it for apps); its settings and rs-cluster's own methods
// are index.d.ts's, so the implementation is checked against them.
/**
 * @typedef {import('./worker').WorkerObject} WorkerObject
 * @typedef {import('node:events').EventEmitter & {
 *   isWorker: boolean, isMaster: boolean, isPrimary: boolean,
 *   Worker: typeof import('./worker'),
 *   worker?: WorkerObject, workers?: Record<number, WorkerObject>,
 *   settings?: import('node:cluster').ClusterSettings,
 *   schedulingPolicy?: number, SCHED_NONE?: number, SCHED_RR?: number,
 *   fork?(env?: object): WorkerObject,
 *   setupPrimary?(settings?: import('node:cluster').ClusterSettings): void,
 *   setupMaster?(settings?: import('node:cluster').ClusterSettings): void,
 *   disconnect?(callback?: () => void): void,
 *   reload?(options?: import('../index').ReloadOptions): Promise<void>,
 *   stats?(): import('../index').Stats,
 *   metrics?(): string,
 * }} ClusterObject
 */

if (process[kCluster] === undefined) {
  const cluster = process.env[WORKER_ENV] !== undefined ? require('./child') : require('./primary');
  Object.defineProperty(process, kCluster, { value: cluster });
}

module.exports = /** @type {ClusterObject} */ (process[kCluster]);
