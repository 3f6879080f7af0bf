'use strict';
// System calls made by every thread of a set of processes over a window:
// `perf stat` counting the raw_syscalls:sys_enter tracepoint, and, for a
// breakdown, one syscalls:sys_enter_<name> tracepoint per syscall listed.
// perf starts with its counters off (-D -1) and is switched on and off over
// a control pipe (--control fd:3,4), each switch acknowledged, so the window
// is the load's and not perf's own start-up.

const fs = require('node:fs');
const { spawnSync } = require('node:child_process');
const tracker = require('./tracker');

const RAW = 'raw_syscalls:sys_enter';
// What a cluster's processes call per connection or request (as seen with
// `perf trace -s` on both implementations); the rest adds up to "other".
// Tracepoints go by the kernel's names (fstat is newfstat).
const BREAKDOWN = [
  'accept4', 'close', 'epoll_ctl', 'epoll_wait', 'epoll_pwait', 'poll', 'ppoll', 'read', 'recvfrom',
  'recvmsg', 'write', 'writev', 'sendmsg', 'sendmmsg', 'shutdown', 'setsockopt', 'getsockopt',
  'getsockname', 'fcntl', 'ioctl', 'newfstat', 'futex', 'clock_nanosleep', 'sched_yield', 'mmap',
  'munmap', 'madvise', 'mprotect',
];
const TRACEFS = ['/sys/kernel/tracing/events/syscalls', '/sys/kernel/debug/tracing/events/syscalls'];
const PERF_ARGS = ['stat', '-x,', '-D', '-1', '--control', 'fd:3,4'];
const STDIO = ['ignore', 'ignore', 'pipe', 'pipe', 'pipe'];

// Whether perf can count here, asked once: { ok, note, breakdown }, where
// `breakdown` lists the syscalls this kernel has a tracepoint for.
function probe() {
  const r = spawnSync('perf', [...PERF_ARGS, '-e', RAW, '--', 'true'], { encoding: 'utf8', timeout: 15000, stdio: STDIO });
  if (r.error) {
    return { ok: false, note: r.error.code === 'ENOENT' ? 'perf is not installed' : `perf: ${r.error.message}` };
  }
  if (r.status !== 0) {
    const why = (r.stderr || '').split('\n').map((l) => l.trim()).find((l) => l && !/^(Events |Error:?$)/.test(l));
    return { ok: false, note: `perf stat is not permitted or too old here: ${why || `exit ${r.status}`}` };
  }
  const dir = TRACEFS.find((d) => fs.existsSync(d));
  const breakdown = dir ? BREAKDOWN.filter((n) => fs.existsSync(`${dir}/sys_enter_${n}`)) : [];
  return { ok: true, note: dir ? null : 'no tracefs: no per-syscall breakdown', breakdown };
}

// Starts perf on `pids` with its counters off. `enable()` starts counting
// once perf is attached; `finish()` stops it, ends perf and resolves
// { total, bySyscall: { name: count } | null }; both reject if perf fails.
// `abort()` kills it.
function attach(pids, breakdown = []) {
  const events = [RAW, ...breakdown.map((n) => `syscalls:sys_enter_${n}`)];
  const child = tracker.spawnTracked('perf', [...PERF_ARGS, '-e', events.join(','), '-p', pids.join(',')],
    { stdio: STDIO }, 'perf');
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d) => { stderr += d; });
  const exited = new Promise((resolve) => child.on('close', (code, signal) => resolve({ code, signal })));
  // A perf that failed to start, or went, shows up as `exited`.
  child.on('error', () => {});
  child.stdio[3].on('error', () => {});
  const fail = (what) => new Error(`perf ${what}: ${stderr.trim().split('\n').slice(-3).join(' / ') || 'no output'}`);

  // perf writes "ack\n" (and a NUL) for each command once it is done.
  let acks = 0;
  const waiting = [];
  child.stdio[4].on('data', (d) => {
    acks += (String(d).match(/ack/g) || []).length;
    while (waiting.length > 0 && waiting[0].n <= acks) waiting.shift().resolve();
  });
  let sent = 0;
  const command = (cmd) => new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(fail(`did not acknowledge '${cmd}' within 10 s`)), 10000);
    waiting.push({ n: ++sent, resolve: () => { clearTimeout(timer); resolve(); } });
    exited.then(() => { clearTimeout(timer); reject(fail('exited')); });
    child.stdio[3].write(`${cmd}\n`);
  });

  const finish = async () => {
    await command('disable');
    // perf prints its counts as it ends on SIGINT.
    child.kill('SIGINT');
    const timer = setTimeout(() => tracker.killPids([child.pid]), 5000);
    await exited;
    clearTimeout(timer);
    const counts = {};
    for (const line of stderr.split('\n')) {
      const f = line.split(',');
      if (f.length >= 3 && /^\d+$/.test(f[0])) counts[f[2]] = +f[0];
    }
    if (counts[RAW] === undefined) throw fail('counted nothing');
    if (breakdown.length === 0) return { total: counts[RAW], bySyscall: null };
    const bySyscall = {};
    for (const n of breakdown) bySyscall[n] = counts[`syscalls:sys_enter_${n}`] ?? 0;
    return { total: counts[RAW], bySyscall };
  };
  return { enable: () => command('enable'), finish, abort: () => tracker.killPids([child.pid]) };
}

module.exports = { probe, attach };
