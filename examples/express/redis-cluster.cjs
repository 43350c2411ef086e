'use strict'
/**
 * ssekify on a Redis Cluster: give createIORedisAdapter an ioredis `Cluster`; it opens
 * its own publisher / subscriber / KV connections from it (and never closes yours).
 * Run two instances on the same cluster: a publish on one reaches the other's clients.
 *
 *   REDIS_CLUSTER_NODES=127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002 npm run dev:cluster
 *
 * Env: REDIS_CLUSTER_NODES (host:port,...; required), REDIS_PASSWORD (optional),
 * SSE_CHANNEL (ssekify:bus:cluster), PORT (3002).
 * Requests to try: examples/express/redis-ha.api.http
 */
const express = require('express')
const { Cluster } = require('ioredis')
const { SSEKify, createIORedisAdapter } = require('ssekify')

const PORT = Number(process.env.PORT || 3002)
const HOST = process.env.HOST

const nodes = (process.env.REDIS_CLUSTER_NODES || '')
  .split(',')
  .map((s) => s.trim())
  .filter(Boolean)
  .map((pair) => {
    const i = pair.lastIndexOf(':')
    return { host: pair.slice(0, i), port: Number(pair.slice(i + 1)) }
  })
if (nodes.length === 0) {
  console.error('redis-cluster needs REDIS_CLUSTER_NODES=host:port,host:port,...')
  process.exit(1)
}

const cluster = new Cluster(nodes, {
  redisOptions: process.env.REDIS_PASSWORD ? { password: process.env.REDIS_PASSWORD } : {}
})
cluster.on('error', (err) => console.error('[cluster]', err.message))

const sse = new SSEKify({
  redis: createIORedisAdapter(cluster),
  channel: process.env.SSE_CHANNEL || 'ssekify:bus:cluster',
  keepAliveMs: Number(process.env.SSE_KEEPALIVE_MS || 15000),
  retryMs: 2000
})
sse.on('error', (err) => console.error('[ssekify]', err.message))

const app = express()
app.use(express.json())

app.get('/sse', (req, res) => {
  sse.registerConnection(String(req.query.userId || 'guest'), res, { rooms: ['global'] })
})
// local only: reaches the user's connections on this instance
app.post('/notify/:userId', (req, res) => {
  res.json({ delivered: sse.sendToUser(req.params.userId, req.body ?? {}, { event: 'notify' }) })
})
// through the cluster: every instance
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
  console.log(`ssekify redis-cluster listening on http://${HOST || 'localhost'}:${PORT} (${nodes.length} seed nodes)`)
})

process.once('SIGTERM', async () => {
  await sse.shutdown({ graceMs: Number(process.env.SHUTDOWN_GRACE_MS || 5000) }) // closes the adapter's connections
  await cluster.quit() // ours
  server.close()
  server.closeIdleConnections()
})
