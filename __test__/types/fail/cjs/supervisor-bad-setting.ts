// expect: TS2322 — drainTimeout is a number of ms, not a string.
import cluster = require('rs-cluster');
cluster.setupPrimary({ drainTimeout: '5s' });
