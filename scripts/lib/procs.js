'use strict';
// Process readings shared by the tests, the bench and the scripts: /proc
// where it exists (Linux), signal 0 elsewhere. The one copy of each, so that
// neither the tests nor the bench import the other's code.

const fs = require('node:fs');
// /proc/<pid>/stat is read in one place, the package's own reader.
const { readStat, units } = require('../../js/procinfo');

const HAS_PROC = fs.existsSync('/proc/self/stat');

// /proc/<pid>/<file>, or null if the process is gone.
function readProc(pid, file) {
  try {
    return fs.readFileSync(`/proc/${pid}/${file}`, 'utf8');
  } catch {
    return null;
  }
}

// Whether `pid` runs: signal 0 reaches it (EPERM: it runs as someone else)
// and, where /proc tells, it is not a zombie waiting to be reaped.
function isAlive(pid) {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if (err.code !== 'EPERM') return false;
  }
  if (!HAS_PROC) return true;
  const s = readStat(pid);
  return s !== null && s.state !== 'Z';
}

// Resolves true once every pid is gone, false if some still runs after `timeoutMs`.
async function waitGone(pids, timeoutMs) {
  const until = Date.now() + timeoutMs;
  for (;;) {
    if (pids.every((p) => !isAlive(p))) return true;
    if (Date.now() >= until) return false;
    await new Promise((r) => setTimeout(r, 10));
  }
}

// CPU seconds of a process, all its threads included; null if gone. To the
// nanosecond where Linux keeps schedstat: the sum over its live threads (a
// window of a few seconds of a process using a tenth of a core is some forty
// of /proc/<pid>/stat's 10 ms ticks, too coarse for a 5% comparison). A
// thread that has exited is not counted: the processes measured here are
// Node's, whose threads live as long as they do.
function cpuSeconds(pid) {
  let tids;
  try {
    tids = fs.readdirSync(`/proc/${pid}/task`);
  } catch {
    tids = null;
  }
  if (tids !== null) {
    let ns = 0;
    for (const tid of tids) {
      const sched = readProc(pid, `task/${tid}/schedstat`);
      if (sched !== null) ns += Number(sched.split(' ')[0]);
    }
    if (ns > 0 && Number.isFinite(ns)) return ns / 1e9;
  }
  const s = readStat(pid);
  return s === null ? null : (s.utime + s.stime) / units().tick;
}

// { rssKb: VmRSS, hwmKb: VmHWM } of a process, or null if gone.
function memory(pid) {
  const text = readProc(pid, 'status');
  if (text === null) return null;
  const kb = (name) => {
    const m = new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(text);
    return m ? +m[1] : null;
  };
  return { rssKb: kb('VmRSS'), hwmKb: kb('VmHWM') };
}

// All live descendants of `root`, found through the ppid of every process.
function descendants(root) {
  const children = new Map();
  let entries = [];
  try {
    entries = fs.readdirSync('/proc');
  } catch {
    return [];
  }
  for (const name of entries) {
    if (!/^\d+$/.test(name)) continue;
    const s = readStat(name);
    if (s === null) continue;
    if (!children.has(s.ppid)) children.set(s.ppid, []);
    children.get(s.ppid).push(+name);
  }
  const out = [];
  const stack = [root];
  while (stack.length > 0) {
    for (const c of children.get(stack.pop()) || []) {
      out.push(c);
      stack.push(c);
    }
  }
  return out;
}

module.exports = { clkTck: units().tick, readStat, isAlive, waitGone, cpuSeconds, memory, descendants };
