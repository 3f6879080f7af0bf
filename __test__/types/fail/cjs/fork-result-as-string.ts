// expect: TS2322 — cluster.fork() returns a Worker, not a string.
import cluster = require('rs-cluster');
export const name: string = cluster.fork();
