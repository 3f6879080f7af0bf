'use strict';
// js/settings.js' TUNING table: the rules tying its values hold (checked as
// the file loads), and the check does catch an edit that breaks one.

const test = require('node:test');
const assert = require('node:assert');
const { TUNING, checkTuning } = require('../js/settings');

test('the tuning table keeps its rules, and a broken rule is named', () => {
  assert.doesNotThrow(() => checkTuning(TUNING));
  assert.throws(() => checkTuning({ ...TUNING, DRAIN_IDLE_GRACE_MS: TUNING.DRAIN_TIMEOUT_MS }),
                /DRAIN_IDLE_GRACE_MS < DRAIN_TIMEOUT_MS/);
  assert.throws(() => checkTuning({ ...TUNING, BACKOFF_BASE_MS: TUNING.BACKOFF_MAX_MS + 1 }),
                /BACKOFF_BASE_MS <= BACKOFF_MAX_MS/);
  assert.throws(() => checkTuning({ ...TUNING, HANG_POLL_MIN_MS: TUNING.HANG_POLL_MAX_MS + 1 }),
                /HANG_POLL_MIN_MS <= HANG_POLL_MAX_MS/);
  assert.throws(() => checkTuning({ ...TUNING, STABLE_MS: 2 ** 31 }), /at most 2\^31 - 1 ms/);
  assert.throws(() => checkTuning({ ...TUNING, MAX_WORKERS: 1.5 }), /positive integer/);
  assert.ok(Object.isFrozen(TUNING));
});
