'use strict';
// Plumbing for the supervisor tests: run the rs-cluster command, wait for
// its stderr log lines.

const path = require('node:path');
const { startCluster, ROOT } = require('./helpers');

const BIN = path.join(ROOT, 'bin', 'rs-cluster.js');
const FIXTURES = path.join(__dirname, 'fixtures');

// The command with `args`, from the fixtures folder (scripts by bare name).
function command(args, { env = {} } = {}) {
  return startCluster(BIN, { args, env, cwd: FIXTURES });
}

// Resolves with the match once the command's stderr matches `re`.
function waitForLog(h, re, timeout = 10000) {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const poll = setInterval(() => {
      const m = re.exec(h.stderr);
      if (m !== null) {
        clearInterval(poll);
        resolve(m);
      } else if (Date.now() - t0 > timeout) {
        clearInterval(poll);
        reject(new Error(`no ${re} in the command's stderr within ${timeout} ms:\n${h.stderr}`));
      }
    }, 20);
  });
}

module.exports = { BIN, FIXTURES, command, waitForLog };
