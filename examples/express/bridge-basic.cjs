'use strict'
/**
 * Upstream bridge, basic: connects to an upstream SSE source at start and forwards
 * its events to the browsers connected here. An event whose data carries a `userId`
 * goes to that user only; any other goes to everyone on this instance.
 *
 *   npm run dev:upstream          # a stand-in upstream on 8000 (upstream-source.cjs)
 *   UPSTREAM_URL=http://localhost:8000/stream npm run dev:bridge:basic
 *
 * Env: UPSTREAM_URL (or PY_SSE_URL, the original's name; default
 * http://localhost:8000/stream), UPSTREAM_EVENTS (event names to forward, default
 * "message,tick"), UPSTREAM_TO (optional: sent upstream as X-Upstream-To, so the
 * upstream can address its events to that user), PORT (default 3000).
 * Requests to try: examples/express/bridge-upstream.api.http
 */
const express = require('express')
const { SSEKify } = require('ssekify')
const { Upstream } = require('./upstream.cjs')

const PORT = Number(process.env.PORT || 3000)
const HOST = process.env.HOST
const UPSTREAM_URL = process.env.UPSTREAM_URL || process.env.PY_SSE_URL || 'http://localhost:8000/stream'

const sse = new SSEKify({
  keepAliveMs: Number(process.env.SSE_KEEPALIVE_MS || 15000),
  retryMs: 2000,
  recentBufferSize: 20
})
sse.on('error', (err) => console.error('[ssekify]', err.message))

// Forward: a `userId` in the payload routes to that user; otherwise everyone here.
const forward = (event, data) => {
  if (data !== null && typeof data === 'object' && typeof data.userId === 'string') {
    sse.sendToUser(data.userId, data, { event })
  } else {
    sse.sendToAll(data, { event })
  }
}

const upstream = new Upstream({
  url: UPSTREAM_URL,
  events: (process.env.UPSTREAM_EVENTS || 'message,tick').split(',').map((s) => s.trim()).filter(Boolean),
  headers: () => (process.env.UPSTREAM_TO ? { 'X-Upstream-To': process.env.UPSTREAM_TO } : {}),
  onEvent: forward
})
upstream.open() // at start, whether or not anyone listens

const app = express()
app.use(express.json())

app.get('/sse', (req, res) => {
  sse.registerConnection(String(req.query.userId || 'guest'), res, { rooms: ['global'] })
})

app.get('/health', (_req, res) => {
  res.json({
    ok: true,
    downstream: sse.stats().connections,
    upstream: upstream.status,
    lastUpstreamEventId: upstream.lastEventId
  })
})

// The usual local sends, to check the downstream side without the upstream.
app.post('/notify/:userId', (req, res) => {
  res.json({ delivered: sse.sendToUser(req.params.userId, req.body ?? {}, { event: 'notify' }) })
})
app.post('/broadcast', (req, res) => {
  res.json({ delivered: sse.sendToAll(req.body ?? {}, { event: 'broadcast' }) })
})
app.post('/room/:room', (req, res) => {
  res.json({ delivered: sse.sendToRoom(req.params.room, req.body ?? {}, { event: 'room' }) })
})
app.post('/close/:userId', (req, res) => {
  sse.close(req.params.userId)
  res.json({ closed: true })
})

app.get('/', (_req, res) => {
  res.type('html').send(`<!doctype html><meta charset="utf-8"><title>ssekify · bridge (basic)</title>
<h1>Upstream bridge (basic)</h1>
<p>Upstream: <code>${UPSTREAM_URL.replace(/[<&"]/g, '')}</code>, connected at start.</p>
<pre id="log"></pre>
<script>
  const es = new EventSource('/sse?userId=alice')
  for (const name of ['message', 'tick', 'notify', 'broadcast', 'room']) es.addEventListener(name, (e) => {
    document.getElementById('log').textContent += name + ' ' + e.data + '\\n'
  })
</script>`)
})

const server = app.listen(PORT, HOST, () => {
  console.log(`ssekify bridge-basic listening on http://${HOST || 'localhost'}:${PORT} (upstream ${UPSTREAM_URL})`)
})

process.once('SIGTERM', async () => {
  upstream.close()
  await sse.shutdown({ graceMs: Number(process.env.SHUTDOWN_GRACE_MS || 5000) })
  server.close()
  server.closeIdleConnections()
})
