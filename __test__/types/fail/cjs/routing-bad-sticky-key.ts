// expect: TS2322 — a sticky key spec is ip, header:NAME, cookie:NAME or query:NAME.
import cluster = require('rs-cluster');
cluster.setupPrimary({ sticky: 'body:x' });
