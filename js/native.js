'use strict';
// The addon. The primary finds it through the generated napi-rs loader, which
// picks the prebuilt binary for this platform; it then passes the file it
// got to its workers (ADDON_ENV), which load that file directly: every
// worker start skips the loader's platform lookup.

const { ADDON_ENV } = require('./env');

function viaLoader() {
  const binding = require('../binding.js');
  // The loader returns the .node module's own exports: find which file that was.
  let file = null;
  for (const key of Object.keys(require.cache)) {
    if (key.endsWith('.node') && require.cache[key].exports === binding) {
      file = key;
      break;
    }
  }
  return { binding, file };
}

// Typed by the generated binding.d.ts, whichever file is loaded.
/** @returns {{ binding: typeof import('../binding.js'), file: string | null }} */
function load() {
  const inherited = process.env[ADDON_ENV];
  if (inherited !== undefined && inherited !== '') {
    try {
      return { binding: require(inherited), file: inherited };
    } catch {
      // Moved or replaced since the primary loaded it: ask the loader.
    }
  }
  return viaLoader();
}

const { binding, file } = load();
// With where the addon came from, or null if the loader hid it; for ADDON_ENV.
module.exports = Object.assign(binding, { addonFile: file });
