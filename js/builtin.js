'use strict';
// Node's own cluster module object: the one `net` and `dgram` consult. It is
// taken before the register hook can redirect `require('node:cluster')`.
module.exports = typeof process.getBuiltinModule === 'function'
  ? process.getBuiltinModule('node:cluster')
  : require('node:cluster');
