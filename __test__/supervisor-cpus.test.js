'use strict';
// The command's default worker count: the cgroup CPU quota parsers and the
// walk from the process's cgroup up its ancestors, on sample file contents.
const test = require('node:test');
const assert = require('node:assert');
const { availableCpus, cgroupCpuLimit, parseCgroup, parseMountinfo, parseCpuMax, parseCfs } = require('../js/cpus');

// A read() over a fixed set of files.
const files = (map) => (file) => (Object.hasOwn(map, file) ? map[file] : null);

const V2_MOUNT = '29 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate\n';
const V1_MOUNTS = [
  '32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct',
  '35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory',
  '41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw',
].join('\n');

test('cpu.max and cfs files', { timeout: 5000 }, () => {
  assert.strictEqual(parseCpuMax('max 100000\n'), Infinity);
  assert.strictEqual(parseCpuMax('150000 100000\n'), 1.5);
  assert.strictEqual(parseCpuMax('50000 100000'), 0.5);
  assert.strictEqual(parseCpuMax(null), Infinity);
  assert.strictEqual(parseCfs('-1\n', '100000\n'), Infinity);
  assert.strictEqual(parseCfs('200000\n', '100000\n'), 2);
  assert.strictEqual(parseCfs(null, '100000'), Infinity);
});

test('/proc/self/cgroup and mountinfo', { timeout: 5000 }, () => {
  assert.deepStrictEqual(parseCgroup('0::/user.slice/session-2.scope\n'),
                         [{ v2: true, controllers: [''], path: '/user.slice/session-2.scope' }]);
  assert.deepStrictEqual(parseCgroup('4:cpu,cpuacct:/docker/abc\n1:name=systemd:/docker/abc\n')[0],
                         { v2: false, controllers: ['cpu', 'cpuacct'], path: '/docker/abc' });
  const mounts = parseMountinfo(`${V1_MOUNTS}\n50 23 0:40 / /sp\\040ace rw - cgroup2 cgroup2 rw\n60 23 8:1 / / rw - ext4 /dev/sda1 rw`);
  assert.deepStrictEqual(mounts.map((m) => [m.v2, m.root, m.mountPoint]), [
    [false, '/', '/sys/fs/cgroup/cpu,cpuacct'], [false, '/', '/sys/fs/cgroup/memory'],
    [true, '/', '/sys/fs/cgroup/unified'], [true, '/', '/sp ace'],
  ]);
  assert.ok(mounts[0].options.includes('cpu'));
});

test('cgroup v2: a container at the namespace root, and a quota on an ancestor', { timeout: 5000 }, () => {
  // docker run --cpus 1.5: the container sees its group as /.
  assert.strictEqual(cgroupCpuLimit(files({
    '/proc/self/cgroup': '0::/\n',
    '/proc/self/mountinfo': V2_MOUNT,
    '/sys/fs/cgroup/cpu.max': '150000 100000\n',
  })), 1.5);
  // systemd: the slice limits, the service does not; the smaller applies.
  assert.strictEqual(cgroupCpuLimit(files({
    '/proc/self/cgroup': '0::/app.slice/app.service\n',
    '/proc/self/mountinfo': V2_MOUNT,
    '/sys/fs/cgroup/app.slice/app.service/cpu.max': 'max 100000\n',
    '/sys/fs/cgroup/app.slice/cpu.max': '300000 100000\n',
  })), 3);
  assert.strictEqual(cgroupCpuLimit(files({ '/proc/self/cgroup': '0::/\n', '/proc/self/mountinfo': V2_MOUNT })),
                     Infinity);
});

test('cgroup v1: cfs quota under the mount root the container sees', { timeout: 5000 }, () => {
  // Docker with cgroup v1: the mount's root is the container's own group.
  const docker = '32 31 0:29 /docker/abc /sys/fs/cgroup/cpu,cpuacct ro,relatime - cgroup cgroup rw,cpu,cpuacct';
  assert.strictEqual(cgroupCpuLimit(files({
    '/proc/self/cgroup': '5:cpu,cpuacct:/docker/abc\n4:memory:/docker/abc\n0::/\n',
    '/proc/self/mountinfo': docker,
    '/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us': '250000\n',
    '/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us': '100000\n',
  })), 2.5);
  // A host process in a limited group, no quota on it: unlimited.
  assert.strictEqual(cgroupCpuLimit(files({
    '/proc/self/cgroup': '4:cpu,cpuacct:/batch\n',
    '/proc/self/mountinfo': V1_MOUNTS,
    '/sys/fs/cgroup/cpu,cpuacct/batch/cpu.cfs_quota_us': '-1\n',
    '/sys/fs/cgroup/cpu,cpuacct/batch/cpu.cfs_period_us': '100000\n',
  })), Infinity);
});

// Elsewhere availableCpus() reads no cgroup.
test('availableCpus: the quota rounded up, capped by the affinity mask, at least 1',
     { timeout: 5000, skip: process.platform !== 'linux' }, () => {
  const quota = (cpuMax) => files({
    '/proc/self/cgroup': '0::/\n', '/proc/self/mountinfo': V2_MOUNT, '/sys/fs/cgroup/cpu.max': cpuMax,
  });
  assert.strictEqual(availableCpus(quota('150000 100000'), 8), 2);
  assert.strictEqual(availableCpus(quota('10000 100000'), 8), 1);
  assert.strictEqual(availableCpus(quota('800000 100000'), 4), 4);
  assert.strictEqual(availableCpus(quota('max 100000'), 3), 3);
  assert.strictEqual(availableCpus(files({}), 6), 6);
});
