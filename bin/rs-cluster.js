#!/usr/bin/env node
'use strict';
// `npx rs-cluster [options] <script>`: see js/cli.js.
require('../js/cli.js').main(process.argv.slice(2));
