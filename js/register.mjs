// `node --import rs-cluster/register app.mjs`: `import cluster from
// 'node:cluster'` (and 'cluster') resolves to rs-cluster; CommonJS requires
// are redirected too.
import module from 'node:module';
import './register.js';
import { resolve } from './hooks.mjs';

// registerHooks (Node >= 22.15) runs in-thread; module.register is
// deprecated from Node 26 on (DEP0205) but is all Node 20 has.
if (typeof module.registerHooks === 'function') {
  module.registerHooks({ resolve });
} else {
  module.register(new URL('./hooks.mjs', import.meta.url));
}
