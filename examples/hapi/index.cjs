'use strict'
/**
 * hapi 21. `request.raw.res` is Node's ServerResponse: hand it to registerConnection
 * and return `h.abandon` so hapi does not send a response of its own.
 *
 *   npm run dev:hapi      PORT=3030 by default
 *
 * Requests to try: examples/hapi/api.http
 */
const Hapi = require('@hapi/hapi')
const { SSEKify, createIORedisAdapter } = require('ssekify')

const PORT = Number(process.env.PORT || 3030)
const HOST = process.env.HOST || '0.0.0.0'

const sse = new SSEKify({
  redis: process.env.REDIS_URL ? createIORedisAdapter(process.env.REDIS_URL) : undefined,
  channel: process.env.SSE_CHANNEL || 'ssekify:bus',
  keepAliveMs: Number(process.env.SSE_KEEPALIVE_MS || 15000),
  retryMs: Number(process.env.SSE_RETRY_MS || 2000)
})
sse.on('error', (err) => console.error('[ssekify]', err.message))

const main = async () => {
  const server = Hapi.server({ port: PORT, host: HOST })

  server.route({
    method: 'GET',
    path: '/sse',
    handler: (request, h) => {
      const userId = String(request.query.userId || 'guest')
      sse.registerConnection(userId, request.raw.res, { rooms: ['global'] })
      return h.abandon
    }
  })

  server.route({
    method: 'POST',
    path: '/notify/{userId}',
    handler: (request) => ({ delivered: sse.sendToUser(request.params.userId, request.payload ?? {}, { event: 'notify' }) })
  })

  server.route({
    method: 'POST',
    path: '/broadcast',
    handler: async (request) => {
      await sse.publish(request.payload ?? {}, undefined, { event: 'broadcast' })
      return { ok: true }
    }
  })

  server.route({
    method: 'POST',
    path: '/room/{room}',
    handler: (request) => ({ delivered: sse.sendToRoom(request.params.room, request.payload ?? {}, { event: 'room' }) })
  })

  server.route({
    method: 'POST',
    path: '/publish-room/{room}',
    handler: async (request) => {
      await sse.publishToRoom(request.params.room, request.payload ?? {}, { event: 'room' })
      return { ok: true }
    }
  })

  server.route({
    method: 'POST',
    path: '/close/{userId}',
    handler: (request) => {
      sse.close(request.params.userId)
      return { closed: true }
    }
  })

  server.route({ method: 'GET', path: '/stats', handler: () => sse.stats() })

  server.route({
    method: 'GET',
    path: '/',
    handler: (_request, h) =>
      h.response(`<!doctype html><meta charset="utf-8"><title>ssekify · hapi</title>
<h1>ssekify · hapi</h1><pre id="log"></pre>
<script>
  const es = new EventSource('/sse?userId=alice')
  for (const name of ['notify', 'broadcast', 'room']) es.addEventListener(name, (e) => {
    document.getElementById('log').textContent += name + ' ' + e.data + '\\n'
  })
</script>
<p>Send with examples/hapi/api.http, e.g. POST /notify/alice.</p>`).type('text/html; charset=utf-8')
  })

  await server.start()
  console.log(`ssekify hapi example listening on http://${HOST === '0.0.0.0' ? 'localhost' : HOST}:${PORT}`)

  process.once('SIGTERM', async () => {
    await sse.shutdown({ graceMs: Number(process.env.SHUTDOWN_GRACE_MS || 5000) })
    await server.stop({ timeout: 1000 })
  })
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
