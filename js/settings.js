'use strict';
// The supervisor's settings beside node:cluster's own: what each one is,
// how it is checked, and the environment variable that sets it. The API
// (setupPrimary, reload), the environment and the command all check through
// here, so a bad value fails the same way, at the moment it is given.

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
};

const EXPECTED = {
  boolean: '1, 0, true or false',
  ms: `a whole number of milliseconds from 0 to ${MAX}`,
  MB: `a whole number of megabytes from 0 (off) to ${MAX}`,
  stickyKey: "'ip', 'header:NAME', 'cookie:NAME' or 'query:NAME'",
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

module.exports = { SETTINGS, validate, validateValue, parseText, fromEnv };
