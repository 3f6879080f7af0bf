// expect: TS2339 — the cluster object has no forkAll().
import cluster from 'rs-cluster';
cluster.forkAll(4);
