'use strict'
/**
 * Fastify 5. `reply.raw` is Node's ServerResponse: hand it to registerConnection and
 * call `reply.hijack()` so Fastify neither sends a reply nor ends the response.
 *
 *   npm run dev:fastify      PORT=3020 by default
 *
 * Requests to try: examples/fastify/api.http
 */
const Fastify = require('fastify')
const { SSEKify, createIORedisAdapter } = require('ssekify')

const PORT = Number(process.env.PORT || 3020)
const HOST = process.env.HOST || '0.0.0.0'

const sse = new SSEKify({
  redis: process.env.REDIS_URL ? createIORedisAdapter(process.env.REDIS_URL) : undefined,
  channel: process.env.SSE_CHANNEL || 'ssekify:bus',
  keepAliveMs: Number(process.env.SSE_KEEPALIVE_MS || 15000),
  retryMs: Number(process.env.SSE_RETRY_MS || 2000)
})
sse.on('error', (err) => console.error('[ssekify]', err.message))

const app = Fastify()

app.get('/sse', async (request, reply) => {
  const userId = String(request.query.userId || 'guest')
  // Take the response away from Fastify first, then let the library write to it.
  reply.hijack()
  sse.registerConnection(userId, reply.raw, { rooms: ['global'] })
})

app.post('/notify/:userId', async (request) => {
  return { delivered: sse.sendToUser(request.params.userId, request.body ?? {}, { event: 'notify' }) }
})

app.post('/broadcast', async (request) => {
  await sse.publish(request.body ?? {}, undefined, { event: 'broadcast' })
  return { ok: true }
})

app.post('/room/:room', async (request) => {
  return { delivered: sse.sendToRoom(request.params.room, request.body ?? {}, { event: 'room' }) }
})

app.post('/publish-room/:room', async (request) => {
  await sse.publishToRoom(request.params.room, request.body ?? {}, { event: 'room' })
  return { ok: true }
})

app.post('/close/:userId', async (request) => {
  sse.close(request.params.userId)
  return { closed: true }
})

app.get('/stats', async () => sse.stats())

app.get('/', async (_request, reply) => {
  reply.type('text/html; charset=utf-8').send(`<!doctype html><meta charset="utf-8"><title>ssekify · Fastify</title>
<h1>ssekify · Fastify</h1><pre id="log"></pre>
<script>
  const es = new EventSource('/sse?userId=alice')
  for (const name of ['notify', 'broadcast', 'room']) es.addEventListener(name, (e) => {
    document.getElementById('log').textContent += name + ' ' + e.data + '\\n'
  })
</script>
<p>Send with examples/fastify/api.http, e.g. POST /notify/alice.</p>`)
})

app.listen({ port: PORT, host: HOST }).then(() => {
  console.log(`ssekify fastify example listening on http://${HOST === '0.0.0.0' ? 'localhost' : HOST}:${PORT}`)
}, (err) => {
  console.error(err)
  process.exit(1)
})

process.once('SIGTERM', async () => {
  // shutdown() ends the SSE responses, so app.close() does not wait for them.
  await sse.shutdown({ graceMs: Number(process.env.SHUTDOWN_GRACE_MS || 5000) })
  await app.close()
})
