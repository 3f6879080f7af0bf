// `node --import rs-cluster/register app.mjs`: `import cluster from
// 'node:cluster'` (and 'cluster') resolves to rs-cluster; CommonJS requires
// are redirected too.
import module from 'node:module';
import './register.js';
import { resolve } from './hooks.mjs';

// registerHooks (Node >= 22.15) runs in-thread; module.register is
// deprecated from Node 26 on (DEP0205) but is all Node 20 has.
// (@types/node 20 does not know registerHooks.)
const loader = /** @type {typeof module & { registerHooks?: (hooks: object) => void }} */ (module);
if (typeof loader.registerHooks === 'function') {
  loader.registerHooks({ resolve });
} else {
  module.register(new URL('./hooks.mjs', import.meta.url));
}
