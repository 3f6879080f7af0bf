'use strict';
// The supervisor's settings beside node:cluster's own: what each one is,
// how it is checked, and the environment variable that sets it. The API
// (setupPrimary, reload), the environment and the command all check through
// here, so a bad value fails the same way, at the moment it is given.

const { isIPv6 } = require('node:net');
const { invalidArgType, invalidValue, outOfRange } = require('./errors');

// setTimeout's limit; also ample as megabytes.
const MAX = 2 ** 31 - 1;

const SETTINGS = {
  respawn: { type: 'boolean', env: 'RS_CLUSTER_RESPAWN' },
  waitReady: { type: 'boolean', env: 'RS_CLUSTER_WAIT_READY' },
  drainTimeout: { type: 'ms', env: 'RS_CLUSTER_DRAIN_TIMEOUT' },
  hangTimeout: { type: 'ms', env: 'RS_CLUSTER_HANG_TIMEOUT' },
  maxMemory: { type: 'MB', env: 'RS_CLUSTER_MAX_MEMORY' },
  sticky: { type: 'stickyKey', env: 'RS_CLUSTER_STICKY_KEY' },
  // The metrics endpoint (js/metrics-server.js): '[host:]port' or a port number.
  metrics: { type: 'address', env: 'RS_CLUSTER_METRICS' },
};

const EXPECTED = {
  boolean: '1, 0, true or false',
  ms: `a whole number of milliseconds from 0 to ${MAX}`,
  MB: `a whole number of megabytes from 0 (off) to ${MAX}`,
  stickyKey: "'ip', 'header:NAME', 'cookie:NAME' or 'query:NAME'",
  address: '[host:]port with a port from 1 to 65535 (an IPv6 host in brackets)',
};

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
  } else if (type === 'address') {
    if (parseAddress(text) !== null) return text;
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

module.exports = { SETTINGS, validate, validateValue, parseText, fromEnv, parseAddress };
