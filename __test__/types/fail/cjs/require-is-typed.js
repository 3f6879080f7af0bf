// @ts-check
// expect: TS2339 — require('rs-cluster') is typed (not any): fork() returns a Worker.
'use strict';
const cluster = require('rs-cluster');
cluster.fork().toUpperCase();
