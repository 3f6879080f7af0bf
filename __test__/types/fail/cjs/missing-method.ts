// expect: TS2339 — the cluster object has no forkAll().
import cluster = require('rs-cluster');
cluster.forkAll(4);
