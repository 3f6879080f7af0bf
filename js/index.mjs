// ESM entry: the same object as the CommonJS one, plus named exports like
// `import { fork, isPrimary } from 'node:cluster'`.
import cluster from './index.js';

export default cluster;
export const {
  isWorker, isMaster, isPrimary, Worker, workers, worker, settings,
  SCHED_NONE, SCHED_RR, schedulingPolicy,
} = cluster;
export const fork = cluster.fork;
export const setupPrimary = cluster.setupPrimary;
export const setupMaster = cluster.setupMaster;
export const disconnect = cluster.disconnect;
// rs-cluster's own (undefined in a worker, as fork is).
export const reload = cluster.reload;
export const stats = cluster.stats;
export const metrics = cluster.metrics;
