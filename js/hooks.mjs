// Module resolution hook installed by register.mjs: 'node:cluster' and
// 'cluster' imported from ES modules resolve to rs-cluster. Synchronous, so
// it serves both module.registerHooks (in-thread) and module.register.
const target = new URL('./index.mjs', import.meta.url).href;

export function resolve(specifier, context, nextResolve) {
  // require() is redirected by register.js before resolution; leave it be.
  const isRequire = context.conditions !== undefined && context.conditions.includes('require');
  if (!isRequire && (specifier === 'node:cluster' || specifier === 'cluster')) {
    return { url: target, shortCircuit: true };
  }
  return nextResolve(specifier, context);
}
