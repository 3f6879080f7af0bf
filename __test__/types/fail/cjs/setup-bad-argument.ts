// expect: TS2559 — setupPrimary() takes ClusterSettings, not a number.
import cluster = require('rs-cluster');
cluster.setupPrimary(42);
