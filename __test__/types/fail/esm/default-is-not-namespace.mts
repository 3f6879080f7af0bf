// expect: TS2339 — the default import is the cluster object itself, not a
// module namespace with the object under .default.
import cluster from 'rs-cluster';
cluster.default.fork();
