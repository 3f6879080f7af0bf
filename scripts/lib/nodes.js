'use strict';
// Other Node versions, from the npm registry (node-<platform>-<arch>@<major>),
// cached outside the project and reused: the test matrix runs the suite on
// each, the reload bench and the hand-over test move a cluster to one.

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const lib = require('./index');

const NPM = lib.npmCommand();
// Other users must be able to run the cached node: tests fork workers with
// setupPrimary({ uid, gid }), and `spawn <node>` fails with EACCES when the
// binary sits under a home dir only its owner can enter (/root is 0700).
function traversableByOthers(dir) {
  for (let d = path.resolve(dir); ; d = path.dirname(d)) {
    try {
      if (!(fs.statSync(d).mode & 0o001)) return false;
    } catch {
      // Not created yet: its parents decide.
    }
    if (d === path.dirname(d)) return true;
  }
}
function cacheRoot() {
  if (process.env.RS_CLUSTER_NODE_CACHE) return { root: process.env.RS_CLUSTER_NODE_CACHE, prefix: 'node-' };
  const home = process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache');
  if (traversableByOthers(home)) return { root: home, prefix: 'rs-cluster-node-' };
  return { root: path.join(os.tmpdir() === '/tmp' ? '/var/tmp' : os.tmpdir(), 'rs-cluster-node-cache'), prefix: 'node-' };
}
const CACHE = cacheRoot();
const cacheDir = (major) => path.join(CACHE.root, `${CACHE.prefix}${major}`);
const NODE_PKG = `node-${process.platform}-${process.arch}`;

function versionOf(bin) {
  const r = require('node:child_process').spawnSync(bin, ['--version'], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : null;
}

// The node binary for a major: this one, or node-<platform>-<arch>@<major>
// from the cache dir (installed there on first use).
async function nodeFor(major, { refresh = false, log = () => {} } = {}) {
  if (Number(process.versions.node.split('.')[0]) === major) {
    return { bin: process.execPath, version: process.version, source: 'system' };
  }
  const dir = cacheDir(major);
  const bin = path.join(dir, 'node_modules', NODE_PKG, 'bin', 'node');
  let version = fs.existsSync(bin) ? versionOf(bin) : null;
  if (refresh || !version || !version.startsWith(`v${major}.`)) {
    fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
    // Its own package.json makes this dir npm's project root, so npm does
    // not walk up into some other project.
    const pj = path.join(dir, 'package.json');
    if (!fs.existsSync(pj)) fs.writeFileSync(pj, `${JSON.stringify({ name: `rs-cluster-node-${major}`, private: true })}\n`);
    log(`installing ${NODE_PKG}@${major} into ${dir} ...`);
    const env = { ...process.env };
    for (const k of Object.keys(env)) if (/^npm_/i.test(k)) delete env[k];
    const r = await lib.run(
      NPM[0],
      [...NPM.slice(1), 'install', '--no-save', '--no-package-lock', '--no-audit', '--no-fund', `${NODE_PKG}@${major}`],
      { cwd: dir, env, timeoutMs: 600000 },
    );
    if (r.code !== 0) throw new Error(`npm install ${NODE_PKG}@${major} failed:\n${lib.quietNpm(r.stdout + r.stderr)}`);
    version = versionOf(bin);
    if (!version) throw new Error(`${bin} does not run after installing ${NODE_PKG}@${major}`);
  }
  return { bin, version, source: path.relative(os.homedir(), dir).startsWith('..') ? dir : `~/${path.relative(os.homedir(), dir)}` };
}


/** The cached binary for `major`, if it is there (no install). */
function cachedNode(major) {
  const bin = path.join(cacheDir(major), 'node_modules', NODE_PKG, 'bin', 'node');
  const version = fs.existsSync(bin) ? versionOf(bin) : null;
  return version !== null && version.startsWith(`v${major}.`) ? bin : null;
}

module.exports = { nodeFor, cachedNode };
