'use strict'
// In your own Egg app this file is just `module.exports = require('ssekify')`.
// This example lives inside the ssekify repository under its own package.json (Egg
// needs one), which hides the repository's self-reference; so resolve the package from
// the repository root instead.
const path = require('path')
const { createRequire } = require('module')

module.exports = createRequire(path.join(__dirname, '..', '..', '..', 'package.json'))('ssekify')
