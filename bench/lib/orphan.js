'use strict';
// Should the bench be killed outright (SIGKILL, a test timeout), the
// processes it started do not outlive it by more than a second: each checks
// that BENCH_PARENT_PID still runs and calls `onGone` when it does not.
function exitWithBench(onGone) {
  const parent = +process.env.BENCH_PARENT_PID;
  if (!(parent > 0)) return;
  setInterval(() => {
    try {
      process.kill(parent, 0);
    } catch {
      onGone();
    }
  }, 1000).unref();
}

module.exports = { exitWithBench };
