// expect: TS2540 — isPrimary is read-only.
import cluster from 'rs-cluster';
cluster.isPrimary = false;
