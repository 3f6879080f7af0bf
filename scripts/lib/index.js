'use strict';
// Helpers shared by scripts/pack-check.js and scripts/test-matrix.js.

const fs = require('node:fs');
const path = require('node:path');
const { spawn, spawnSync } = require('node:child_process');

const ROOT = path.resolve(__dirname, '..', '..');
const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
const BINARY_NAME = (pkg.napi && pkg.napi.binaryName) || pkg.name;

function isMusl() {
  if (process.platform !== 'linux') return false;
  const report = process.report && process.report.getReport();
  const header = report && (typeof report === 'string' ? JSON.parse(report).header : report.header);
  return !(header && header.glibcVersionRuntime);
}

// This machine's napi-rs platform name (as in `<bin>.<platform>.node` and the
// `<pkg>-<platform>` package) and its Rust target triple.
function hostPlatform() {
  const { platform, arch } = process;
  const cpu = { x64: 'x86_64', arm64: 'aarch64' }[arch];
  if (!cpu) throw new Error(`unsupported arch ${arch}`);
  if (platform === 'linux') {
    const libc = isMusl() ? 'musl' : 'gnu';
    return { name: `linux-${arch}-${libc}`, triple: `${cpu}-unknown-linux-${libc}` };
  }
  if (platform === 'darwin') return { name: `darwin-${arch}`, triple: `${cpu}-apple-darwin` };
  throw new Error(`unsupported platform ${platform}`);
}

function newestMtime(paths) {
  let newest = 0;
  const visit = (p) => {
    let st;
    try {
      st = fs.statSync(p);
    } catch {
      return;
    }
    if (st.isDirectory()) {
      for (const e of fs.readdirSync(p)) visit(path.join(p, e));
    } else if (st.mtimeMs > newest) {
      newest = st.mtimeMs;
    }
  };
  paths.forEach(visit);
  return newest;
}

// The build outputs `npm run build` writes: the .node for this machine and
// the generated loader (+ its types).
function buildOutputs() {
  const { name } = hostPlatform();
  return [`${BINARY_NAME}.${name}.node`, 'binding.js', 'binding.d.ts'].map((f) => path.join(ROOT, f));
}

// Why a build is needed ('' when the outputs exist and are newer than every
// Rust input), so a stale binary is never packed or tested.
function buildNeeded() {
  const outputs = buildOutputs();
  const missing = outputs.filter((f) => !fs.existsSync(f));
  if (missing.length) return `missing ${missing.map((f) => path.relative(ROOT, f)).join(', ')}`;
  const inputs = ['src', 'Cargo.toml', 'Cargo.lock', 'build.rs'].map((f) => path.join(ROOT, f));
  // The .node is rewritten by every build; the loader only when it changes.
  if (newestMtime(inputs) > fs.statSync(outputs[0]).mtimeMs) return 'Rust sources are newer than the built addon';
  return '';
}

function ensureBuilt({ force = false, log = console.log } = {}) {
  const why = force ? 'forced' : buildNeeded();
  if (!why) return;
  log(`building the addon (${why}): npm run build`);
  const r = spawnSync(npmCommand()[0], [...npmCommand().slice(1), 'run', 'build'], {
    cwd: ROOT,
    stdio: 'inherit',
  });
  if (r.status !== 0) throw new Error(`npm run build failed (exit ${r.status}, signal ${r.signal})`);
}

// How to run npm with the node running this script: npm's own CLI file when
// we were started by `npm run` (npm_execpath), else `npm` from PATH.
function npmCommand() {
  const cli = process.env.npm_execpath;
  if (cli && /npm-cli\.js$/.test(cli) && fs.existsSync(cli)) return [process.execPath, cli];
  return ['npm'];
}

function which(cmd, pathEnv = process.env.PATH || '') {
  for (const dir of pathEnv.split(path.delimiter)) {
    if (!dir) continue;
    const f = path.join(dir, cmd);
    try {
      fs.accessSync(f, fs.constants.X_OK);
      if (fs.statSync(f).isFile()) return f;
    } catch {}
  }
  return null;
}

// Process groups started by run(): killed (by id) if we are interrupted,
// since a detached group does not get the terminal's Ctrl-C.
const groups = new Set();
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    for (const pid of groups) killGroup(pid);
    process.exit(sig === 'SIGINT' ? 130 : 143);
  });
}

// Runs a command, resolves with { code, signal, stdout, stderr, timedOut }.
// The child gets its own process group; on timeout the whole group is killed
// by its id.
function run(cmd, args, { cwd = ROOT, env = process.env, timeoutMs = 120000, input, echo = false } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd, env, stdio: ['pipe', 'pipe', 'pipe'], detached: true });
    if (child.pid) groups.add(child.pid);
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stdout.on('data', (d) => {
      stdout += d;
      if (echo) process.stdout.write(d);
    });
    child.stderr.on('data', (d) => {
      stderr += d;
      if (echo) process.stderr.write(d);
    });
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup(child.pid);
    }, timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code, signal) => {
      groups.delete(child.pid);
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, timedOut });
    });
    if (input !== undefined) child.stdin.end(input);
    else child.stdin.end();
  });
}

function killGroup(pid) {
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {}
  }
}

// npm prints `npm warn Unknown user config "nodedir"` here (from ~/.npmrc):
// harmless, and noise in our output.
function quietNpm(text) {
  return text
    .split('\n')
    .filter((l) => !/Unknown user config "nodedir"/.test(l))
    .join('\n');
}

module.exports = {
  ROOT,
  pkg,
  BINARY_NAME,
  hostPlatform,
  buildNeeded,
  ensureBuilt,
  npmCommand,
  which,
  run,
  killGroup,
  quietNpm,
};
