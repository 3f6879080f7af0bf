'use strict';
// `node -r rs-cluster/register app.js`: `require('cluster')`,
// `require('node:cluster')` and `process.getBuiltinModule('node:cluster')`
// return rs-cluster, in the primary and (through the inherited execArgv) in
// every worker.

// Without getBuiltinModule, Node's own cluster is only reachable before the
// hook below is in place. With it, builtin.js reaches it later, and only a
// worker, whose `net` consults it, pays for loading it.
if (typeof process.getBuiltinModule !== 'function') require('./builtin');
// Module._load: the CommonJS loader's entry, not in @types/node.
const Module = /** @type {typeof import('node:module') & { _load: Function }} */ (require('node:module'));

const kInstalled = Symbol.for('rs-cluster.register');
// builtin.js finds Node's own getBuiltinModule here once it is redirected.
const kOriginal = Symbol.for('rs-cluster.getBuiltinModule');

const isCluster = (id) => id === 'cluster' || id === 'node:cluster';

if (!Module[kInstalled]) {
  Object.defineProperty(Module, kInstalled, { value: true });
  const load = Module._load;
  Module._load = function loadWithRsCluster(request, parent, isMain) {
    if (isCluster(request)) return require('./index.js');
    return load.call(this, request, parent, isMain);
  };

  const original = process.getBuiltinModule;
  if (typeof original === 'function' && original[kOriginal] === undefined) {
    const getBuiltinModule = function getBuiltinModule(id) {
      if (isCluster(id)) return require('./index.js');
      return Reflect.apply(original, this, arguments);
    };
    Object.defineProperty(getBuiltinModule, kOriginal, { value: original });
    process.getBuiltinModule = getBuiltinModule;
  }
}
