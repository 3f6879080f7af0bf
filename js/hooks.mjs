// Module resolution hook installed by register.mjs.
const target = new URL('./index.mjs', import.meta.url).href;

export async function resolve(specifier, context, nextResolve) {
  if (specifier === 'node:cluster' || specifier === 'cluster') {
    return { url: target, shortCircuit: true };
  }
  return nextResolve(specifier, context);
}
