// `import 'rs-cluster/register'` must resolve to its declaration
// (noUncheckedSideEffectImports; the type import fails with TS7016 if only
// the .mjs is found). It exports nothing (ESM sees the CommonJS-typed file's
// synthesized `default` only).
import 'rs-cluster/register';
import type * as Register from 'rs-cluster/register';

type NoExports = Exclude<keyof typeof Register, 'default'> extends never ? true : false;
export const noExports: NoExports = true;
