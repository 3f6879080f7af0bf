// expect: TS2322 — metrics is '[host:]port' or a port number, not a boolean.
import cluster = require('rs-cluster');
cluster.setupPrimary({ metrics: true });
