'use strict';
// The system's Chromium (Debian's `chromium` package), headless, for the
// status page's browser test and the bench's page-open side. Driven by
// playwright-core, which never downloads a browser. The flags keep a browser
// on a machine with no internet from trying to reach Google; playwright
// gives each launch a fresh temporary profile and removes it on close.

const fs = require('node:fs');

const CHROMIUM = process.env.RS_CLUSTER_CHROMIUM || '/usr/bin/chromium';
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

// Why the browser cannot run here, or null.
function missing() {
  if (!fs.existsSync(CHROMIUM)) return `no Chromium at ${CHROMIUM} (apt-get install chromium)`;
  try {
    require.resolve('playwright-core');
  } catch {
    return 'playwright-core is not installed (npm install)';
  }
  return null;
}

/** @returns {Promise<import('playwright-core').Browser>} */
function launch() {
  return require('playwright-core').chromium.launch({ executablePath: CHROMIUM, args: FLAGS, headless: true });
}

module.exports = { CHROMIUM, missing, launch };
