'use strict';
// Picks the primary or the worker side, as Node's lib/cluster.js does. The
// chosen object is kept on `process` so every copy of rs-cluster loaded into
// one process (nested node_modules, CJS and ESM) shares a single cluster.
// Without the native addon (none for this platform, or RS_CLUSTER_NATIVE=0)
// it is node:cluster itself, with the additions that need no Rust
// (js/fallback.js); the native path loads no file of the fallback's.

const { WORKER_ENV, NATIVE_ENV } = require('./env');

const kCluster = Symbol.for('rs-cluster');

// For the type check: the object primary.js and child.js build field by field
// (index.d.ts types it for apps); its settings and rs-cluster's own methods
// are index.d.ts's, so the implementation is checked against them.
/**
 * @typedef {import('./worker').WorkerObject} WorkerObject
 * @typedef {import('node:events').EventEmitter & {
 *   isWorker: boolean, isMaster: boolean, isPrimary: boolean, native: boolean,
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

// Why this process runs without the native primary, or null if it has it.
function withoutNative() {
  const switched = process.env[NATIVE_ENV];
  // A worker of the native primary is one whatever its own environment says.
  if (process.env[WORKER_ENV] !== undefined) return null;
  // A worker node:cluster forked: its primary ran without the addon.
  if (process.env.NODE_UNIQUE_ID !== undefined) return { worker: true };
  if (switched === '0' || switched === 'false') return { switch: true };
  if (switched !== undefined && !['', '1', 'true'].includes(switched)) {
    throw require('./errors').invalidValue(`The environment variable ${NATIVE_ENV}`, '0 or false (run as node:cluster), 1 or true', switched);
  }
  try {
    require('./native');
    return null;
  } catch (err) {
    return { error: err };
  }
}

if (process[kCluster] === undefined) {
  const why = withoutNative();
  let cluster;
  if (why !== null) cluster = require('./fallback').cluster(why);
  else cluster = process.env[WORKER_ENV] !== undefined ? require('./child') : require('./primary');
  Object.defineProperty(process, kCluster, { value: cluster });
}

module.exports = /** @type {ClusterObject} */ (process[kCluster]);
