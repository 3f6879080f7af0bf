// CommonJS consumer under module nodenext (.cts): resolved through the
// "require" condition of package.json "exports".
import cluster = require('rs-cluster');
import type * as NodeCluster from 'node:cluster';

const asNode: NodeCluster.Cluster = cluster;
const w: cluster.Worker = cluster.fork({ A: '1' });
const settings: cluster.ClusterSettings = cluster.settings;
const same: NodeCluster.Worker = w;
cluster.on('exit', (worker, code, signal) => {
  const x: cluster.Worker = worker;
  const c: number = code;
  const s: string = signal;
});
const { fork, isPrimary } = cluster;
if (isPrimary) fork().kill();

export { asNode, settings, same };
