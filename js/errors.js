'use strict';
// Node's error shapes for the argument errors cluster itself raises: same
// class, `code`, message and `name [code]` stack header as node:internal/errors.

const { inspect } = require('node:util');

function describe(value) {
  if (value == null) return `${value}`;
  if (typeof value === 'function') return `function ${value.name}`;
  if (typeof value === 'object') {
    if (value.constructor && value.constructor.name) return `an instance of ${value.constructor.name}`;
    return inspect(value, { depth: -1 });
  }
  let shown = inspect(value, { colors: false });
  if (shown.length > 28) shown = `${shown.slice(0, 25)}...`;
  return `type ${typeof value} (${shown})`;
}

function makeNodeError(Base, code, message) {
  const err = new Base(message);
  // The stack string is built on first access, from the name at that moment:
  // reading it with `Name [CODE]` in place gives Node's header.
  err.name = `${Base.name} [${code}]`;
  void err.stack;
  delete err.name;
  err.code = code;
  return err;
}

function badPort(name, port, allowZero = true) {
  const op = allowZero ? '>=' : '>';
  return makeNodeError(RangeError, 'ERR_SOCKET_BAD_PORT',
                       `${name} should be ${op} 0 and < 65536. Received ${describe(port)}.`);
}

function validatePort(port, name = 'Port', allowZero = true) {
  if ((typeof port !== 'number' && typeof port !== 'string') ||
      (typeof port === 'string' && port.trim().length === 0) ||
      +port !== (+port >>> 0) ||
      +port > 0xFFFF ||
      (port === 0 && !allowZero)) {
    throw badPort(name, port, allowZero);
  }
  return +port | 0;
}

// `options.x` names a property, anything else an argument, as in Node.
function subject(name) {
  return name.includes('.') ? 'property' : 'argument';
}

function invalidArgType(name, expected, value) {
  return makeNodeError(TypeError, 'ERR_INVALID_ARG_TYPE',
                       `The "${name}" ${subject(name)} must be of type ${expected}. Received ${describe(value)}`);
}

// `what` is a sentence's subject: "The environment variable X", "--flag".
function invalidValue(what, expected, value) {
  let shown = inspect(value);
  if (shown.length > 128) shown = `${shown.slice(0, 128)}...`;
  return makeNodeError(TypeError, 'ERR_INVALID_ARG_VALUE', `${what} must be ${expected}. Received ${shown}`);
}

function outOfRange(name, range, value) {
  return makeNodeError(RangeError, 'ERR_OUT_OF_RANGE',
                       `The value of "${name}" is out of range. It must be ${range}. Received ${inspect(value)}`);
}

// An rs-cluster failure that is not an argument error (e.g. a failed reload).
function clusterError(code, message, props) {
  return Object.assign(makeNodeError(Error, code, message), props);
}

// What Node's internal `assert` throws.
function internalAssertion(message) {
  return makeNodeError(Error, 'ERR_INTERNAL_ASSERTION', `${message}\n` +
    'This is caused by either a bug in Node.js or incorrect usage of Node.js internals.\n' +
    'Please open an issue with this stack trace at https://github.com/nodejs/node/issues\n');
}

module.exports = {
  badPort, validatePort, internalAssertion, invalidArgType, invalidValue, outOfRange, clusterError,
};
