'use strict';
// Command-line flags of the bench and the scripts, read by util.parseArgs.
// -h/--help prints the help and exits 0; an unknown flag, a missing or bad
// value prints one line and the usage line, and exits 2.

const { parseArgs } = require('node:util');

// `options` as util.parseArgs takes them. Returns the values, `fail(msg)`,
// which reports a bad value the same way, and `number(key, { def, min,
// whole })`, a numeric flag (a string option): `def` when absent, else a
// number >= `min` (default 1), whole unless `whole` is false.
function parseCli({ name, usage, help, options, args = process.argv.slice(2) }) {
  const fail = (msg) => {
    console.error(`${name}: ${msg}`);
    console.error(usage);
    process.exit(2);
  };
  let values;
  try {
    ({ values } = parseArgs({ args, options: { ...options, help: { type: 'boolean', short: 'h' } } }));
  } catch (err) {
    if (typeof err.code !== 'string' || !err.code.startsWith('ERR_PARSE_ARGS_')) throw err;
    fail(err.message);
  }
  if (values.help) {
    console.log(help);
    process.exit(0);
  }
  const number = (key, { def, min = 1, whole = true } = {}) => {
    const raw = values[key];
    if (raw === undefined) return def;
    const n = Number(raw);
    if (raw.trim() === '' || !(n >= min) || (whole && !Number.isInteger(n))) {
      fail(`--${key} takes a ${whole ? 'whole ' : ''}number >= ${min}, not '${raw}'`);
    }
    return n;
  };
  return { values, fail, number };
}

module.exports = { parseCli };
