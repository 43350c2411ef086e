'use strict'

const os = require('os')
const path = require('path')

module.exports = (appInfo) => {
  // Logs and run files outside the source tree (set EGG_LOG_DIR to keep them elsewhere).
  const varDir = process.env.EGG_LOG_DIR || path.join(os.tmpdir(), 'ssekify-egg-example')
  return {
    keys: process.env.EGG_KEYS || `${appInfo.name}_example_only_key`,
    rundir: path.join(varDir, 'run'),
    logger: { dir: path.join(varDir, 'logs'), consoleLevel: 'WARN' },
    // The example's POST routes take JSON from any client; configure CSRF for a real app.
    security: { csrf: { enable: false } }
  }
}
