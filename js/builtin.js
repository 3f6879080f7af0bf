'use strict';
// Node's own cluster module object: the one `net` and `dgram` consult. It is
// taken before the register hook can redirect `require('node:cluster')`;
// once the hook has redirected `process.getBuiltinModule`, through the
// original it keeps.
const get = process.getBuiltinModule;
module.exports = typeof get === 'function'
  ? (get[Symbol.for('rs-cluster.getBuiltinModule')] || get).call(process, 'node:cluster')
  : require('node:cluster');
