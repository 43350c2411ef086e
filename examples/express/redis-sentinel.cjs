'use strict'
/**
 * ssekify behind Redis Sentinel: createIORedisAdapter takes ioredis options with
 * `sentinels` and the master `name`; its connections follow the master on failover.
 * Run two instances on the same set: a publish on one reaches the other's clients.
 *
 *   REDIS_SENTINELS=127.0.0.1:26379,127.0.0.1:26380 REDIS_SENTINEL_MASTER=mymaster npm run dev:sentinel
 *
 * Env: REDIS_SENTINELS (host:port,...; required), REDIS_SENTINEL_MASTER (mymaster),
 * REDIS_PASSWORD (optional, the master's), SSE_CHANNEL (ssekify:bus:sentinel), PORT (3003).
 * Requests to try: examples/express/redis-ha.api.http
 */
const express = require('express')
const { SSEKify, createIORedisAdapter } = require('ssekify')

const PORT = Number(process.env.PORT || 3003)
const HOST = process.env.HOST

const sentinels = (process.env.REDIS_SENTINELS || '')
  .split(',')
  .map((s) => s.trim())
  .filter(Boolean)
  .map((pair) => {
    const i = pair.lastIndexOf(':')
    return { host: pair.slice(0, i), port: Number(pair.slice(i + 1)) }
  })
if (sentinels.length === 0) {
  console.error('redis-sentinel needs REDIS_SENTINELS=host:port,host:port,...')
  process.exit(1)
}

const sse = new SSEKify({
  redis: createIORedisAdapter({
    sentinels,
    name: process.env.REDIS_SENTINEL_MASTER || 'mymaster',
    ...(process.env.REDIS_PASSWORD ? { password: process.env.REDIS_PASSWORD } : {})
  }),
  channel: process.env.SSE_CHANNEL || 'ssekify:bus:sentinel',
  keepAliveMs: Number(process.env.SSE_KEEPALIVE_MS || 15000),
  retryMs: 2000
})
sse.on('error', (err) => console.error('[ssekify]', err.message))

const app = express()
app.use(express.json())

app.get('/sse', (req, res) => {
  sse.registerConnection(String(req.query.userId || 'guest'), res, { rooms: ['global'] })
})
app.post('/notify/:userId', (req, res) => {
  res.json({ delivered: sse.sendToUser(req.params.userId, req.body ?? {}, { event: 'notify' }) })
})
app.post('/publish/:userId', async (req, res) => {
  await sse.publish(req.body ?? {}, req.params.userId, { event: 'notify' })
  res.json({ ok: true })
})
app.post('/broadcast', async (req, res) => {
  await sse.publish(req.body ?? {}, undefined, { event: 'broadcast' })
  res.json({ ok: true })
})
app.post('/publish-room/:room', async (req, res) => {
  await sse.publishToRoom(req.params.room, req.body ?? {}, { event: 'room' })
  res.json({ ok: true })
})
app.get('/stats', (_req, res) => {
  res.json(sse.stats())
})

app.use((err, _req, res, _next) => {
  console.error('[express]', err.message)
  res.status(err.status || 503).json({ error: err.message })
})

const server = app.listen(PORT, HOST, () => {
  console.log(`ssekify redis-sentinel listening on http://${HOST || 'localhost'}:${PORT} (${sentinels.length} sentinels)`)
})

process.once('SIGTERM', async () => {
  await sse.shutdown({ graceMs: Number(process.env.SHUTDOWN_GRACE_MS || 5000) })
  server.close()
  server.closeIdleConnections()
})
