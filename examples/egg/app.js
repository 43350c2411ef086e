'use strict'
// Boot hook: one SSEKify per worker, on `app.sse`; shut down gracefully with the app.
const { SSEKify, createIORedisAdapter } = require('./lib/ssekify')

class AppBootHook {
  constructor(app) {
    this.app = app
  }

  configWillLoad() {
    const app = this.app
    app.sse = new SSEKify({
      redis: process.env.REDIS_URL ? createIORedisAdapter(process.env.REDIS_URL) : undefined,
      channel: process.env.SSE_CHANNEL || 'ssekify:bus',
      keepAliveMs: Number(process.env.SSE_KEEPALIVE_MS || 15000),
      retryMs: Number(process.env.SSE_RETRY_MS || 2000)
    })
    app.sse.on('error', (err) => app.logger.warn('[ssekify] %s', err.message))
  }

  async beforeClose() {
    await this.app.sse.shutdown({ graceMs: Number(process.env.SHUTDOWN_GRACE_MS || 5000) })
  }
}

module.exports = AppBootHook
