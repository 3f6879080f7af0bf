// @ts-check
// expect: TS2339 — the 'online' listener gets a Worker, which has no restart().
'use strict';
const { on } = require('rs-cluster');
require('rs-cluster').on('online', (worker) => worker.restart());
module.exports = on;
