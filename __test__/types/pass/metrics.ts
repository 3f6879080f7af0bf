// rs-cluster's observability additions to the node:cluster types.
import cluster = require('rs-cluster');

cluster.setupPrimary({ metrics: '127.0.0.1:9100' });
cluster.setupPrimary({ metrics: 9100 });
const s: cluster.Stats = cluster.stats();
// The native primary's counters are null without it (cluster.native false).
const native: boolean = cluster.native;
const p99: number | null = s.workers[0].handoff?.p99 ?? null;
const lag: number | null = s.workers[0].eventLoopLag;
const queue: number | null = s.listeners[0].queue;
const died: number | undefined = s.rerouted?.died;
const text: string = cluster.metrics();
export { native, p99, lag, queue, died, text };
