'use strict';
// The `rs-cluster` command: runs an unchanged single-process server script as
// a cluster (the script is the workers' `exec`), fit to be PID 1 in a
// container. Every argument is checked before anything is forked; signals
// become a graceful stop (SIGTERM, SIGINT), a rolling reload (SIGHUP) or an
// immediate stop (a second SIGINT); the exit status says how it ended.

const path = require('node:path');
const { parseArgs } = require('node:util');
const { spawn } = require('node:child_process');
const settings = require('./settings');
const { availableCpus } = require('./cpus');
const { formatAddress: addressText } = require('./address');
const { exitText } = require('./supervisor');

// The values and why: js/settings.js.
const { MAX_WORKERS, MAX_FAILED_STARTS, DRAIN_TIMEOUT_MS, STABLE_MS } = settings.TUNING;

/** @satisfies {import('node:util').ParseArgsConfig['options']} */
const OPTIONS = {
  workers: { type: 'string', short: 'w' },
  policy: { type: 'string' },
  'sticky-key': { type: 'string' },
  placement: { type: 'string' },
  control: { type: 'string' },
  takeover: { type: 'string' },
  'drain-timeout': { type: 'string' },
  'hang-timeout': { type: 'string' },
  'max-memory': { type: 'string' },
  'wait-ready': { type: 'boolean' },
  'no-respawn': { type: 'boolean' },
  metrics: { type: 'string' },
  'metrics-token': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean', short: 'v' },
};

// Flags that set a supervisor setting (js/settings.js checks the value).
const SETTING_FLAGS = {
  'drain-timeout': 'drainTimeout',
  'hang-timeout': 'hangTimeout',
  'max-memory': 'maxMemory',
  'sticky-key': 'sticky',
  placement: 'placement',
  control: 'control',
  metrics: 'metrics',
  'metrics-token': 'metricsToken',
};

// The scheduling policies' words, from the Rust table (`policies()`), Node's
// two first; without the addon, the fallback's list of the same.
function policyNames() {
  try {
    return require('./native').policies().map((p) => p.name);
  } catch {
    return ['none', 'rr', ...require('./fallback').NATIVE_POLICIES];
  }
}
const POLICIES = policyNames();

// The command's own defaults; the environment and the flags override them.
const DEFAULTS = { respawn: true, drainTimeout: DRAIN_TIMEOUT_MS };

const USAGE = 'usage: rs-cluster [options] <script> [script args...]   (rs-cluster --help for more)';

const HELP = `rs-cluster [options] <script> [script args...]   run an unchanged server script as a cluster
  -w, --workers <n|max>   workers (default: max = the CPUs this process may use, cgroup quota included)
  --policy <${POLICIES.join('|')}>
                          scheduling: round-robin in the primary (default), the kernel's shared socket,
                          the worker with the fewest live connections, a client's own worker, or the
                          less loaded of two workers drawn at random
  --sticky-key <key>      ip|header:NAME|cookie:NAME|query:NAME, with --policy sticky (default ip)
  --control <path>        a unix socket (0600) for rs-cluster status|reload|stop <path>; SIGUSR2 then
                          starts a new primary from disk that takes over (--takeover)
  --takeover <path>       take the listening sockets of the primary at control socket <path>, start the
                          workers, then stop it (it drains) and serve <path> from here
  --placement <kernel|primary>
                          with rr on TCP (Linux): the kernel queues each connection at its worker's own
                          socket, steered by the primary (kernel), or the primary hands it over (default)
  --drain-timeout <ms>    graceful stop and reload: how long a worker may finish (default ${DRAIN_TIMEOUT_MS})
  --hang-timeout <ms>     replace a worker whose event loop is stuck this long (default 0 = off)
  --max-memory <MB>       replace a worker whose RSS exceeds this, gracefully (default off)
  --wait-ready            a new worker is ready when it calls process.send('ready'), not when it listens
  --no-respawn            do not replace workers that exit unexpectedly (default: respawn, with backoff)
  --metrics <[host:]port> serve GET /metrics (Prometheus text), GET /stats (JSON), the status page
                          GET / and the probes GET /healthz and /readyz from the primary; host default
                          127.0.0.1
  --metrics-token <token> /stats and /metrics then ask for Authorization: Bearer <token> (the page asks
                          once); RS_CLUSTER_METRICS_TOKEN keeps it out of the process list
  -h, --help              this text
  -v, --version           rs-cluster's version

rs-cluster top <[host:]port>   live view of a running cluster's /stats, refreshed every second; q quits
rs-cluster status|reload|stop <path>   ask the primary at control socket <path>: print its stats, reload
                               (as SIGHUP), stop gracefully (as SIGTERM); wait for the outcome, exit 0 or 1

Signals: SIGHUP = rolling reload; SIGTERM or SIGINT = graceful stop (no new connections, in-flight
work finishes within the drain timeout, exit 0); a second SIGINT = stop now (exit 130).
Exit status: 0 after a stop, 1 if the workers could never start or all exited with respawn off,
2 on a usage error. Environment: RS_CLUSTER_RESPAWN, RS_CLUSTER_DRAIN_TIMEOUT, RS_CLUSTER_HANG_TIMEOUT,
RS_CLUSTER_MAX_MEMORY, RS_CLUSTER_WAIT_READY, RS_CLUSTER_METRICS, RS_CLUSTER_METRICS_TOKEN, NODE_CLUSTER_SCHED_POLICY, RS_CLUSTER_STICKY_KEY, RS_CLUSTER_PLACEMENT
(flags win).
`;

class UsageError extends Error {}

// Splits the command line at the script: what follows it is the script's.
// The options before it are re-read strictly, each as `--name=value`, so a
// value starting with a dash (`--drain-timeout -5`) gets the value's own
// error, not parseArgs' "ambiguous".
function split(argv) {
  const { tokens } = parseArgs({ args: argv, options: OPTIONS, strict: false, allowPositionals: true, tokens: true });
  const options = [];
  for (const t of tokens) {
    if (t.kind === 'option-terminator') {
      return { options, script: argv[t.index + 1], args: argv.slice(t.index + 2) };
    }
    if (t.kind === 'positional') return { options, script: t.value, args: argv.slice(t.index + 1) };
    const known = Object.hasOwn(OPTIONS, t.name);
    const name = known ? `--${t.name}` : t.rawName;
    options.push(t.value === undefined ? name : `${name}=${t.value}`);
  }
  return { options, script: undefined, args: [] };
}

function readOptions(options) {
  try {
    return parseArgs({ args: options, options: OPTIONS, strict: true, allowPositionals: false }).values;
  } catch (err) {
    // parseArgs' first sentence is the reason.
    throw new UsageError(err.message.split(/\.\s|\n/)[0]);
  }
}

function parseWorkers(text) {
  if (text === undefined || text === 'max') return availableCpus();
  if (/^\d+$/.test(text) && +text >= 1 && +text <= MAX_WORKERS) return +text;
  throw new UsageError(`-w/--workers must be a whole number from 1 to ${MAX_WORKERS}, or max. Received '${text}'`);
}

function checkPolicy(policy, stickyKey) {
  if (stickyKey !== undefined && policy !== 'sticky') throw new UsageError('--sticky-key needs --policy sticky');
  if (policy === undefined || POLICIES.includes(policy)) return;
  throw new UsageError(`--policy must be ${POLICIES.slice(0, -1).join(', ')} or ${POLICIES.at(-1)}. Received '${policy}'`);
}

function resolveScript(script) {
  if (script === undefined) throw new UsageError('missing the script to run');
  try {
    // As `node <script>` finds it: extensions, a directory's index or main.
    return require.resolve(path.resolve(script));
  } catch {
    throw new UsageError(`cannot find the script '${script}' (from ${process.cwd()})`);
  }
}

// The whole command line, checked: throws UsageError (or a settings error)
// before anything starts.
function parseCommandLine(argv) {
  const { options, script, args } = split(argv);
  const values = readOptions(options);
  if (values.help || values.version) return { help: !!values.help, version: !!values.version };
  checkPolicy(values.policy, values['sticky-key']);
  const flags = {};
  for (const [flag, key] of Object.entries(SETTING_FLAGS)) {
    if (values[flag] !== undefined) flags[key] = settings.parseText(key, values[flag], `--${flag}`);
  }
  // Sockets handed to another process would be taken by mistake.
  const inherited = require('./systemd').listenFds();
  if (inherited.error !== undefined) throw new UsageError(inherited.error);
  if (values['no-respawn']) flags.respawn = false;
  if (values['wait-ready']) flags.waitReady = true;
  if (values.takeover === '') throw new UsageError('--takeover takes the control socket path of the primary to replace');
  /** @type {import('node:cluster').ClusterSettings} */
  const all = { ...DEFAULTS, ...settings.fromEnv(), ...flags };
  if (flags.metricsToken !== undefined && all.metrics === undefined) {
    throw new UsageError('--metrics-token guards the metrics endpoint: it needs --metrics (or RS_CLUSTER_METRICS)');
  }
  return {
    workers: parseWorkers(values.workers),
    policy: values.policy,
    settings: all,
    exec: resolveScript(script),
    args,
    takeover: values.takeover,
    argv,
  };
}

function log(message) {
  process.stderr.write(`rs-cluster: ${message}\n`);
}

function describeWorker(worker) {
  return `worker ${worker.id} (pid ${worker.process.pid})`;
}

// What the service manager hears (NOTIFY_SOCKET; nothing without it):
// READY=1 once the first `workers` are ready, RELOADING=1 then READY=1
// around a reload, STOPPING=1 at a graceful stop, a STATUS= line, and
// WATCHDOG=1 every half WATCHDOG_USEC while the reactor answers and some
// worker's event loop turns.
function serviceManager(cluster, workers, onReady) {
  const systemd = require('./systemd');
  const notify = systemd.notifier();
  const ready = new Set();
  let isReady = false;
  let last = null;
  const status = () => {
    let s;
    try {
      s = cluster.stats();
    } catch (err) {
      return `STATUS=${err.message}`;
    }
    const now = Date.now();
    const rate = last === null ? 0 : ((s.totals.accepted - last.accepted) * 1000) / Math.max(1, now - last.at);
    last = { at: now, accepted: s.totals.accepted };
    const listening = s.workers.filter((w) => w.state === 'listening').length;
    return `STATUS=${listening} worker(s) listening, policy ${s.routing.policy}, ${Math.round(rate)} req/s`;
  };
  if (notify !== null) {
    const every = systemd.watchdogMs();
    const tick = () => {
      if (!isReady) return;
      try {
        let fields = status();
        const turning = cluster.stats().workers.some((w) => w.eventLoopLag * 1000 < (every ?? Infinity) * 2);
        if (every !== null && turning) fields += '\nWATCHDOG=1';
        notify(fields);
      } catch {
        // The reactor does not answer: no WATCHDOG=1, and the manager acts.
      }
    };
    setInterval(tick, every ?? 10000).unref();
  }
  return {
    ready(worker) {
      if (isReady) return;
      ready.add(worker.id);
      if (ready.size < workers) return;
      isReady = true;
      systemd.reportUnclaimed(cluster.stats().listeners.map((l) => l.address));
      // After a hand-over the service's main process is this one.
      if (notify !== null) notify(`READY=1\n${onReady ? `MAINPID=${process.pid}\n` : ''}${status()}`);
      if (onReady) onReady();
    },
    reloading() {
      if (notify !== null) notify(`RELOADING=1\nMONOTONIC_USEC=${systemd.monotonicUsec()}`);
    },
    reloaded() {
      if (notify !== null) notify(`READY=1\n${status()}`);
    },
    stopping() {
      if (notify !== null) notify('STOPPING=1');
    },
  };
}

// What only the native primary does, asked of the command without it.
/** @param {string | undefined} takeover */
function refuseWithoutNative(takeover) {
  const { nativeRequired } = require('./fallback');
  if (takeover !== undefined) throw nativeRequired('--takeover');
  if (require('./systemd').listenFds().fds.length > 0) throw nativeRequired('Socket activation (LISTEN_FDS)');
  if (process.env.NOTIFY_SOCKET) throw nativeRequired('Notifying the service manager (NOTIFY_SOCKET)');
}

/** @param {ReturnType<typeof parseCommandLine>} commandLine one that is neither --help nor --version */
function run({ workers, policy, settings: clusterSettings, exec, args, takeover, argv }) {
  // The command reloads on SIGHUP itself; the app's primary variable would
  // make a second handler.
  delete process.env.RS_CLUSTER_RELOAD_SIGNAL;
  const cluster = require('./index.js');
  // What needs the native primary, asked of a cluster without it: one line, exit 2.
  const refused = (ask) => {
    try {
      ask();
      return false;
    } catch (err) {
      if (err.code !== 'ERR_RS_CLUSTER_NATIVE_REQUIRED') throw err;
      log(err.message);
      process.exitCode = 2;
      return true;
    }
  };
  if (!cluster.native && refused(() => refuseWithoutNative(takeover))) return;
  const control = require('./control');
  // The command, not an app's own primary, takes systemd's sockets.
  require('./systemd').useListenFds();
  if (takeover !== undefined) {
    // The control path is the old primary's until it is told to stop.
    delete process.env.RS_CLUSTER_CONTROL;
    delete /** @type {Record<string, unknown>} */ (clusterSettings).control;
    try {
      require('./systemd').handOver(control.fetchListeners(takeover));
    } catch (err) {
      log(err.message);
      process.exitCode = 2;
      return;
    }
  }
  if (refused(() => {
    if (policy !== undefined) cluster.schedulingPolicy = cluster[`SCHED_${policy.toUpperCase()}`];
    cluster.setupPrimary({ exec, args, ...clusterSettings });
  })) return;

  const live = new Map(); // worker -> fork time
  const addresses = new Set();
  let started = false;
  let failedStarts = 0;
  let stopping = false;
  let stopCode = 0;
  let anyFailed = false;

  const finish = (code) => process.exit(code);
  const service = serviceManager(cluster, workers, takeover === undefined ? null : () => {
    // Ready: the old primary stops (it drains and exits 0); this one serves its control path.
    control.request(takeover, 'handoff', false).then((answer) => {
      if (!answer.ok) throw new Error(answer.error);
      control.replace(takeover);
      cluster.setupPrimary({ control: takeover });
      log(`took over from the primary at ${takeover}; it drains and exits`);
    }).catch((err) => log(`could not stop the primary at ${takeover}: ${err.message}`));
  });

  function stop(reason, code = 0) {
    if (stopping) return;
    stopping = true;
    stopCode = code;
    service.stopping();
    log(`${reason}: stopping ${live.size} worker(s), drain timeout ${cluster.settings.drainTimeout} ms`);
    cluster.disconnect();
    if (live.size === 0) finish(code);
  }

  // The metrics endpoint could not listen (EADDRINUSE...): stop, as for a
  // bad flag; anything else the cluster reports is logged.
  cluster.on('error', (err) => {
    log(err.message);
    if (err.control) stop('--control', 2);
    else if (err.syscall === 'listen') stop(`--metrics ${cluster.settings.metrics}`, 1);
  });
  cluster.on('fork', (worker) => live.set(worker, Date.now()));
  cluster.on('listening', (worker, address) => {
    if (!cluster.settings.waitReady) {
      started = true;
      service.ready(worker);
    }
    const text = addressText(address);
    if (!addresses.has(text)) {
      addresses.add(text);
      log(`listening on ${text}`);
    }
  });
  cluster.on('message', (worker, message) => {
    if (message !== 'ready') return;
    started = true;
    service.ready(worker);
  });
  cluster.on('restart', (worker, info) => {
    const after = info.delay !== undefined ? `, after ${info.delay} ms` : '';
    log(`${describeWorker(worker)} replaces worker ${info.previous.id} (${info.reason}${after})`);
  });
  cluster.on('exit', (worker, code, signal) => {
    const born = live.get(worker);
    live.delete(worker);
    if (worker.exitedAfterDisconnect) {
      if (signal === 'SIGKILL') log(`${describeWorker(worker)} was killed at the end of the drain timeout`);
    } else {
      anyFailed ||= code !== 0;
      if (Date.now() - born >= STABLE_MS) started = true;
      else if (!started) failedStarts++;
      log(`${describeWorker(worker)} ${exitText(code, signal)}${cluster.settings.respawn ? '' : ' (respawn is off)'}`);
      if (!started && failedStarts >= MAX_FAILED_STARTS) {
        stop(`no worker ever started (${failedStarts} failed starts), giving up`, 1);
      }
    }
    if (live.size > 0) return;
    if (stopping) finish(stopCode);
    else if (!cluster.settings.respawn) finish(anyFailed ? 1 : 0);
  });

  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => {
    if (!stopping) return stop('SIGINT');
    log('second SIGINT: killing the workers');
    for (const worker of live.keys()) worker.process.kill('SIGKILL');
    finish(130);
  });
  // SIGUSR2: the same command line, from disk again (a new rs-cluster or
  // Node installed meanwhile), takes over through the control socket; this
  // primary keeps serving until the new one is ready. Without --control it
  // is refused in one line (Node's default would end the process).
  process.on('SIGUSR2', () => {
    const path = cluster.settings.control;
    if (stopping) return;
    if (path === undefined) {
      log('SIGUSR2 asks for a hand-over to a new primary, which needs --control <path>: ignored, still serving');
      return;
    }
    const { options, script, args: scriptArgs } = split(argv);
    const kept = options.filter((o) => !/^--(control|takeover)(=|$)/.test(o));
    const child = spawn(process.execPath, [...process.execArgv, BIN, ...kept, `--takeover=${path}`, /** @type {string} */ (script), ...scriptArgs], {
      stdio: 'inherit',
      detached: true,
      env: { ...process.env, ...require('./systemd').notifyEnv() },
    });
    child.unref();
    log(`SIGUSR2: new primary pid ${child.pid} takes over from ${path}`);
    child.on('exit', (code, signal) => {
      if (!stopping) log(`the new primary (pid ${child.pid}) ${exitText(code, signal)} before taking over: still serving`);
    });
  });
  // SIGHUP, or `rs-cluster reload <path>`, which waits for the outcome.
  function reload(why) {
    if (stopping) return Promise.reject(new Error('the cluster is stopping'));
    const t0 = Date.now();
    log(`${why}: reloading ${Object.keys(cluster.workers).length} worker(s)`);
    service.reloading();
    const done = cluster.reload().then(() => log(`reloaded in ${Date.now() - t0} ms`),
                                       (err) => {
                                         log(`reload failed: ${err.message}`);
                                         throw err;
                                       });
    done.catch(() => {}).finally(() => service.reloaded());
    return done;
  }
  process.on('SIGHUP', () => reload('SIGHUP').catch(() => {}));
  control.actions.reload = () => reload('control: reload');
  control.actions.stop = () => stop('control: stop');

  log(`${path.relative(process.cwd(), exec) || exec}: ${workers} worker(s), primary pid ${process.pid}`);
  for (let i = 0; i < workers; i++) cluster.fork();
}

const CONTROL_COMMANDS = new Set(['status', 'reload', 'stop']);

// `rs-cluster status|reload|stop <path>`: 0 when done, 1 with the reason
// when the primary could not, 2 on a usage error.
async function controlCommand([command, path, ...rest]) {
  if (path === undefined || rest.length > 0) {
    process.stderr.write(`rs-cluster: ${command} takes the control socket's path\nusage: rs-cluster ${command} <path>\n`);
    return 2;
  }
  try {
    const answer = await require('./control').request(path, command);
    if (!answer.ok) throw new Error(answer.error);
    if (command === 'status') process.stdout.write(`${JSON.stringify(answer.stats, null, 2)}\n`);
    return 0;
  } catch (err) {
    process.stderr.write(`rs-cluster: ${command}: ${err.message}\n`);
    return 1;
  }
}

// This command's own file, for the new primary SIGUSR2 starts.
const BIN = path.join(__dirname, '..', 'bin', 'rs-cluster.js');

function main(argv) {
  if (CONTROL_COMMANDS.has(argv[0])) {
    controlCommand(argv).then((code) => { process.exitCode = code; });
    return;
  }
  if (argv[0] === 'top') {
    require('./top').main(argv.slice(1)).then((code) => process.exit(code));
    return;
  }
  let options;
  try {
    options = parseCommandLine(argv);
  } catch (err) {
    if (!(err instanceof UsageError) && err.code !== 'ERR_INVALID_ARG_VALUE') throw err;
    process.stderr.write(`rs-cluster: ${err.message}\n${USAGE}\n`);
    process.exitCode = 2;
    return;
  }
  if (options.help) process.stdout.write(HELP);
  else if (options.version) process.stdout.write(`${require('../package.json').version}\n`);
  else run(options);
}

module.exports = { main, parseCommandLine, USAGE };
