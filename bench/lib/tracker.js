'use strict';
// Every process the bench starts.
//
// Processes are remembered by pid together with their start time (field 22
// of /proc/<pid>/stat), so a pid that the kernel has handed to someone else
// in the meantime is never signalled. `killAll()` is synchronous: it runs
// from process 'exit', SIGINT/SIGTERM and uncaught errors alike.

const { spawn } = require('node:child_process');
const { readStat, descendants } = require('../../scripts/lib/procs');

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

module.exports = { track, killPids, killAll, killAllAndExit, spawnTracked, installCleanup };
