'use strict';
// The primary's policy beyond node:cluster, each part off until asked for:
// respawn with backoff (`respawn`), draining with a deadline (`drainTimeout`),
// rolling reload (`cluster.reload()`), replacement of bloated workers
// (`maxMemory`), replacement of hung workers (`hangTimeout`). primary.js calls
// the hooks below at its lifecycle points;
// nothing here listens on `cluster` or a worker, so an app sees the same
// listeners and events as with node:cluster, plus 'restart'.

const os = require('node:os');
const { sampleRss } = require('./procinfo');
const { invalidArgType, invalidValue, clusterError } = require('./errors');
const { validateValue, fromEnv, TUNING } = require('./settings');
const { countRestart, countReload } = require('./stats');

// The values and why: js/settings.js.
const {
  BACKOFF_BASE_MS, BACKOFF_MAX_MS, STABLE_MS, READY_TIMEOUT_MS, DRAIN_TIMEOUT_MS, MEMORY_SAMPLE_MS,
  HANG_POLL_DIVISOR, HANG_POLL_MIN_MS, HANG_POLL_MAX_MS,
} = TUNING;
const RELOAD_SIGNAL_ENV = 'RS_CLUSTER_RELOAD_SIGNAL';

function noop() {}

function exitText(code, signal) {
  return signal ? `was killed by ${signal}` : `exited with code ${code}`;
}

// What a listening worker serves: one key per address it reported.
function addressKey(a) {
  return `${a.addressType}|${a.address}|${a.port}|${a.fd}`;
}

// `routing.inherit(from, to)`: the primary's routing moves what was `from`'s
// (sticky keys) to its replacement `to`. `routing.lags()`: each worker's
// event-loop lag in ms, by id.
/**
 * @param {import('./index').ClusterObject} cluster
 * @param {{ inherit(from: import('./index').WorkerObject, to: import('./index').WorkerObject): void,
 *   lags(): Map<number, number> }} routing
 */
function createSupervisor(cluster, routing) {
  // Per worker: fork env (a replacement gets the same), birth time, the
  // addresses it listens on, and what reload/drain need while it lives.
  const state = new WeakMap();
  const respawnTimers = new Set();
  let failures = 0;
  let nextForkAt = 0;
  let current = null; // the replacement job running (a reload or a memory replacement)
  let queued = null; // the reload waiting for it; later calls join it
  let sampler = null;
  let hangWatch = null;
  let signalInstalled = false;

  // When a replacement for `worker` may be forked: exponential backoff
  // unless it had stayed up a while, and never two forks closer than that.
  function backoff(worker) {
    const now = Date.now();
    if (now - state.get(worker).born >= STABLE_MS) failures = 0;
    const at = Math.max(now, nextForkAt) + Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** failures);
    failures++;
    nextForkAt = at;
    return at - now;
  }

  // Kills a worker on our own account: no respawn for it.
  function kill(worker) {
    state.get(worker).killed = true;
    worker.process.kill('SIGKILL');
  }

  // Forks `previous`'s successor with the same env; 'restart' follows 'fork'.
  function forkSuccessor(previous, reason, details) {
    const worker = cluster.fork(state.get(previous).env);
    countRestart(reason, previous, worker);
    process.nextTick(() => cluster.emit('restart', worker, { reason, previous, ...details }));
    return worker;
  }

  function respawnLater(worker, exitCode, signalCode, reason = 'crash', details = {}) {
    const delay = backoff(worker);
    const timer = setTimeout(() => {
      respawnTimers.delete(timer);
      forkSuccessor(worker, reason, { exitCode, signalCode, delay, ...details });
    }, delay);
    respawnTimers.add(timer);
  }

  // hangTimeout: a worker whose event loop has not turned for that long (the
  // primary reads when it last turned from the page the worker shares with
  // it) cannot drain, so it is killed, and replaced. The primary already
  // stopped giving it connections: what it left unread went elsewhere.
  function watchHangs() {
    const limit = cluster.settings.hangTimeout;
    if (!limit) {
      clearInterval(hangWatch);
      hangWatch = null;
      return;
    }
    const lags = routing.lags();
    for (const worker of Object.values(cluster.workers)) {
      const st = state.get(worker);
      const lag = lags.get(worker.id);
      if (worker.isDead() || st.hungFor !== undefined || !(lag >= limit)) continue;
      st.hungFor = lag;
      worker.process.kill('SIGKILL');
    }
  }

  // How often hangs are looked for: a fraction of the timeout, so one is
  // seen soon after it passes, within bounds that keep the primary idle.
  function hangInterval(limit) {
    return Math.min(HANG_POLL_MAX_MS, Math.max(HANG_POLL_MIN_MS, Math.floor(limit / HANG_POLL_DIVISOR)));
  }

  // Resolves once `worker` serves every address in `needed` (or, with
  // waitReady, once it sent 'ready'); rejects with the reason it did not.
  function whenReady(worker, needed, timeout) {
    const st = state.get(worker);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => st.check(`did not become ready within ${timeout} ms`), timeout);
      st.check = (failure) => {
        if (failure === undefined) {
          const ready = cluster.settings.waitReady ? st.saidReady
            : st.online && [...needed].every((k) => st.keys.has(k));
          if (!ready) return;
        }
        clearTimeout(timer);
        st.check = noop;
        if (failure === undefined) resolve();
        else reject(failure);
      };
      st.check();
    });
  }

  // One rolling step: fork the successor, wait until it is ready, then
  // disconnect `old` (it stops getting connections and drains) and wait for
  // its exit. If the successor fails, it is killed and `old` keeps serving.
  async function replace(old, reason, details, { drainTimeout, readyTimeout }) {
    const st = state.get(old);
    const next = forkSuccessor(old, reason, details);
    st.successor = next;
    // Until it is ready, its death fails this step; respawn stays out of it.
    state.get(next).onTrial = true;
    try {
      await whenReady(next, new Set(st.keys), readyTimeout);
      state.get(next).onTrial = false;
    } catch (why) {
      if (!next.isDead()) kill(next);
      // `old` died meanwhile and nothing replaced it: respawn as for a crash.
      if (old.isDead() && cluster.settings.respawn) respawnLater(old, old.process.exitCode, old.process.signalCode);
      throw clusterError('ERR_RS_CLUSTER_RELOAD',
                         `worker ${next.id}, replacing worker ${old.id}, ${why}; the old worker keeps serving`,
                         { worker: next, previous: old });
    } finally {
      st.successor = null;
    }
    if (old.isDead()) return;
    st.drainTimeout = drainTimeout;
    routing.inherit(old, next);
    if (old.isConnected()) old.disconnect();
    await st.exited;
  }

  async function replaceAll(options) {
    countReload();
    const olds = Object.values(cluster.workers).filter((w) => w.isConnected() && !w.isDead());
    for (const old of olds) {
      // Gone meanwhile: a crash (respawn replaces it) or cluster.disconnect().
      if (old.isConnected() && !old.isDead()) await replace(old, 'reload', {}, options);
    }
  }

  function run(job) {
    current = job();
    const clear = () => { current = null; };
    current.then(clear, clear);
    return current;
  }

  function reload(options) {
    try {
      if (options !== undefined && (options === null || typeof options !== 'object')) {
        throw invalidArgType('options', 'object', options);
      }
      const { drainTimeout = cluster.settings.drainTimeout ?? DRAIN_TIMEOUT_MS, readyTimeout = READY_TIMEOUT_MS } =
        options || {};
      validateValue('options.drainTimeout', 'ms', drainTimeout);
      validateValue('options.readyTimeout', 'ms', readyTimeout);
      options = { drainTimeout, readyTimeout };
    } catch (err) {
      return Promise.reject(err);
    }
    if (current === null) return run(() => replaceAll(options));
    // One at a time: calls made during a reload share the next one.
    if (queued === null) {
      queued = current.then(noop, noop).then(() => {
        queued = null;
        return run(() => replaceAll(options));
      });
    }
    return queued;
  }

  // Replaces one worker over maxMemory at a time, as a one-worker reload;
  // not while another replacement runs, nor before the backoff allows.
  function sample() {
    const limit = cluster.settings.maxMemory;
    if (!limit) {
      clearInterval(sampler);
      sampler = null;
      return;
    }
    const workers = Object.values(cluster.workers).filter((w) => !w.isDead());
    if (workers.length === 0) return;
    sampleRss(workers.map((w) => w.process.pid), (rss) => {
      if (current !== null || Date.now() < nextForkAt) return;
      const old = workers.find((w) => rss.get(w.process.pid) > limit * 1048576 && w.isConnected());
      if (old === undefined) return;
      backoff(old);
      run(() => replace(old, 'memory', { rss: rss.get(old.process.pid) },
                        { drainTimeout: cluster.settings.drainTimeout ?? DRAIN_TIMEOUT_MS, readyTimeout: READY_TIMEOUT_MS }))
        .catch((err) => process.emitWarning(`rs-cluster: ${err.message}`, { code: err.code }));
    });
  }

  // RS_CLUSTER_RELOAD_SIGNAL: an app's own primary reloads on that signal.
  function installReloadSignal() {
    const name = process.env[RELOAD_SIGNAL_ENV];
    if (signalInstalled || name === undefined || name === '') return;
    if (!Object.hasOwn(os.constants.signals, name) || name === 'SIGKILL' || name === 'SIGSTOP') {
      throw invalidValue(`The environment variable ${RELOAD_SIGNAL_ENV}`, 'a signal name such as SIGHUP', name);
    }
    signalInstalled = true;
    process.on(name, () => {
      reload().catch((err) => process.emitWarning(`rs-cluster: reload failed: ${err.message}`, { code: err.code }));
    });
  }

  return {
    reload,

    // setupPrimary(): the environment's settings, under the app's own.
    settingsFromEnv() {
      installReloadSignal();
      return fromEnv();
    },

    forked(worker, env) {
      const st = { env, born: Date.now(), keys: new Set(), online: false, saidReady: false, check: noop };
      st.exited = new Promise((resolve) => { st.resolveExit = resolve; });
      state.set(worker, st);
      if (cluster.settings.maxMemory && sampler === null) sampler = setInterval(sample, MEMORY_SAMPLE_MS).unref();
      const hang = cluster.settings.hangTimeout;
      if (hang && hangWatch === null) hangWatch = setInterval(watchHangs, hangInterval(hang)).unref();
    },

    online(worker) {
      const st = state.get(worker);
      st.online = true;
      st.check();
    },

    listening(worker, address) {
      const st = state.get(worker);
      st.keys.add(addressKey(address));
      st.check();
    },

    // The opt-in readiness of `waitReady`: the worker's process.send('ready').
    message(worker, message) {
      if (message !== 'ready') return;
      const st = state.get(worker);
      st.saidReady = true;
      st.check();
    },

    // Worker.prototype.disconnect(): with a drain timeout, the worker is told
    // to drain and is killed if it has not exited by then. Returns whether.
    disconnecting(worker) {
      const st = state.get(worker);
      const timeout = st.drainTimeout ?? cluster.settings.drainTimeout;
      if (timeout === undefined || worker.isDead()) return false;
      clearTimeout(st.drainTimer);
      // Unref'd: the worker's own process keeps the primary alive until then.
      st.drainTimer = setTimeout(() => kill(worker), timeout).unref();
      return true;
    },

    // Worker.prototype.destroy(): our kill, not a crash.
    destroying(worker) {
      state.get(worker).killed = true;
    },

    exited(worker, exitCode, signalCode) {
      const st = state.get(worker);
      clearTimeout(st.drainTimer);
      st.check(`${exitText(exitCode, signalCode)} before it was ready`);
      st.resolveExit();
      // A hung worker we killed is replaced at once, unless it hung soon
      // after it started (then with backoff, as a crash loop).
      if (st.hungFor !== undefined && !st.successor) {
        const details = { exitCode, signalCode, lag: st.hungFor };
        if (Date.now() - st.born >= STABLE_MS) forkSuccessor(worker, 'hang', details);
        else respawnLater(worker, exitCode, signalCode, 'hang', { lag: st.hungFor });
        return;
      }
      // Not a crash if we or the app asked it to go, if a successor is on its
      // way, or if it was one that failed its start (the reload reports it).
      if (!cluster.settings.respawn || worker.exitedAfterDisconnect || st.killed || st.successor || st.onTrial) return;
      respawnLater(worker, exitCode, signalCode);
    },

    // cluster.disconnect(): the workers that crashed are not brought back.
    disconnectingAll() {
      for (const timer of respawnTimers) clearTimeout(timer);
      respawnTimers.clear();
    },
  };
}

module.exports = { createSupervisor, exitText };
