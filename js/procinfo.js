'use strict';
// A process's resident memory and CPU time, read when asked (nothing runs
// in between): on Linux from /proc/<pid>/stat alone, one small file; on other
// systems from `ps`. Shared by the stats snapshot and the supervisor.

const fs = require('node:fs');
const { execFileSync } = require('node:child_process');

// Clock ticks per second and the page size, asked of getconf once: USER_HZ
// is 100 and pages are 4096 bytes on most Linux systems, not all (arm64
// kernels with 16 or 64 KiB pages).
let units = null;

function getconf(name, fallback) {
  try {
    return Number(execFileSync('getconf', [name], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })) || fallback;
  } catch {
    return fallback;
  }
}

function fromProc(pid) {
  let text;
  try {
    text = fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
  } catch {
    return null;
  }
  if (units === null) units = { tick: getconf('CLK_TCK', 100), page: getconf('PAGESIZE', 4096) };
  // Fields after the command name, which may hold spaces and parentheses;
  // field n of proc(5) is at n - 3.
  const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return { rss: Number(f[21]) * units.page, cpu: (Number(f[11]) + Number(f[12])) / units.tick };
}

// `ps` prints rss in KiB and cumulative CPU time as [[dd-]hh:]mm:ss[.cc].
function fromPs(pid) {
  let out;
  try {
    out = execFileSync('ps', ['-o', 'rss=,time=', '-p', `${pid}`], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  } catch {
    return null; // ps exits 1 when no such process
  }
  const [rss, time] = out.trim().split(/\s+/);
  if (time === undefined) return null;
  const [days, clock] = time.includes('-') ? time.split('-') : ['0', time];
  const seconds = clock.split(':').reduce((total, part) => total * 60 + Number(part), 0);
  return { rss: Number(rss) * 1024, cpu: Number(days) * 86400 + seconds };
}

// { rss: bytes, cpu: user + system seconds } of `pid`, or null if it is gone.
function processInfo(pid) {
  return process.platform === 'linux' ? fromProc(pid) : fromPs(pid);
}

module.exports = { processInfo };
