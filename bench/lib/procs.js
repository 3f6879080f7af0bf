'use strict';
// Every process the bench starts, and the /proc readings it takes of them.
//
// Processes are remembered by pid together with their start time (field 22
// of /proc/<pid>/stat), so a pid that the kernel has handed to someone else
// in the meantime is never signalled. `killAll()` is synchronous: it runs
// from process 'exit', SIGINT/SIGTERM and uncaught errors alike.

const fs = require('node:fs');
const { spawn, execFileSync } = require('node:child_process');

let clkTck = 100;
try {
  clkTck = +execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim() || 100;
} catch {
  // Linux's USER_HZ is 100 everywhere that matters.
}

// /proc/<pid>/stat split after the command name, which may hold spaces and
// parentheses. `f(n)` is field n as numbered in proc(5).
function readStat(pid) {
  let text;
  try {
    text = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  const f = (n) => rest[n - 3];
  return {
    state: f(3),
    ppid: +f(4),
    utime: +f(14),
    stime: +f(15),
    starttime: f(22),
  };
}

// User + system CPU seconds of a process, all its threads included.
function cpuSeconds(pid) {
  const s = readStat(pid);
  return s === null ? null : (s.utime + s.stime) / clkTck;
}

// { VmRSS, VmHWM } of a process in kB.
function memory(pid) {
  let text;
  try {
    text = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return null;
  }
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

const tracked = new Map(); // pid -> { starttime, label, tree }

function isSame(pid, starttime) {
  const s = readStat(pid);
  return s !== null && s.starttime === starttime && s.state !== 'Z';
}

// Remembers `pid`; with `tree`, its descendants are killed with it.
function track(pid, label, { tree = false } = {}) {
  if (!pid || tracked.has(pid)) return;
  const s = readStat(pid);
  if (s === null) return;
  tracked.set(pid, { starttime: s.starttime, label, tree });
}

// SIGKILLs the given tracked pids (and the descendants of those tracked as
// trees), children first. Returns the pids it signalled.
function killPids(pids) {
  const victims = new Map();
  for (const pid of pids) {
    const t = tracked.get(pid);
    if (!t) continue;
    if (!isSame(pid, t.starttime)) {
      tracked.delete(pid);
      continue;
    }
    if (t.tree) {
      for (const d of descendants(pid)) {
        const s = readStat(d);
        if (s !== null) victims.set(d, s.starttime);
      }
    }
    victims.set(pid, t.starttime);
  }
  const order = [...victims.keys()].reverse();
  const killed = [];
  for (const pid of order) {
    if (!isSame(pid, victims.get(pid))) continue;
    try {
      process.kill(pid, 'SIGKILL');
      killed.push(pid);
    } catch {
      // Gone already.
    }
  }
  for (const pid of pids) tracked.delete(pid);
  return killed;
}

function killAll() {
  return killPids([...tracked.keys()]);
}

// Resolves once none of `pids` is alive (or after `timeoutMs`); true if all went.
async function waitGone(pids, timeoutMs = 3000) {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const left = pids.filter((p) => {
      const s = readStat(p);
      return s !== null && s.state !== 'Z';
    });
    if (left.length === 0) return true;
    if (Date.now() > until) return false;
    await new Promise((r) => setTimeout(r, 20));
  }
}

const children = new Set(); // direct children not yet reaped

// child_process.spawn, tracked from the start.
function spawnTracked(cmd, args, opts = {}, label = cmd, trackOpts = {}) {
  const child = spawn(cmd, args, opts);
  if (child.pid) track(child.pid, label, trackOpts);
  children.add(child);
  child.on('exit', () => {
    tracked.delete(child.pid);
    children.delete(child);
  });
  return child;
}

// Kills everything, lets Node reap its direct children (no zombies left to
// an init that may not reap), then exits.
function killAllAndExit(code) {
  const n = killAll().length;
  const until = Date.now() + 1000;
  const tick = () => {
    if (children.size === 0 || Date.now() > until) process.exit(code);
    setTimeout(tick, 10);
  };
  tick();
  return n;
}

let installed = false;
// Kills everything on exit, Ctrl-C, SIGTERM and crashes.
function installCleanup() {
  if (installed) return;
  installed = true;
  process.on('exit', killAll);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.on(sig, () => {
      const n = killAllAndExit(130);
      process.stderr.write(`\nbench: ${sig}: killed ${n} process(es) it had started\n`);
    });
  }
  const crash = (err) => {
    process.stderr.write(`bench: ${err && err.stack ? err.stack : err}\n`);
    killAllAndExit(1);
  };
  process.on('uncaughtException', crash);
  process.on('unhandledRejection', crash);
}

module.exports = {
  clkTck, readStat, cpuSeconds, memory, descendants, track, killPids, killAll,
  killAllAndExit, waitGone, spawnTracked, installCleanup, tracked,
};
