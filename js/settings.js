'use strict';
// The JavaScript side's defaults and tuning values, and the supervisor's
// settings beside node:cluster's own: what each one is, how it is checked,
// and the environment variable that sets it. The API (setupPrimary, reload),
// the environment and the command all check through here, so a bad value
// fails the same way, at the moment it is given.

const { isIPv6 } = require('node:net');
const { invalidArgType, invalidValue, outOfRange } = require('./errors');

// setTimeout's limit; also ample as megabytes.
const MAX = 2 ** 31 - 1;

// Every default and tuning value of js/, defined here only. (The Rust side's,
// such as the round-robin window, are in crates/core.)
const TUNING = Object.freeze({
  // reload()'s drain timeout when settings.drainTimeout is unset, and the
  // command's default: time for slow requests (uploads, long polls) to end.
  DRAIN_TIMEOUT_MS: 30000,
  // reload(): how long a successor may take to listen (or say 'ready')
  // before the reload fails and the old worker keeps serving.
  READY_TIMEOUT_MS: 30000,
  // Crash-loop backoff: the first respawn waits the base, each next one
  // twice as long up to the max, one fork at a time, so a script that throws
  // at start costs at most 6 respawns in 30 s.
  BACKOFF_BASE_MS: 250,
  BACKOFF_MAX_MS: 16000,
  // A worker that stayed up this long was no crash loop: its death resets
  // the backoff, a hung one is replaced at once, the command counts it as
  // started.
  STABLE_MS: 10000,
  // maxMemory: how often the workers' RSS is read (/proc, or one `ps`).
  MEMORY_SAMPLE_MS: 1000,
  // hangTimeout: lags are read every timeout / DIVISOR, so a hang is seen
  // soon after it passes, within bounds that keep the primary idle.
  HANG_POLL_DIVISOR: 8,
  HANG_POLL_MIN_MS: 50,
  HANG_POLL_MAX_MS: 1000,
  // A draining HTTP server closes idle keep-alive connections after this
  // grace, not at once: a request already on its way on one is answered
  // (js/drain.js).
  DRAIN_IDLE_GRACE_MS: 1000,
  // The command: the most workers -w takes; more is refused (a typo), not forked.
  MAX_WORKERS: 1024,
  // The command: worker starts that may fail, while none ever got ready,
  // before it gives up.
  MAX_FAILED_STARTS: 8,
});

// The rules tying the values, checked once when this file loads: a wrong
// edit fails every start and every test at once, with this message.
function checkTuning(t) {
  const rules = [
    // Every time is a valid setTimeout delay and 'ms' setting.
    [Object.entries(t).every(([k, v]) => Number.isInteger(v) && v > 0 && (!k.endsWith('_MS') || v <= MAX)),
     'every value is a positive integer, and a time at most 2^31 - 1 ms'],
    [t.BACKOFF_BASE_MS <= t.BACKOFF_MAX_MS, 'BACKOFF_BASE_MS <= BACKOFF_MAX_MS'],
    [t.HANG_POLL_MIN_MS <= t.HANG_POLL_MAX_MS, 'HANG_POLL_MIN_MS <= HANG_POLL_MAX_MS'],
    // Else every default drain would end with the worker killed.
    [t.DRAIN_IDLE_GRACE_MS < t.DRAIN_TIMEOUT_MS, 'DRAIN_IDLE_GRACE_MS < DRAIN_TIMEOUT_MS'],
  ];
  for (const [holds, rule] of rules) {
    if (!holds) throw new Error(`rs-cluster: js/settings.js TUNING breaks the rule ${rule}`);
  }
}
checkTuning(TUNING);

const SETTINGS = {
  respawn: { type: 'boolean', env: 'RS_CLUSTER_RESPAWN' },
  waitReady: { type: 'boolean', env: 'RS_CLUSTER_WAIT_READY' },
  drainTimeout: { type: 'ms', env: 'RS_CLUSTER_DRAIN_TIMEOUT' },
  hangTimeout: { type: 'ms', env: 'RS_CLUSTER_HANG_TIMEOUT' },
  maxMemory: { type: 'MB', env: 'RS_CLUSTER_MAX_MEMORY' },
  sticky: { type: 'stickyKey', env: 'RS_CLUSTER_STICKY_KEY' },
  // Who places connections where the policy lets the kernel decide.
  placement: { type: 'placement', env: 'RS_CLUSTER_PLACEMENT' },
  // The control socket (js/control.js): a unix socket path.
  control: { type: 'path', env: 'RS_CLUSTER_CONTROL' },
  // The metrics endpoint (js/metrics-server.js): '[host:]port' or a port number.
  metrics: { type: 'address', env: 'RS_CLUSTER_METRICS' },
  // What the endpoint's data paths ask in `Authorization: Bearer <token>`.
  metricsToken: { type: 'token', env: 'RS_CLUSTER_METRICS_TOKEN' },
};

const EXPECTED = {
  boolean: '1, 0, true or false',
  ms: `a whole number of milliseconds from 0 to ${MAX}`,
  MB: `a whole number of megabytes from 0 (off) to ${MAX}`,
  stickyKey: "'ip', 'header:NAME', 'cookie:NAME' or 'query:NAME'",
  placement: "'kernel' or 'primary'",
  path: 'a path for a unix socket',
  address: '[host:]port with a port from 1 to 65535 (an IPv6 host in brackets)',
  token: '1 to 1024 visible ASCII characters (no spaces), as a Bearer token is sent',
};

// What a header carries as one Bearer token.
const TOKEN = /^[\x21-\x7e]{1,1024}$/;

// A bad token is a secret all the same: the error does not show it.
function badToken(what, text) {
  return invalidValue(what, EXPECTED.token, `<${text.length} characters>`);
}

// The Rust primary parses sticky keys; ask it rather than parse twice.
function validStickyKey(text) {
  try {
    require('./native').checkStickyKey(text);
    return true;
  } catch {
    return false;
  }
}

// '[host:]port' as { host, port }, or null if it is not one. The host
// defaults to 127.0.0.1: metrics are not for the world unless asked.
function parseAddress(text) {
  const m = /^(?:(?:\[([^\]]+)\]|([A-Za-z0-9.-]+)):)?([0-9]{1,5})$/.exec(text);
  if (m === null || (m[1] !== undefined && !isIPv6(m[1]))) return null;
  const port = Number(m[3]);
  if (port < 1 || port > 65535) return null;
  return { host: m[1] ?? m[2] ?? '127.0.0.1', port };
}

// `name` as Node names it in errors: "options.drainTimeout".
function validateValue(name, type, value) {
  if (type === 'boolean') {
    if (typeof value !== 'boolean') throw invalidArgType(name, 'boolean', value);
    return;
  }
  if (type === 'stickyKey') {
    if (typeof value !== 'string') throw invalidArgType(name, 'string', value);
    if (!validStickyKey(value)) throw invalidValue(name, EXPECTED.stickyKey, value);
    return;
  }
  if (type === 'path') {
    if (typeof value !== 'string') throw invalidArgType(name, 'string', value);
    if (value === '' || value.includes('\0')) throw invalidValue(name, EXPECTED.path, value);
    return;
  }
  if (type === 'token') {
    if (typeof value !== 'string') throw invalidArgType(name, 'string', value);
    if (!TOKEN.test(value)) throw badToken(name, value);
    return;
  }
  if (type === 'placement') {
    if (typeof value !== 'string') throw invalidArgType(name, 'string', value);
    if (value !== 'kernel' && value !== 'primary') throw invalidValue(name, EXPECTED.placement, value);
    return;
  }
  if (type === 'address') {
    if (typeof value === 'number') {
      if (!Number.isInteger(value) || value < 1 || value > 65535) throw outOfRange(name, '>= 1 && <= 65535', value);
    } else if (typeof value !== 'string') {
      throw invalidArgType(name, 'string or number', value);
    } else if (parseAddress(value) === null) {
      throw invalidValue(`The property '${name}'`, EXPECTED.address, value);
    }
    return;
  }
  if (typeof value !== 'number') throw invalidArgType(name, 'number', value);
  if (!Number.isInteger(value)) throw outOfRange(name, 'an integer', value);
  if (value < 0 || value > MAX) throw outOfRange(name, `>= 0 && <= ${MAX}`, value);
}

// Checks the supervisor's keys of a setupPrimary() options object; the
// others are node:cluster's, which it does not check either. Undefined unsets.
function validate(options) {
  for (const [key, { type }] of Object.entries(SETTINGS)) {
    if (options[key] !== undefined) validateValue(`options.${key}`, type, options[key]);
  }
}

// A setting given as text (environment variable or command flag); `what`
// names it in the error.
function parseText(key, text, what) {
  const { type } = SETTINGS[key];
  if (type === 'boolean') {
    if (text === '1' || text === 'true') return true;
    if (text === '0' || text === 'false') return false;
  } else if (type === 'stickyKey') {
    if (validStickyKey(text)) return text;
  } else if (type === 'placement') {
    if (text === 'kernel' || text === 'primary') return text;
  } else if (type === 'path') {
    if (!text.includes('\0')) return text;
  } else if (type === 'address') {
    if (parseAddress(text) !== null) return text;
  } else if (type === 'token') {
    if (TOKEN.test(text)) return text;
    throw badToken(what, text);
  } else if (/^\d{1,10}$/.test(text) && Number(text) <= MAX) {
    return Number(text);
  }
  throw invalidValue(what, EXPECTED[type], text);
}

// The settings the environment sets; {} when it sets none (empty = unset).
function fromEnv(env = process.env) {
  const out = {};
  for (const [key, { env: name }] of Object.entries(SETTINGS)) {
    const text = env[name];
    if (text !== undefined && text !== '') out[key] = parseText(key, text, `The environment variable ${name}`);
  }
  return out;
}

module.exports = { TUNING, checkTuning, SETTINGS, validate, validateValue, parseText, fromEnv, parseAddress };
