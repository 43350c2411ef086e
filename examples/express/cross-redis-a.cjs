'use strict'
/**
 * Cross-server push through Redis, server A (the entry: holds the browsers' SSE
 * connections). A hands a job to B over HTTP; B publishes the result to the user with
 * `sse.publish(data, userId)`; Redis carries it to A, which holds alice's connection.
 *
 *   REDIS_URL=redis://127.0.0.1:6379 npm run dev:cross:redis:b   # B on 4004
 *   REDIS_URL=redis://127.0.0.1:6379 npm run dev:cross:redis:a   # A on 3004
 *
 * Env: REDIS_URL (required), SSE_CHANNEL (the same on A and B; default ssekify:bus),
 * PORT (3004), B_URL (http://localhost:4004).
 * Requests to try: examples/express/cross-redis.api.http
 */
const crypto = require('crypto')
const express = require('express')
const { SSEKify, createIORedisAdapter } = require('ssekify')

const PORT = Number(process.env.PORT || 3004)
const HOST = process.env.HOST
const B_URL = process.env.B_URL || 'http://localhost:4004'
if (!process.env.REDIS_URL) {
  console.error('cross-redis-a needs REDIS_URL (e.g. redis://127.0.0.1:6379)')
  process.exit(1)
}

const sse = new SSEKify({
  redis: createIORedisAdapter(process.env.REDIS_URL),
  channel: process.env.SSE_CHANNEL || 'ssekify:bus',
  keepAliveMs: Number(process.env.SSE_KEEPALIVE_MS || 15000),
  retryMs: 2000
})
sse.on('error', (err) => console.error('[ssekify]', err.message))

const app = express()
app.use(express.json())

app.get('/sse', (req, res) => {
  sse.registerConnection(String(req.query.userId || 'guest'), res, { rooms: ['global'] })
})

app.post('/start', async (req, res) => {
  const { userId = 'guest', payload = {} } = req.body ?? {}
  const cid = `cid_${crypto.randomUUID()}`
  const answer = await fetch(`${B_URL}/process`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ userId, cid, payload })
  })
  if (!answer.ok) return res.status(502).json({ error: `B answered ${answer.status}` })
  res.json({ accepted: true, cid })
})

app.get('/stats', (_req, res) => {
  res.json(sse.stats())
})

app.get('/', (_req, res) => {
  res.type('html').send(`<!doctype html><meta charset="utf-8"><title>ssekify · Redis, server A</title>
<h1>Cross-server via Redis: server A</h1>
<p><button onclick="start()">start a job for alice (A → B → Redis → A → alice)</button></p>
<pre id="log"></pre>
<script>
  const es = new EventSource('/sse?userId=alice')
  es.addEventListener('job:done', (e) => { document.getElementById('log').textContent += 'job:done ' + e.data + '\\n' })
  const start = () => fetch('/start', { method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ userId: 'alice', payload: { at: Date.now() } }) })
</script>`)
})

app.use((err, _req, res, _next) => {
  console.error('[express]', err.message)
  res.status(err.status || 502).json({ error: err.message })
})

const server = app.listen(PORT, HOST, () => {
  console.log(`ssekify cross-redis A listening on http://${HOST || 'localhost'}:${PORT} (B at ${B_URL})`)
})

process.once('SIGTERM', async () => {
  await sse.shutdown({ graceMs: Number(process.env.SHUTDOWN_GRACE_MS || 5000) }) // also closes Redis
  server.close()
  server.closeIdleConnections()
})
