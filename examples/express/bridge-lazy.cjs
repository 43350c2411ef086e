'use strict'
/**
 * Upstream bridge, lazy: connects to the upstream SSE source only while at least one
 * browser is connected here, and disconnects after IDLE_GRACE_MS without any (so a
 * page reload does not churn the upstream). Reconnecting resumes after the last
 * upstream id (Last-Event-ID). A home page at / shows it at work.
 *
 *   npm run dev:upstream          # a stand-in upstream on 8000 (upstream-source.cjs)
 *   UPSTREAM_URL=http://localhost:8000/stream npm run dev:bridge:lazy
 *   open http://localhost:3000/
 *
 * Env: UPSTREAM_URL (or PY_SSE_URL), UPSTREAM_EVENTS (default "message,tick"),
 * UPSTREAM_TO, IDLE_GRACE_MS (default 10000), PORT (default 3000).
 * Requests to try: examples/express/bridge-upstream.api.http
 */
const express = require('express')
const { SSEKify } = require('ssekify')
const { Upstream } = require('./upstream.cjs')

const PORT = Number(process.env.PORT || 3000)
const HOST = process.env.HOST
const UPSTREAM_URL = process.env.UPSTREAM_URL || process.env.PY_SSE_URL || 'http://localhost:8000/stream'
const IDLE_GRACE_MS = Number(process.env.IDLE_GRACE_MS || 10000)

const sse = new SSEKify({
  keepAliveMs: Number(process.env.SSE_KEEPALIVE_MS || 15000),
  retryMs: 2000,
  recentBufferSize: 20
})
sse.on('error', (err) => console.error('[ssekify]', err.message))

const upstream = new Upstream({
  url: UPSTREAM_URL,
  events: (process.env.UPSTREAM_EVENTS || 'message,tick').split(',').map((s) => s.trim()).filter(Boolean),
  headers: () => (process.env.UPSTREAM_TO ? { 'X-Upstream-To': process.env.UPSTREAM_TO } : {}),
  onEvent: (event, data) => {
    if (data !== null && typeof data === 'object' && typeof data.userId === 'string') {
      sse.sendToUser(data.userId, data, { event })
    } else {
      sse.sendToAll(data, { event })
    }
  }
})

// Demand follows the library's own connection events, so connections closed by the
// server (close(), backpressure, shutdown) count as well as browsers leaving.
let idleTimer = null
sse.on('connect', () => {
  clearTimeout(idleTimer)
  idleTimer = null
  upstream.open()
})
sse.on('disconnect', () => {
  if (sse.stats().connections > 0 || idleTimer) return
  idleTimer = setTimeout(() => {
    idleTimer = null
    if (sse.stats().connections === 0) upstream.close()
  }, IDLE_GRACE_MS)
})

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
  res.type('html').send(PAGE)
})

const server = app.listen(PORT, HOST, () => {
  console.log(`ssekify bridge-lazy listening on http://${HOST || 'localhost'}:${PORT} (upstream ${UPSTREAM_URL}, idle grace ${IDLE_GRACE_MS} ms)`)
})

process.once('SIGTERM', async () => {
  clearTimeout(idleTimer)
  upstream.close()
  await sse.shutdown({ graceMs: Number(process.env.SHUTDOWN_GRACE_MS || 5000) })
  server.close()
  server.closeIdleConnections()
})

const PAGE = `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>ssekify · bridge (lazy)</title>
<style>body{font-family:system-ui,sans-serif;margin:24px;line-height:1.5}pre{background:#f6f8fa;padding:8px;max-height:40vh;overflow:auto}</style></head>
<body>
<h1>Upstream bridge (lazy)</h1>
<p>The server connects upstream when the first browser connects and lets go ${IDLE_GRACE_MS} ms after the last one leaves.</p>
<p>User <input id="user" value="alice" size="8">
  <button id="connect">connect</button> <button id="disconnect">disconnect</button>
  <button id="broadcast">broadcast</button> <button id="notify">notify me</button>
  <button id="health">health</button></p>
<pre id="log"></pre>
<script>
  const log = (line) => { document.getElementById('log').textContent += line + '\\n' }
  const user = () => document.getElementById('user').value
  const post = (url, body) => fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
  let es
  document.getElementById('connect').onclick = () => {
    if (es) return
    es = new EventSource('/sse?userId=' + encodeURIComponent(user()))
    es.onopen = () => log('connected as ' + user())
    for (const name of ['message', 'tick', 'notify', 'broadcast']) es.addEventListener(name, (e) => log(name + ' ' + e.data))
  }
  document.getElementById('disconnect').onclick = () => { if (es) { es.close(); es = undefined; log('disconnected') } }
  document.getElementById('broadcast').onclick = () => post('/broadcast', { msg: 'hello everyone', at: Date.now() })
  document.getElementById('notify').onclick = () => post('/notify/' + encodeURIComponent(user()), { msg: 'hi', at: Date.now() })
  document.getElementById('health').onclick = async () => log('health ' + JSON.stringify(await (await fetch('/health')).json()))
</script>
</body>
</html>`
