'use strict';
// A process's resident memory and CPU time, read when asked (nothing runs
// in between): on Linux from /proc/<pid>/stat alone, one small file; on other
// systems from `ps`. The one reader of /proc/<pid>/stat and the one parser of
// `ps` output: the stats snapshot, the supervisor, and the tests' and the
// bench's scripts/lib/procs.js all read processes here.

const fs = require('node:fs');
const { execFile, execFileSync } = require('node:child_process');

/** @type {import('node:child_process').ExecFileSyncOptionsWithStringEncoding} */
const QUIET = { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] };

// Clock ticks per second and the page size, asked of getconf once: USER_HZ
// is 100 and pages are 4096 bytes on most Linux systems, not all (arm64
// kernels with 16 or 64 KiB pages).
let known = null;

function getconf(name, fallback) {
  try {
    return Number(execFileSync('getconf', [name], QUIET)) || fallback;
  } catch {
    return fallback;
  }
}

function units() {
  if (known === null) known = { tick: getconf('CLK_TCK', 100), page: getconf('PAGESIZE', 4096) };
  return known;
}

// /proc/<pid>/stat, or null if the process is gone. The fields are split
// after the command name, which may hold spaces and parentheses; field n of
// proc(5) is at n - 3. utime and stime are in clock ticks, rss in pages.
function readStat(pid) {
  let text;
  try {
    text = fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
  } catch {
    return null;
  }
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  const f = (n) => rest[n - 3];
  return {
    state: f(3),
    ppid: Number(f(4)),
    utime: Number(f(14)),
    stime: Number(f(15)),
    // Clock ticks after boot: a pid handed to another process has another.
    starttime: f(22),
    rssPages: Number(f(24)),
  };
}

function fromProc(pid) {
  const s = readStat(pid);
  if (s === null) return null;
  const { tick, page } = units();
  return { rss: s.rssPages * page, cpu: (s.utime + s.stime) / tick };
}

const PS_ARGS = (pids) => ['-o', 'pid=,rss=,time=', '-p', pids.join(',')];

// `ps -o pid=,rss=,time=` output: rss in KiB, cumulative CPU time as
// [[dd-]hh:]mm:ss[.cc]. Returns pid -> { rss: bytes, cpu: seconds }.
function parsePs(text) {
  const out = new Map();
  for (const line of text.split('\n')) {
    const [pid, rss, time] = line.trim().split(/\s+/);
    if (time === undefined) continue;
    const [days, clock] = time.includes('-') ? time.split('-') : ['0', time];
    const seconds = clock.split(':').reduce((total, part) => total * 60 + Number(part), 0);
    out.set(Number(pid), { rss: Number(rss) * 1024, cpu: Number(days) * 86400 + seconds });
  }
  return out;
}

function fromPs(pid) {
  try {
    return parsePs(execFileSync('ps', PS_ARGS([pid]), QUIET)).get(pid) ?? null;
  } catch {
    return null; // ps exits 1 when no such process
  }
}

// { rss: bytes, cpu: user + system seconds } of `pid`, or null if it is gone.
function processInfo(pid) {
  return process.platform === 'linux' ? fromProc(pid) : fromPs(pid);
}

// Resident set sizes in bytes by pid, to `cb`: /proc on Linux, else one
// `ps` for all of them, without blocking the caller. A pid that exited
// since is left out.
function sampleRss(pids, cb) {
  if (process.platform !== 'linux') {
    execFile('ps', PS_ARGS(pids), { encoding: 'utf8' }, (err, stdout) => {
      const out = new Map();
      for (const [pid, info] of err ? [] : parsePs(stdout)) out.set(pid, info.rss);
      cb(out);
    });
    return;
  }
  const out = new Map();
  for (const pid of pids) {
    const info = fromProc(pid);
    if (info !== null) out.set(pid, info.rss);
  }
  cb(out);
}

module.exports = { processInfo, sampleRss, readStat, units, parsePs };
