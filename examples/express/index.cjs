'use strict'
/**
 * Express quick start: the routes of the ssekify README, plus /stats and the
 * operational endpoints a deployment needs (readiness, preStop, SIGTERM).
 *
 *   npm run dev:express          PORT=3000 by default
 *   REDIS_URL=redis://127.0.0.1:6379 npm run dev:express   # publish* across instances
 *
 * Requests to try: examples/express/api.http
 */
const express = require('express')
const { SSEKify, createIORedisAdapter } = require('ssekify')

const PORT = Number(process.env.PORT || 3000)
const HOST = process.env.HOST // unset: every interface (what a container needs)
const SHUTDOWN_GRACE_MS = Number(process.env.SHUTDOWN_GRACE_MS || 5000)

// 1) One instance per process. Without `redis` it delivers on this instance only.
const sse = new SSEKify({
  redis: process.env.REDIS_URL ? createIORedisAdapter(process.env.REDIS_URL) : undefined,
  channel: process.env.SSE_CHANNEL || 'ssekify:bus', // the pub/sub channel shared by instances
  keepAliveMs: Number(process.env.SSE_KEEPALIVE_MS || 15000), // below the proxies' idle timeout
  retryMs: 2000, // the `retry:` line: the browser's reconnect delay
  recentBufferSize: 20 // frames with an id kept per user for Last-Event-ID replay; 0: off
})
// Oversized payloads, serializer failures, backpressure disconnects, Redis outages...
sse.on('error', (err) => console.error('[ssekify]', err.message))

const app = express()
app.use(express.json())

// 2) The SSE endpoint. Do not write to or flush `res` before registerConnection, and
//    never res.json()/res.end() it afterwards: the library owns the response.
app.get('/sse', (req, res) => {
  const userId = String(req.query.userId || 'guest')
  sse.registerConnection(userId, res, {
    rooms: ['global']
    // backpressure for slow clients (defaults shown):
    // maxQueueItems: 100, maxQueueBytes: 256 * 1024, dropPolicy: 'oldest' // | 'newest' | 'disconnect'
  })
})

// 3) To one user, on this instance.
app.post('/notify/:userId', (req, res) => {
  const delivered = sse.sendToUser(req.params.userId, req.body ?? {}, { event: 'notify' })
  res.json({ delivered })
})

// 4) To everyone. publish() also reaches the other instances (through Redis).
app.post('/broadcast', async (req, res) => {
  await sse.publish(req.body ?? {}, undefined, { event: 'broadcast' })
  res.json({ ok: true })
})

// 5) To a room, on this instance.
app.post('/room/:room', (req, res) => {
  const delivered = sse.sendToRoom(req.params.room, req.body ?? {}, { event: 'room' })
  res.json({ delivered })
})

// 6) To a room on every instance.
app.post('/publish-room/:room', async (req, res) => {
  await sse.publishToRoom(req.params.room, req.body ?? {}, { event: 'room' })
  res.json({ ok: true })
})

// 7) Close every connection of a user (the browser will reconnect after `retry`).
app.post('/close/:userId', (req, res) => {
  sse.close(req.params.userId)
  res.json({ closed: true })
})

app.get('/stats', (_req, res) => {
  res.json(sse.stats())
})

// --- operations (see examples/deploy/k8s-ssekify-express.yaml) -----------------------

// Readiness: fails once the instance stops accepting, so the load balancer sends new
// clients elsewhere while the open streams finish.
app.get('/healthz', (_req, res) => {
  const { accepting, connections } = sse.stats()
  res.status(accepting ? 200 : 503).json({ ready: accepting, connections })
})

// Liveness: the process answers.
app.get('/livez', (_req, res) => {
  res.json({ ok: true })
})

// Called by the preStop hook from inside the pod: new SSE requests get 503 +
// Retry-After, open ones stay until SIGTERM. Only from loopback.
const LOOPBACK = new Set(['127.0.0.1', '::1', '::ffff:127.0.0.1'])
app.post('/admin/stop-accepting', (req, res) => {
  if (!LOOPBACK.has(req.socket.remoteAddress)) return res.status(403).json({ error: 'loopback only' })
  sse.stopAccepting()
  res.json({ accepting: false })
})

app.get('/', (_req, res) => {
  res.type('html').send(PAGE)
})

app.use((err, _req, res, _next) => {
  console.error('[express]', err.message)
  res.status(err.status || 500).json({ error: err.message })
})

const server = app.listen(PORT, HOST, () => {
  console.log(`ssekify express example listening on http://${HOST || 'localhost'}:${PORT}`)
})

// Graceful shutdown: announce `server:shutdown` to every client, wait, close the
// connections and Redis, then the HTTP server. Nothing is left, so the process exits.
let stopping = false
const stop = async (signal) => {
  if (stopping) return
  stopping = true
  console.log(`${signal}: shutting down (grace ${SHUTDOWN_GRACE_MS} ms)`)
  await sse.shutdown({ announce: true, event: 'server:shutdown', graceMs: SHUTDOWN_GRACE_MS })
  server.close()
  server.closeIdleConnections()
}
process.on('SIGTERM', () => void stop('SIGTERM'))
process.on('SIGINT', () => void stop('SIGINT'))

const PAGE = `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>ssekify · Express</title>
<style>body{font-family:system-ui,sans-serif;margin:24px;line-height:1.5}pre{background:#f6f8fa;padding:8px;max-height:40vh;overflow:auto}</style></head>
<body>
<h1>ssekify · Express</h1>
<p>User <input id="user" value="alice" size="8"> <button id="open">connect</button> <span id="state">closed</span></p>
<p>
  <button data-url="/notify/alice">notify alice</button>
  <button data-url="/broadcast">broadcast</button>
  <button data-url="/room/global">room global</button>
  <button data-url="/publish-room/global">publish room global</button>
  <button data-url="/close/alice">close alice</button>
</p>
<pre id="log"></pre>
<script>
  const log = (line) => { document.getElementById('log').textContent += line + '\\n' }
  let es
  document.getElementById('open').onclick = () => {
    es && es.close()
    es = new EventSource('/sse?userId=' + encodeURIComponent(document.getElementById('user').value))
    es.onopen = () => { document.getElementById('state').textContent = 'open' }
    es.onerror = () => { document.getElementById('state').textContent = 'reconnecting' }
    for (const name of ['notify', 'broadcast', 'room', 'server:shutdown']) {
      es.addEventListener(name, (e) => log(name + ' ' + e.data))
    }
    es.onmessage = (e) => log('message ' + e.lastEventId + ' ' + e.data)
  }
  for (const b of document.querySelectorAll('button[data-url]')) {
    b.onclick = () => fetch(b.dataset.url, { method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ msg: b.textContent, at: Date.now() }) })
  }
</script>
</body>
</html>`
