'use strict';
// Type tests: index.d.ts must give rs-cluster the types of @types/node's
// node:cluster for CommonJS (module commonjs / node10, checkJs require, .cts)
// and ESM (.mts, module nodenext) consumers, and rs-cluster/register must
// resolve. Files under types/fail/ must be rejected with the error codes
// named on their `// expect:` line. The projects live in __test__/types/.

const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { execFile } = require('node:child_process');

const ROOT = path.resolve(__dirname, '..');
const TYPES = path.join(__dirname, 'types');
const TSC = path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
const PROJECTS = ['cjs', 'esm', 'register-cjs', 'register-esm', 'fail-cjs', 'fail-esm'];
const TIMEOUT = 60000;

const DIAGNOSTIC = /^(.+?)\((\d+),(\d+)\): error (TS\d+): (.*)$/;
const GLOBAL_DIAGNOSTIC = /^error (TS\d+): (.*)$/;

// `file` is relative to __test__/types with forward slashes, or null for
// errors that belong to no file (bad options, missing files).
function parseDiagnostics(output) {
  const diagnostics = [];
  for (const line of output.split(/\r?\n/)) {
    let m = DIAGNOSTIC.exec(line);
    if (m) {
      const file = path.relative(TYPES, path.resolve(ROOT, m[1])).split(path.sep).join('/');
      diagnostics.push({ file, line: Number(m[2]), code: m[4], message: m[5] });
      continue;
    }
    m = GLOBAL_DIAGNOSTIC.exec(line);
    if (m) diagnostics.push({ file: null, line: 0, code: m[1], message: m[2] });
  }
  return diagnostics;
}

function tsc(project) {
  const args = [TSC, '-p', path.join(TYPES, `tsconfig.${project}.json`), '--pretty', 'false'];
  return new Promise((resolve) => {
    execFile(process.execPath, args, { cwd: ROOT, timeout: TIMEOUT - 5000, maxBuffer: 16 << 20 },
      (error, stdout, stderr) => {
        const output = `${stdout}${stderr}`;
        const code = error ? (typeof error.code === 'number' ? error.code : -1) : 0;
        resolve({ project, code, signal: error && error.signal, output, diagnostics: parseDiagnostics(output) });
      });
  });
}

// All projects are compiled once, a few at a time, when the first test asks.
let pending = null;
function results() {
  if (pending === null) {
    pending = (async () => {
      const out = {};
      const queue = [...PROJECTS];
      const width = Math.min(4, Math.max(2, os.availableParallelism ? os.availableParallelism() : os.cpus().length));
      await Promise.all(Array.from({ length: width }, async () => {
        while (queue.length > 0) {
          const project = queue.shift();
          out[project] = await tsc(project);
        }
      }));
      return out;
    })();
  }
  return pending;
}

function describe(result) {
  return `tsc -p __test__/types/tsconfig.${result.project}.json exited ${result.code}` +
    `${result.signal ? ` (${result.signal})` : ''}:\n${result.output}`;
}

function assertCompiles(result, hint = '') {
  assert.deepStrictEqual(result.diagnostics, [], `${describe(result)}${hint}`);
  assert.strictEqual(result.code, 0, describe(result));
}

// Reads `// expect: TS1234[, TS5678]` from each file of a fail directory.
function expectedFailures(dir) {
  const expected = {};
  for (const name of fs.readdirSync(path.join(TYPES, dir)).sort()) {
    const text = fs.readFileSync(path.join(TYPES, dir, name), 'utf8');
    const m = /\/\/ expect: (TS\d+(?:, *TS\d+)*)/.exec(text);
    assert.ok(m, `${dir}/${name} has no "// expect: TSxxxx" line`);
    expected[`${dir}/${name}`] = [...new Set(m[1].split(/, */))].sort();
  }
  return expected;
}

function assertFailures(result, dir) {
  const expected = expectedFailures(dir);
  assert.ok(Object.keys(expected).length > 0, `no files in ${dir}`);
  assert.notStrictEqual(result.code, 0, describe(result));
  const outside = result.diagnostics.filter((d) => !(d.file in expected));
  assert.deepStrictEqual(outside, [], `errors outside the must-fail files\n${describe(result)}`);
  const actual = {};
  for (const file of Object.keys(expected)) {
    actual[file] = [...new Set(result.diagnostics.filter((d) => d.file === file).map((d) => d.code))].sort();
  }
  assert.deepStrictEqual(actual, expected, describe(result));
}

const REGISTER_HINT = '\n(package.json "exports"["./register"] needs "types": "./register.d.ts")';

test('CommonJS consumers (module commonjs, node10: import = require, default/named imports, checkJs require) compile',
  { timeout: TIMEOUT }, async () => {
    assertCompiles((await results()).cjs);
  });

test('ESM consumer (.mts) and .cts consumer (module nodenext, via package "exports") compile',
  { timeout: TIMEOUT }, async () => {
    assertCompiles((await results()).esm);
  });

test('rs-cluster/register resolves under module commonjs/node10', { timeout: TIMEOUT }, async () => {
  assertCompiles((await results())['register-cjs'], REGISTER_HINT);
});

test('rs-cluster/register resolves under module nodenext (.mts and .cts)', { timeout: TIMEOUT }, async () => {
  assertCompiles((await results())['register-esm'], REGISTER_HINT);
});

test('misuse is rejected under module commonjs (expected error codes per file)', { timeout: TIMEOUT }, async () => {
  assertFailures((await results())['fail-cjs'], 'fail/cjs');
});

test('misuse is rejected under module nodenext (expected error codes per file)', { timeout: TIMEOUT }, async () => {
  assertFailures((await results())['fail-esm'], 'fail/esm');
});
