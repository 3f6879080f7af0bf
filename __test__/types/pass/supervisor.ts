// rs-cluster's additions to the node:cluster types (settings, reload, 'restart').
import cluster = require('rs-cluster');

cluster.setupPrimary({ exec: 'server.js', respawn: true, drainTimeout: 5000, hangTimeout: 0, maxMemory: 512, waitReady: false });
const drain: number | undefined = cluster.settings.drainTimeout;
const done: Promise<void> = cluster.reload({ drainTimeout: 1000, readyTimeout: 10000 });
done.catch((err: NodeJS.ErrnoException) => err.code === 'ERR_RS_CLUSTER_RELOAD');
cluster.on('restart', (worker, info) => {
  const id: number = worker.id;
  const reason: 'crash' | 'reload' | 'memory' | 'hang' = info.reason;
  const previous: number = info.previous.id;
  const delay: number | undefined = info.delay;
}).on('exit', (worker, code: number) => {});
const options: cluster.ReloadOptions = {};
export { drain, options };
