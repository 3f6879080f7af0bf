'use strict';
// The generated napi-rs loader picks the prebuilt binary for this platform.
module.exports = require('../binding.js');
