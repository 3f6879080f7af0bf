'use strict';
// js/procinfo.js reads another process's RSS and CPU time: from /proc on
// Linux, from `ps` elsewhere (forced here by making the module see another
// platform); both agree with what the process says of itself.
const test = require('node:test');
const assert = require('node:assert');
const path = require('node:path');
const { spawn, execFileSync } = require('node:child_process');
const readline = require('node:readline');
const { ROOT } = require('./helpers');

const PROCINFO = path.join(ROOT, 'js', 'procinfo.js');

// A process that burns 1.2 s of CPU, touches 64 MB, reports its own
// figures, and waits to be killed.
function burner() {
  const child = spawn(process.execPath, ['-e', `
    const held = Buffer.alloc(64 * 1048576, 1);
    const until = Date.now() + 1200; while (Date.now() < until);
    const c = process.cpuUsage();
    console.log(JSON.stringify({ rss: process.memoryUsage.rss(), cpu: (c.user + c.system) / 1e6, held: held.length }));
    setInterval(() => {}, 1000);`], { stdio: ['ignore', 'pipe', 'inherit'] });
  const line = new Promise((resolve) => readline.createInterface({ input: child.stdout }).once('line', resolve));
  return { child, own: line.then(JSON.parse) };
}

// processInfo(pid) as a process on `platform` sees it.
function infoAs(platform, pid) {
  const script = `Object.defineProperty(process, 'platform', { value: ${JSON.stringify(platform)} });
    console.log(JSON.stringify(require(${JSON.stringify(PROCINFO)}).processInfo(${pid})));`;
  return JSON.parse(execFileSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 10000 }));
}

test('RSS and CPU of another process, from /proc and from ps; null once it is gone', { skip: process.platform !== 'linux' && 'compares the two readers on Linux', timeout: 20000 }, async () => {
  const { child, own } = burner();
  try {
    const self = await own;
    for (const platform of ['linux', 'darwin']) {
      const info = infoAs(platform, child.pid);
      assert.ok(Math.abs(info.rss - self.rss) < 8 * 1048576 && info.rss > 64 * 1048576, `${platform} rss ${info.rss} vs ${self.rss}`);
      // ps shows whole seconds here; /proc, clock ticks.
      assert.ok(Math.abs(info.cpu - self.cpu) <= (platform === 'linux' ? 0.1 : 1), `${platform} cpu ${info.cpu} vs ${self.cpu}`);
    }
  } finally {
    child.kill('SIGKILL');
  }
  await new Promise((resolve) => child.once('exit', resolve));
  assert.strictEqual(infoAs('linux', child.pid), null);
  assert.strictEqual(infoAs('darwin', child.pid), null);
});

test('ps output: rss in KiB, CPU time as [[dd-]hh:]mm:ss[.cc], by pid', () => {
  const { parsePs } = require(PROCINFO);
  const out = parsePs('  41  1024 00:01:02\n 42 2048 1-02:03:04\n43 4 0:01.50\n\n');
  assert.deepStrictEqual([...out], [
    [41, { rss: 1048576, cpu: 62 }],
    [42, { rss: 2097152, cpu: 86400 + 7384 }],
    [43, { rss: 4096, cpu: 1.5 }],
  ]);
});
