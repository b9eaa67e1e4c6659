// The `require` entry: the package is an ES module. Node 20.19+ and 22.12+
// load it through require() (no top-level await on the Node path); older
// versions cannot, and get this message instead of ERR_REQUIRE_ESM.
'use strict';
try {
  module.exports = require('./node.js');
} catch (e) {
  if (e && e.code === 'ERR_REQUIRE_ESM') {
    throw new Error(
      '@paywall-auth/wasm is an ES module: use `import { AuthClient } from "@paywall-auth/wasm"` ' +
        '(or `await import(...)`), or Node 20.19+ / 22.12+, where require() loads ES modules.',
      { cause: e },
    );
  }
  throw e;
}
