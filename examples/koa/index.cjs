'use strict'
/**
 * Koa 2 + @koa/router + koa-bodyparser. Koa's `ctx.res` is Node's ServerResponse:
 * hand it to registerConnection and set `ctx.respond = false` so Koa leaves it alone.
 *
 *   npm run dev:koa      PORT=3010 by default
 *
 * Requests to try: examples/koa/api.http
 */
const Koa = require('koa')
const Router = require('@koa/router')
const bodyParser = require('koa-bodyparser')
const { SSEKify, createIORedisAdapter } = require('ssekify')

const PORT = Number(process.env.PORT || 3010)
const HOST = process.env.HOST

const sse = new SSEKify({
  redis: process.env.REDIS_URL ? createIORedisAdapter(process.env.REDIS_URL) : undefined,
  channel: process.env.SSE_CHANNEL || 'ssekify:bus',
  keepAliveMs: Number(process.env.SSE_KEEPALIVE_MS || 15000),
  retryMs: Number(process.env.SSE_RETRY_MS || 2000)
})
sse.on('error', (err) => console.error('[ssekify]', err.message))

const app = new Koa()
const router = new Router()
app.use(bodyParser())

router.get('/sse', (ctx) => {
  const userId = String(ctx.query.userId || 'guest')
  sse.registerConnection(userId, ctx.res, { rooms: ['global'] })
  // The library owns the response from here: Koa must not write a body or end it.
  ctx.respond = false
})

router.post('/notify/:userId', (ctx) => {
  ctx.body = { delivered: sse.sendToUser(ctx.params.userId, ctx.request.body, { event: 'notify' }) }
})

router.post('/broadcast', async (ctx) => {
  await sse.publish(ctx.request.body, undefined, { event: 'broadcast' })
  ctx.body = { ok: true }
})

router.post('/room/:room', (ctx) => {
  ctx.body = { delivered: sse.sendToRoom(ctx.params.room, ctx.request.body, { event: 'room' }) }
})

router.post('/publish-room/:room', async (ctx) => {
  await sse.publishToRoom(ctx.params.room, ctx.request.body, { event: 'room' })
  ctx.body = { ok: true }
})

router.post('/close/:userId', (ctx) => {
  sse.close(ctx.params.userId)
  ctx.body = { closed: true }
})

router.get('/stats', (ctx) => {
  ctx.body = sse.stats()
})

router.get('/', (ctx) => {
  ctx.type = 'html'
  ctx.body = `<!doctype html><meta charset="utf-8"><title>ssekify · Koa</title>
<h1>ssekify · Koa</h1><pre id="log"></pre>
<script>
  const es = new EventSource('/sse?userId=alice')
  for (const name of ['notify', 'broadcast', 'room']) es.addEventListener(name, (e) => {
    document.getElementById('log').textContent += name + ' ' + e.data + '\\n'
  })
</script>
<p>Send with examples/koa/api.http, e.g. POST /notify/alice.</p>`
})

app.use(router.routes()).use(router.allowedMethods())

const server = app.listen(PORT, HOST, () => {
  console.log(`ssekify koa example listening on http://${HOST || 'localhost'}:${PORT}`)
})

process.once('SIGTERM', async () => {
  await sse.shutdown({ graceMs: Number(process.env.SHUTDOWN_GRACE_MS || 5000) })
  server.close()
  server.closeIdleConnections()
})
