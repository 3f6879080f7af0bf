'use strict';
// `node -r rs-cluster/register app.js`: `require('cluster')` and
// `require('node:cluster')` return rs-cluster, in the primary and (through
// the inherited execArgv) in every worker.

require('./builtin');
const Module = require('node:module');

const kInstalled = Symbol.for('rs-cluster.register');

if (!Module[kInstalled]) {
  Object.defineProperty(Module, kInstalled, { value: true });
  const load = Module._load;
  Module._load = function loadWithRsCluster(request, parent, isMain) {
    if (request === 'cluster' || request === 'node:cluster') return require('./index.js');
    return load.call(this, request, parent, isMain);
  };
}
