'use strict';
// How many CPUs this process may use, the command's default worker count:
// os.availableParallelism() (the affinity mask), capped by the CPU quota of
// its cgroup (Docker --cpus, Kubernetes limits.cpu), which the mask does not
// show. The parsers take file contents, so they are tested on samples.

const fs = require('node:fs');
const os = require('node:os');
const { posix } = require('node:path');

// /proc/self/cgroup: `id:controllers:path` a line; cgroup v2 is `0::path`.
function parseCgroup(text) {
  return text.split('\n').filter(Boolean).map((line) => {
    const [id, controllers, ...rest] = line.split(':');
    return { v2: id === '0' && controllers === '', controllers: controllers.split(','), path: rest.join(':') };
  });
}

// mountinfo escapes space, tab, newline and backslash as octal.
const unescapeMount = (s) => s.replace(/\\([0-7]{3})/g, (_, o) => String.fromCharCode(parseInt(o, 8)));

// /proc/self/mountinfo: the cgroup mounts, each with the cgroup path its
// root is (a container sees its own group as the root).
function parseMountinfo(text) {
  const mounts = [];
  for (const line of text.split('\n')) {
    const dash = line.indexOf(' - ');
    if (dash < 0) continue;
    const fields = line.slice(0, dash).split(' ');
    const [fsType, , superOptions = ''] = line.slice(dash + 3).split(' ');
    if (fsType !== 'cgroup' && fsType !== 'cgroup2') continue;
    mounts.push({ v2: fsType === 'cgroup2', root: unescapeMount(fields[3]), mountPoint: unescapeMount(fields[4]),
                  options: superOptions.split(',') });
  }
  return mounts;
}

// v2 cpu.max: `max <period>` or `<quota> <period>`, in CPUs; Infinity if none.
function parseCpuMax(text) {
  if (text === null) return Infinity;
  const [quota, period] = text.trim().split(/\s+/).map(Number);
  return quota > 0 && period > 0 ? quota / period : Infinity;
}

// v1 cpu.cfs_quota_us (-1: none) over cpu.cfs_period_us.
function parseCfs(quotaText, periodText) {
  if (quotaText === null || periodText === null) return Infinity;
  const quota = Number(quotaText.trim());
  const period = Number(periodText.trim());
  return quota > 0 && period > 0 ? quota / period : Infinity;
}

// The smallest quota on this process's cgroup and its ancestors, in CPUs.
// `read(file)` returns a file's text or null.
function cgroupCpuLimit(read) {
  const groups = parseCgroup(read('/proc/self/cgroup') || '');
  const mounts = parseMountinfo(read('/proc/self/mountinfo') || '');
  let limit = Infinity;
  for (const group of groups) {
    const mount = mounts.find((m) => (group.v2 ? m.v2
      : !m.v2 && m.options.includes('cpu') && group.controllers.includes('cpu')));
    if (mount === undefined) continue;
    // A path outside the mount's root (another cgroup namespace): the root.
    let dir = posix.relative(mount.root, group.path);
    if (dir.startsWith('..')) dir = '';
    for (;;) {
      const base = posix.join(mount.mountPoint, dir);
      const cpus = group.v2 ? parseCpuMax(read(`${base}/cpu.max`))
        : parseCfs(read(`${base}/cpu.cfs_quota_us`), read(`${base}/cpu.cfs_period_us`));
      limit = Math.min(limit, cpus);
      if (dir === '' || dir === '.') break;
      dir = posix.dirname(dir);
    }
  }
  return limit;
}

function readOrNull(file) {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return null;
  }
}

// A fractional quota (1.5 CPUs) rounds up: the half CPU is usable too.
function availableCpus(read = readOrNull, parallelism = os.availableParallelism()) {
  const limit = process.platform === 'linux' ? cgroupCpuLimit(read) : Infinity;
  return Math.max(1, Math.min(parallelism, Math.ceil(limit)));
}

module.exports = { availableCpus, cgroupCpuLimit, parseCgroup, parseMountinfo, parseCpuMax, parseCfs };
