// expect: TS2769 — no send() overload takes a callback of (error: string); it gets Error | null.
import cluster = require('rs-cluster');
cluster.fork().send('hi', (error: string) => {});
