#!/usr/bin/env node
'use strict';
// npm run pack:check: does the package users get work, without Rust?
//
// 1. Builds the addon if it is missing or older than the Rust sources.
// 2. `npm pack --dry-run` here: the main package ships only what it needs
//    (index.d.ts, js/, binding.js, binding.d.ts, README, LICENSE, CHANGELOG),
//    every file named by main/types/exports is in it, and nothing runs at
//    install time (no preinstall/install/postinstall, no binding.gyp).
// 3. Packs it two ways in a temp dir:
//    - split: what CI publishes. `napi create-npm-dirs`, `napi artifacts` and
//      `napi prepublish -t npm --skip-optional-publish` (with a one-target
//      napi config for this machine) → the main tarball, whose
//      optionalDependencies now name rs-cluster-<platform>, plus the
//      npm/<platform> tarball holding the .node;
//    - fat: the main package with this machine's .node added.
// 4. For each, installs the tarball(s) into a fresh project with
//    `npm install --offline` and an empty npm cache (so nothing can come from
//    a registry), cargo/rustc not on PATH, and a script shell that records any
//    lifecycle script npm runs (there must be none); then runs a cluster app
//    there: 2 workers, HTTP requests on 127.0.0.1 until each worker has
//    answered, cluster.disconnect(), bounded time, every process killed by
//    pid at the end. Also checks the ESM entry and rs-cluster/register.
// 5. Removes the temp dir (--keep keeps it).
//
// Options: --variant fat|split|both (default both), --no-build, --keep.
// Exits non-zero on any failure.

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const http = require('node:http');
const { spawn } = require('node:child_process');
const lib = require('./lib');
const { isAlive } = require('./lib/procs');
const { formatAddress } = require('../js/address');
const { parseCli } = require('./lib/cli');

const { ROOT, pkg, BINARY_NAME } = lib;

const USAGE = 'usage: node scripts/pack-check.js [--variant fat|split|both] [--no-build] [--keep]';
const { values, fail: usageError } = parseCli({
  name: 'pack:check',
  usage: USAGE,
  help: USAGE,
  options: {
    variant: { type: 'string' },
    'no-build': { type: 'boolean' },
    keep: { type: 'boolean' },
  },
});
const opt = {
  variant: values.variant ?? 'both',
  build: !values['no-build'],
  keep: !!values.keep,
};
if (!['fat', 'split', 'both'].includes(opt.variant)) usageError(`--variant must be fat, split or both, not ${opt.variant}`);

const NPM = lib.npmCommand();
const HOST = lib.hostPlatform();
const NODE_FILE = `${BINARY_NAME}.${HOST.name}.node`;
const PLATFORM_PKG = `${pkg.name}-${HOST.name}`;
const INSTALL_SCRIPTS = ['preinstall', 'install', 'postinstall'];
// What the main package may contain; everything else is a packaging leak.
const ALLOWED = [
  /^package\.json$/,
  /^README\.md$/,
  /^LICENSE$/,
  /^CHANGELOG\.md$/,
  /^[^/]+\.d\.ts$/, // index.d.ts, register.d.ts, binding.d.ts
  /^binding\.js$/,
  /^js\/[^/]+\.(js|mjs|cjs|d\.ts|d\.mts)$/,
  /^js\/status\/[^/]+\.(html|css|js)$/, // the status page
  /^bin\/rs-cluster\.js$/,
];
const REQUIRED = ['package.json', 'README.md', 'LICENSE', 'CHANGELOG.md', 'index.d.ts', 'binding.js'];

const failures = [];
const step = (msg) => console.log(`\n== ${msg}`);
const ok = (msg) => console.log(`  ok   ${msg}`);
const fail = (msg) => {
  failures.push(msg);
  console.log(`  FAIL ${msg}`);
};
const check = (cond, msg, detail) => (cond ? ok(msg) : fail(detail ? `${msg}: ${detail}` : msg));

// ---------------------------------------------------------------------------

async function npm(npmArgs, options = {}) {
  const r = await lib.run(NPM[0], [...NPM.slice(1), ...npmArgs], { timeoutMs: 180000, ...options });
  r.stdout = lib.quietNpm(r.stdout);
  r.stderr = lib.quietNpm(r.stderr);
  return r;
}

function mustSucceed(r, what) {
  if (r.code !== 0) {
    throw new Error(
      `${what} failed (exit ${r.code}${r.signal ? `, ${r.signal}` : ''}${r.timedOut ? ', timed out' : ''})\n` +
        `${r.stdout}\n${r.stderr}`.trim(),
    );
  }
  return r;
}

// `npm pack --json` output: [{ filename, size, unpackedSize, files: [{ path }] }].
function packJson(r) {
  const text = r.stdout;
  const start = text.indexOf('[');
  return JSON.parse(text.slice(start))[0];
}

// Files named by main, types and exports (all conditions, all subpaths).
function entryFiles(manifest) {
  const out = new Set();
  const add = (p) => typeof p === 'string' && out.add(p.replace(/^\.\//, ''));
  add(manifest.main || 'index.js');
  add(manifest.types);
  add(manifest.typings);
  const walk = (v) => {
    if (typeof v === 'string') add(v);
    else if (v && typeof v === 'object') Object.values(v).forEach(walk);
  };
  walk(manifest.exports);
  return [...out].filter((p) => !p.includes('*'));
}

function checkManifest(manifest, files, label) {
  const scripts = manifest.scripts || {};
  const installScripts = INSTALL_SCRIPTS.filter((s) => scripts[s]);
  check(installScripts.length === 0, `${label}: no install scripts`, `package.json has ${installScripts.join(', ')}`);
  check(!files.includes('binding.gyp'), `${label}: no binding.gyp (npm would run node-gyp at install)`);
  check(!manifest.gypfile, `${label}: no "gypfile"`);
}

// ---------------------------------------------------------------------------

async function dryRun() {
  step('npm pack --dry-run (the main package as published)');
  const r = mustSucceed(await npm(['pack', '--dry-run', '--json', '--ignore-scripts']), 'npm pack --dry-run');
  const info = packJson(r);
  const files = info.files.map((f) => f.path).sort();
  console.log(`  ${files.length} files, ${(info.size / 1024).toFixed(1)} kB packed, ${(info.unpackedSize / 1024).toFixed(1)} kB unpacked:`);
  console.log(`    ${files.join('\n    ')}`);
  const named = new Set(entryFiles(pkg));
  const extra = files.filter((f) => !named.has(f) && !ALLOWED.some((re) => re.test(f)));
  check(extra.length === 0, 'only package files are shipped', `unexpected: ${extra.join(', ')}`);
  const missing = REQUIRED.filter((f) => !files.includes(f));
  check(missing.length === 0, `ships ${REQUIRED.join(', ')}`, `missing: ${missing.join(', ')}`);
  const entries = entryFiles(pkg).filter((f) => !files.includes(f));
  check(entries.length === 0, 'every main/types/exports target is shipped', `missing: ${entries.join(', ')}`);
  check(!files.some((f) => f.endsWith('.node')), 'no .node in the main package (they go in the platform packages)');
  checkManifest(pkg, files, 'main package');
  return files;
}

function copyFiles(files, dest) {
  for (const f of files) {
    const to = path.join(dest, f);
    fs.mkdirSync(path.dirname(to), { recursive: true });
    fs.copyFileSync(path.join(ROOT, f), to);
  }
}

async function packSplit(tmp, files) {
  step(`split: main package + ${PLATFORM_PKG}, made by the napi CLI as the publish job does`);
  const napi = path.join(ROOT, 'node_modules', '.bin', 'napi');
  if (!fs.existsSync(napi)) throw new Error('node_modules/.bin/napi is missing: run npm install first');
  const stage = path.join(tmp, 'stage-split');
  copyFiles(files, stage);
  // A one-target napi config: `napi artifacts` insists on every configured target.
  fs.writeFileSync(
    path.join(stage, 'napi.local.json'),
    JSON.stringify({ ...pkg.napi, binaryName: BINARY_NAME, targets: [HOST.triple] }, null, 2),
  );
  const artifacts = path.join(stage, 'artifacts', `bindings-${HOST.triple}`);
  fs.mkdirSync(artifacts, { recursive: true });
  fs.copyFileSync(path.join(ROOT, NODE_FILE), path.join(artifacts, NODE_FILE));

  const napiRun = async (napiArgs) => {
    const r = await lib.run(napi, [...napiArgs, '-c', 'napi.local.json'], { cwd: stage, timeoutMs: 120000 });
    return mustSucceed(r, `napi ${napiArgs.join(' ')}`);
  };
  await napiRun(['create-npm-dirs']);
  await napiRun(['artifacts']);
  // `napi prepublish` reads `git log -1`.
  const git = async (gitArgs) =>
    mustSucceed(
      await lib.run('git', gitArgs, {
        cwd: stage,
        env: {
          ...process.env,
          GIT_AUTHOR_NAME: 'pack-check',
          GIT_AUTHOR_EMAIL: 'pack-check@localhost',
          GIT_COMMITTER_NAME: 'pack-check',
          GIT_COMMITTER_EMAIL: 'pack-check@localhost',
        },
      }),
      `git ${gitArgs[0]}`,
    );
  await git(['init', '-q']);
  await git(['add', '-A']);
  await git(['commit', '-q', '--no-gpg-sign', '-m', pkg.version]);
  await napiRun(['prepublish', '-t', 'npm', '--skip-optional-publish']);

  const staged = JSON.parse(fs.readFileSync(path.join(stage, 'package.json'), 'utf8'));
  const optional = staged.optionalDependencies || {};
  check(
    optional[PLATFORM_PKG] === pkg.version,
    `napi prepublish added optionalDependencies["${PLATFORM_PKG}"] = "${pkg.version}"`,
    JSON.stringify(optional),
  );
  const platDir = path.join(stage, 'npm', HOST.name);
  const plat = JSON.parse(fs.readFileSync(path.join(platDir, 'package.json'), 'utf8'));
  check(plat.name === PLATFORM_PKG && plat.version === pkg.version, `${plat.name}@${plat.version} created`);
  check(
    Array.isArray(plat.os) && Array.isArray(plat.cpu) && plat.os.includes(process.platform) && plat.cpu.includes(process.arch),
    `${PLATFORM_PKG} is limited to os ${JSON.stringify(plat.os)}, cpu ${JSON.stringify(plat.cpu)}` +
      (plat.libc ? `, libc ${JSON.stringify(plat.libc)}` : ''),
  );

  const out = path.join(tmp, 'tarballs-split');
  fs.mkdirSync(out);
  const main = packJson(mustSucceed(await npm(['pack', '--json', '--pack-destination', out], { cwd: stage }), 'npm pack (main)'));
  const mainFiles = main.files.map((f) => f.path);
  check(!mainFiles.some((f) => f.endsWith('.node')), 'split main tarball has no .node', mainFiles.join(', '));
  checkManifest(staged, mainFiles, 'split main tarball');
  const platPack = packJson(
    mustSucceed(await npm(['pack', '--json', '--pack-destination', out], { cwd: platDir }), `npm pack (${PLATFORM_PKG})`),
  );
  const platFiles = platPack.files.map((f) => f.path);
  check(platFiles.includes(NODE_FILE), `${platPack.filename} holds ${NODE_FILE} (${(platPack.size / 1024).toFixed(0)} kB packed)`);
  checkManifest(plat, platFiles, `${PLATFORM_PKG} tarball`);
  console.log(`  tarballs: ${main.filename} (${(main.size / 1024).toFixed(1)} kB), ${platPack.filename}`);
  // Platform package first, as a user's npm would resolve the optional dependency.
  return [path.join(out, platPack.filename), path.join(out, main.filename)];
}

async function packFat(tmp, files) {
  step(`fat: main package with ${NODE_FILE} added`);
  const stage = path.join(tmp, 'stage-fat');
  copyFiles([...files, NODE_FILE], stage);
  const manifest = JSON.parse(fs.readFileSync(path.join(stage, 'package.json'), 'utf8'));
  manifest.files = [...manifest.files, NODE_FILE];
  fs.writeFileSync(path.join(stage, 'package.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  const out = path.join(tmp, 'tarballs-fat');
  fs.mkdirSync(out);
  const info = packJson(mustSucceed(await npm(['pack', '--json', '--pack-destination', out], { cwd: stage }), 'npm pack (fat)'));
  const fatFiles = info.files.map((f) => f.path);
  check(fatFiles.includes(NODE_FILE), `${info.filename} holds ${NODE_FILE} (${(info.size / 1024).toFixed(0)} kB packed)`);
  checkManifest(manifest, fatFiles, 'fat tarball');
  return [path.join(out, info.filename)];
}

// ---------------------------------------------------------------------------

// PATH without any directory holding cargo, rustc or rustup; node stays
// reachable (through a shim dir if its own dir had to go).
function cargoFreeEnv(tmp) {
  const rusty = (dir) => ['cargo', 'rustc', 'rustup'].some((c) => lib.which(c, dir));
  const dirs = (process.env.PATH || '').split(path.delimiter).filter((d) => d && !rusty(d));
  const nodeDir = path.dirname(process.execPath);
  if (!dirs.includes(nodeDir) || rusty(nodeDir)) {
    const shim = path.join(tmp, 'bin');
    fs.mkdirSync(shim, { recursive: true });
    fs.symlinkSync(process.execPath, path.join(shim, 'node'));
    dirs.unshift(shim);
  }
  const env = {};
  for (const [k, v] of Object.entries(process.env)) {
    // npm run's npm_* settings, the cargo/rustup environment and napi-rs
    // loader overrides would all make the fresh project less fresh.
    if (/^(npm_|CARGO|RUSTUP|RUSTC|NAPI_RS_)/i.test(k)) continue;
    env[k] = v;
  }
  env.PATH = dirs.join(path.delimiter);
  return env;
}

const APP = `'use strict';
// 2 workers share an HTTP server on 127.0.0.1; the primary prints JSON lines.
const cluster = require('rs-cluster');
const http = require('node:http');
const out = (ev) => process.stdout.write(JSON.stringify(ev) + '\\n');

if (cluster.isPrimary) {
  const pids = [];
  let listening = 0;
  cluster.on('fork', (w) => { pids.push(w.process.pid); out({ event: 'fork', id: w.id, pid: w.process.pid }); });
  cluster.on('listening', (w, address) => {
    if (++listening === 2) {
      const natives = Object.keys(require.cache).filter((f) => f.endsWith('.node'));
      out({ event: 'ready', port: address.port, address: address.address, pids, natives });
    }
  });
  cluster.on('exit', (w, code, signal) => out({ event: 'exit', id: w.id, code, signal }));
  for (let i = 0; i < 2; i++) cluster.fork();
  process.stdin.setEncoding('utf8');
  process.stdin.on('data', (d) => {
    if (!d.includes('stop')) return;
    process.stdin.destroy(); // an open stdin pipe would keep the primary alive
    cluster.disconnect(() => { out({ event: 'stopped' }); });
  });
} else {
  http.createServer((req, res) => {
    res.end(JSON.stringify({ id: cluster.worker.id, pid: process.pid }));
  }).listen(0, '127.0.0.1');
}
`;

const ENTRY_CHECK = `import { createRequire } from 'node:module';
import cluster from 'rs-cluster';
const require = createRequire(import.meta.url);
const cjs = require('rs-cluster');
const res = {
  esmIsCjs: cluster === cjs,
  isPrimary: cluster.isPrimary,
  hasFork: typeof cluster.fork === 'function',
  register: require.resolve('rs-cluster/register'),
  registerEsm: import.meta.resolve('rs-cluster/register'),
  pkgJson: require('rs-cluster/package.json').version,
};
console.log(JSON.stringify(res));
`;

const REGISTER_CHECK = `const c = require('node:cluster');
console.log(JSON.stringify({ same: c === require('rs-cluster'), same2: require('cluster') === c }));
`;

const REGISTER_ESM_CHECK = `import cluster from 'node:cluster';
import { createRequire } from 'node:module';
const require = createRequire(import.meta.url);
console.log(JSON.stringify({ same: cluster === require('rs-cluster'), same2: require('node:cluster') === cluster }));
`;

function get(port) {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/', agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => {
        body += c;
      });
      res.on('end', () => resolve({ status: res.statusCode, body }));
    });
    req.setTimeout(3000, () => req.destroy(new Error('request timed out after 3 s')));
    req.on('error', reject);
  });
}

// Runs app.js; resolves with what was seen. Every pid it learns about is
// killed (SIGKILL, by pid) before this returns, whatever happened.
async function runApp(appDir, env) {
  const child = spawn(process.execPath, ['app.js'], { cwd: appDir, env, stdio: ['pipe', 'pipe', 'pipe'] });
  const pids = new Set([child.pid]);
  const events = [];
  let stderr = '';
  let buf = '';
  let exited = null;
  const waiters = [];
  const notify = () => waiters.splice(0).forEach((w) => w());
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d) => {
    stderr += d;
  });
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (d) => {
    buf += d;
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      try {
        const ev = JSON.parse(line);
        events.push(ev);
        if (ev.pid) pids.add(ev.pid);
        (ev.pids || []).forEach((p) => pids.add(p));
      } catch {
        stderr += `[stdout] ${line}\n`;
      }
    }
    notify();
  });
  child.on('exit', (code, signal) => {
    exited = { code, signal };
    notify();
  });
  const waitFor = (pred, ms, what) =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
      const poll = () => {
        const v = pred();
        if (v) {
          clearTimeout(timer);
          resolve(v);
        } else if (exited && what !== 'exit') {
          clearTimeout(timer);
          reject(new Error(`primary exited (${JSON.stringify(exited)}) while waiting for ${what}`));
        } else waiters.push(poll);
      };
      poll();
    });

  const result = { served: new Map(), events, stderr: () => stderr };
  try {
    const ready = await waitFor(() => events.find((e) => e.event === 'ready'), 20000, 'both workers to listen');
    result.ready = ready;
    const forks = events.filter((e) => e.event === 'fork');
    for (let i = 0; i < 20 && result.served.size < forks.length; i++) {
      const r = await get(ready.port);
      if (r.status !== 200) throw new Error(`HTTP ${r.status}: ${r.body}`);
      const { id, pid } = JSON.parse(r.body);
      result.served.set(id, pid);
    }
    child.stdin.write('stop\n');
    await waitFor(() => events.find((e) => e.event === 'stopped'), 10000, 'cluster.disconnect() to finish');
    await waitFor(() => exited, 10000, 'exit');
    result.exit = exited;
  } catch (err) {
    result.error = err;
  } finally {
    const survivors = [...pids].filter(isAlive);
    for (const pid of survivors) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {}
    }
    result.survivors = survivors;
    if (!exited) await waitFor(() => exited, 5000, 'exit').catch(() => {});
  }
  return result;
}

async function installAndRun(tmp, variant, tarballs) {
  step(`${variant}: npm install --offline into a fresh project, cargo not on PATH`);
  const env = cargoFreeEnv(tmp);
  check(!lib.which('cargo', env.PATH) && !lib.which('rustc', env.PATH), 'cargo and rustc are not on PATH');
  const appDir = path.join(tmp, `app-${variant}`);
  fs.mkdirSync(appDir);
  fs.writeFileSync(
    path.join(appDir, 'package.json'),
    `${JSON.stringify({ name: `pack-check-${variant}`, version: '1.0.0', private: true }, null, 2)}\n`,
  );
  // Any lifecycle script npm runs goes through --script-shell: record it.
  const marker = path.join(tmp, `scripts-run-${variant}.log`);
  const recorder = path.join(tmp, `record-script-${variant}.sh`);
  fs.writeFileSync(recorder, `#!/bin/sh\nprintf '%s\\n' "$PWD: $*" >> '${marker}'\nexit 0\n`, { mode: 0o755 });
  const r = await npm(
    [
      'install',
      '--offline',
      '--no-audit',
      '--no-fund',
      '--foreground-scripts',
      `--script-shell=${recorder}`,
      `--cache=${path.join(tmp, `npm-cache-${variant}`)}`,
      ...tarballs,
    ],
    { cwd: appDir, env },
  );
  if (r.code !== 0) {
    fail(`npm install --offline failed (exit ${r.code}):\n${r.stdout}\n${r.stderr}`);
    return;
  }
  ok(`installed ${tarballs.map((t) => path.basename(t)).join(' + ')} offline, empty cache`);
  const ran = fs.existsSync(marker) ? fs.readFileSync(marker, 'utf8').trim() : '';
  check(!ran, 'npm ran no install script', ran);
  const lock = JSON.parse(fs.readFileSync(path.join(appDir, 'package-lock.json'), 'utf8'));
  const flagged = Object.entries(lock.packages || {})
    .filter(([, v]) => v.hasInstallScript)
    .map(([k]) => k);
  check(flagged.length === 0, 'no package in the lockfile has hasInstallScript', flagged.join(', '));
  // npm 11 warns users about packages with install scripts ("install-scripts").
  const warned = `${r.stdout}\n${r.stderr}`.split('\n').filter((l) => /install-scripts/.test(l));
  check(warned.length === 0, 'npm printed no install-scripts warning', warned.join(' | '));

  const installed = path.join(appDir, 'node_modules', pkg.name);
  const nodeFiles = fs.readdirSync(installed).filter((f) => f.endsWith('.node'));
  if (variant === 'split') {
    check(nodeFiles.length === 0, `node_modules/${pkg.name} holds no .node`);
    check(
      fs.existsSync(path.join(appDir, 'node_modules', PLATFORM_PKG, NODE_FILE)),
      `node_modules/${PLATFORM_PKG}/${NODE_FILE} installed`,
    );
  } else {
    check(nodeFiles.includes(NODE_FILE), `node_modules/${pkg.name}/${NODE_FILE} installed`);
  }

  fs.writeFileSync(path.join(appDir, 'app.js'), APP);
  fs.writeFileSync(path.join(appDir, 'entry-check.mjs'), ENTRY_CHECK);
  fs.writeFileSync(path.join(appDir, 'register-check.js'), REGISTER_CHECK);
  fs.writeFileSync(path.join(appDir, 'register-check.mjs'), REGISTER_ESM_CHECK);

  const t0 = Date.now();
  const res = await runApp(appDir, env);
  const ms = Date.now() - t0;
  if (res.error) {
    fail(
      `cluster app: ${res.error.message}\n    events: ${JSON.stringify(res.events)}\n    stderr: ${
        res.stderr().trim().split('\n').join('\n            ') || '(empty)'
      }`,
    );
  } else {
    const forks = res.events.filter((e) => e.event === 'fork');
    ok(`cluster app: 2 workers listening on ${formatAddress(res.ready)}`);
    const natives = res.ready.natives || [];
    const expectDir = variant === 'split' ? path.join(appDir, 'node_modules', PLATFORM_PKG) : installed;
    check(
      natives.length > 0 && natives.every((f) => fs.realpathSync(f).startsWith(fs.realpathSync(expectDir) + path.sep)),
      `addon loaded from ${path.relative(appDir, expectDir)}`,
      `loaded: ${JSON.stringify(natives)}`,
    );
    const byPid = new Map(forks.map((f) => [f.id, f.pid]));
    const everyone = forks.every((f) => res.served.get(f.id) === f.pid);
    check(
      everyone && res.served.size === 2,
      `each worker answered an HTTP request (${[...res.served].map(([id, pid]) => `#${id} pid ${pid}`).join(', ')})`,
      `forked ${JSON.stringify([...byPid])}, answered ${JSON.stringify([...res.served])}`,
    );
    const exits = res.events.filter((e) => e.event === 'exit');
    check(
      exits.length === 2 && res.exit && res.exit.code === 0,
      `cluster.disconnect(): both workers exited, primary exited 0 (${ms} ms in all)`,
      `worker exits ${JSON.stringify(exits)}, primary ${JSON.stringify(res.exit)}; stderr: ${res.stderr().trim()}`,
    );
  }
  check(res.survivors.length === 0, 'no process left behind', `killed pids ${res.survivors.join(', ')}`);

  const e = await lib.run(process.execPath, ['entry-check.mjs'], { cwd: appDir, env, timeoutMs: 20000 });
  let entry = null;
  try {
    entry = JSON.parse(e.stdout.trim().split('\n').pop());
  } catch {}
  check(
    e.code === 0 && entry && entry.esmIsCjs && entry.isPrimary && entry.hasFork && entry.pkgJson === pkg.version,
    'import "rs-cluster" (ESM) gives the same cluster as require, rs-cluster/register resolves',
    `exit ${e.code}: ${e.stdout}${e.stderr}`,
  );
  const g = await lib.run(process.execPath, ['-r', 'rs-cluster/register', 'register-check.js'], {
    cwd: appDir,
    env,
    timeoutMs: 20000,
  });
  check(
    g.code === 0 && /"same":true,"same2":true/.test(g.stdout),
    'node -r rs-cluster/register: require("node:cluster") and require("cluster") are rs-cluster',
    `exit ${g.code}: ${g.stdout}${g.stderr}`,
  );
  const m = await lib.run(process.execPath, ['--import', 'rs-cluster/register', 'register-check.mjs'], {
    cwd: appDir,
    env,
    timeoutMs: 20000,
  });
  check(
    m.code === 0 && /"same":true,"same2":true/.test(m.stdout),
    'node --import rs-cluster/register: import "node:cluster" is rs-cluster',
    `exit ${m.code}: ${m.stdout}${m.stderr}`,
  );
  const bin = path.join(appDir, 'node_modules', '.bin', 'rs-cluster');
  const v = await lib.run(bin, ['--version'], { cwd: appDir, env, timeoutMs: 20000 });
  check(
    v.code === 0 && v.stdout.trim().endsWith(pkg.version),
    'the rs-cluster command is installed (node_modules/.bin/rs-cluster --version)',
    `exit ${v.code}: ${v.stdout}${v.stderr}`,
  );
}

// ---------------------------------------------------------------------------

async function main() {
  console.log(`pack:check for ${pkg.name}@${pkg.version} on ${HOST.name} (${HOST.triple}), node ${process.version}`);
  if (opt.build) lib.ensureBuilt();
  else if (lib.buildNeeded()) console.log(`warning: --no-build, but ${lib.buildNeeded()}`);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rs-cluster-pack-check-'));
  try {
    const files = await dryRun();
    if (opt.variant === 'split' || opt.variant === 'both') {
      await installAndRun(tmp, 'split', await packSplit(tmp, files));
    }
    if (opt.variant === 'fat' || opt.variant === 'both') {
      await installAndRun(tmp, 'fat', await packFat(tmp, files));
    }
  } catch (err) {
    fail(err.stack || String(err));
  } finally {
    if (opt.keep) console.log(`\nkept ${tmp}`);
    else fs.rmSync(tmp, { recursive: true, force: true });
  }
  console.log('');
  if (failures.length) {
    console.log(`pack:check FAILED (${failures.length}):`);
    for (const f of failures) console.log(`  - ${f.split('\n')[0]}`);
    process.exitCode = 1;
  } else {
    console.log('pack:check passed');
  }
}

main();
