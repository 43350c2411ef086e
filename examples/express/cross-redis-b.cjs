'use strict'
/**
 * Cross-server push through Redis, server B (the worker: holds no SSE connection).
 * It must use `publish(data, userId)`, not `sendToUser`: sendToUser only reaches
 * connections on this instance, and B has none.
 *
 *   REDIS_URL=redis://127.0.0.1:6379 npm run dev:cross:redis:b   # B on 4004
 *
 * Env: REDIS_URL (required), SSE_CHANNEL (as on A), PORT (4004), PROCESS_DELAY_MS (300).
 */
const express = require('express')
const { SSEKify, createIORedisAdapter } = require('ssekify')

const PORT = Number(process.env.PORT || 4004)
const HOST = process.env.HOST
const PROCESS_DELAY_MS = Number(process.env.PROCESS_DELAY_MS || 300)
if (!process.env.REDIS_URL) {
  console.error('cross-redis-b needs REDIS_URL (e.g. redis://127.0.0.1:6379)')
  process.exit(1)
}

const sse = new SSEKify({
  redis: createIORedisAdapter(process.env.REDIS_URL),
  channel: process.env.SSE_CHANNEL || 'ssekify:bus'
})
sse.on('error', (err) => console.error('[ssekify]', err.message))

const app = express()
app.use(express.json())

app.post('/process', (req, res) => {
  const { userId = 'guest', cid = 'cid', payload = {} } = req.body ?? {}
  res.json({ processing: true, cid })
  setTimeout(() => {
    const result = { cid, ok: true, echo: payload, at: Date.now() }
    sse.publish(result, String(userId), { event: 'job:done' }).then(
      () => console.log(`[B] ${cid}: published to ${userId}`),
      (err) => console.error(`[B] ${cid}: publish failed: ${err.message}`)
    )
  }, PROCESS_DELAY_MS)
})

app.get('/stats', (_req, res) => {
  res.json(sse.stats())
})

const server = app.listen(PORT, HOST, () => {
  console.log(`ssekify cross-redis B listening on http://${HOST || 'localhost'}:${PORT}`)
})

process.once('SIGTERM', async () => {
  await sse.shutdown({ graceMs: 0 })
  server.close()
  server.closeIdleConnections()
})
