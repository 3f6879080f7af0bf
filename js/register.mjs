// `node --import rs-cluster/register app.mjs`: `import cluster from
// 'node:cluster'` (and 'cluster') resolves to rs-cluster; CommonJS requires
// are redirected too.
import { register } from 'node:module';
import './register.js';

register(new URL('./hooks.mjs', import.meta.url));
