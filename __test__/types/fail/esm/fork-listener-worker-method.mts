// expect: TS2339 — the 'fork' listener gets a Worker, which has no restart().
import cluster from 'rs-cluster';
cluster.on('fork', (worker) => worker.restart());
