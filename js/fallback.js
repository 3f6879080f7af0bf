'use strict';
// rs-cluster without its native addon: no prebuilt binary for this platform
// (or it did not install), or RS_CLUSTER_NATIVE=0. The cluster is then
// node:cluster itself; the primary gets the additions that need no Rust
// (js/fallback-primary.js). The primary says so once, with a warning;
// `cluster.native` is false. What needs the Rust primary fails when asked
// for, with ERR_RS_CLUSTER_NATIVE_REQUIRED and the reason.

const { clusterError } = require('./errors');
const { NATIVE_ENV } = require('./env');

// The policies only the Rust primary schedules (its table is the addon's
// `policies()`; __test__/fallback.test.js holds this list to it).
const NATIVE_POLICIES = ['least', 'sticky', 'random'];

let reason = '';

// This platform as napi-rs names its packages: linux-x64-gnu, darwin-arm64 …
function platformName() {
  let abi = '';
  if (process.platform === 'linux') {
    const header = /** @type {{ header?: { glibcVersionRuntime?: string } }} */ (process.report.getReport());
    abi = header.header?.glibcVersionRuntime ? '-gnu' : '-musl';
  } else if (process.platform === 'win32') {
    abi = '-msvc';
  }
  return `${process.platform}-${process.arch}${abi}`;
}

// napi-rs's target triples as platform names: x86_64-unknown-linux-gnu -> linux-x64-gnu.
function shippedPlatforms() {
  const arch = { x86_64: 'x64', aarch64: 'arm64', i686: 'ia32', armv7: 'arm' };
  return require('../package.json').napi.targets.map((/** @type {string} */ triple) => {
    const [cpu, , os, abi] = triple.split('-');
    const name = os === 'darwin' ? 'darwin' : os === 'windows' ? 'win32' : os;
    return `${name}-${arch[cpu] ?? cpu}${abi === undefined ? '' : `-${abi}`}`;
  });
}

/** @param {{ switch?: boolean, error?: Error }} why */
function describe(why) {
  if (why.switch) return `${NATIVE_ENV}=${process.env[NATIVE_ENV]} is set`;
  const platform = platformName();
  const name = require('../package.json').name;
  if (!shippedPlatforms().includes(platform)) return `${name} ships no native binary for ${platform}`;
  const first = `${why.error?.message ?? why.error}`.split('\n')[0];
  return `the native binary for ${platform} did not load (the package ${name}-${platform} is missing or broken: ${first})`;
}

/** @param {string} what */
function nativeRequired(what) {
  return clusterError('ERR_RS_CLUSTER_NATIVE_REQUIRED',
                      `${what} needs rs-cluster's native primary, which this process runs without: ${reason}`);
}

/**
 * node:cluster, with rs-cluster's additions in the primary.
 * @param {{ worker?: boolean, switch?: boolean, error?: Error }} why
 */
function cluster(why) {
  const builtin = require('./builtin');
  Object.defineProperty(builtin, 'native', { value: false, enumerable: false, configurable: true });
  if (why.worker || !builtin.isPrimary) return builtin;
  reason = describe(why);
  // Once per process tree: its workers are node:cluster's, which say nothing.
  process.emitWarning(`rs-cluster runs as node:cluster: ${reason}`, { code: 'RS_CLUSTER_FALLBACK' });
  return require('./fallback-primary').extend(builtin);
}

module.exports = { cluster, nativeRequired, NATIVE_POLICIES };
