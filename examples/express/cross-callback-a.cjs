'use strict'
/**
 * Cross-server push without Redis, server A (holds the browsers' SSE connections).
 * A hands a job to B over HTTP with a callback URL; B POSTs the result back to A's
 * /fanout, and A delivers it to the user locally. Run B first:
 *
 *   npm run dev:cross:cb:b      # B on 4005
 *   npm run dev:cross:cb:a      # A on 3005
 *
 * Env: PORT (3005), B_URL (http://localhost:4005), PUBLIC_URL (how B reaches A;
 * default http://localhost:PORT), CALLBACK_TOKEN (shared with B; set a real secret).
 * Requests to try: examples/express/cross-callback.api.http
 */
const crypto = require('crypto')
const express = require('express')
const { SSEKify } = require('ssekify')

const PORT = Number(process.env.PORT || 3005)
const HOST = process.env.HOST
const B_URL = process.env.B_URL || 'http://localhost:4005'
const PUBLIC_URL = process.env.PUBLIC_URL || `http://localhost:${PORT}`
const CALLBACK_TOKEN = process.env.CALLBACK_TOKEN || 'dev-only-callback-token'

const sse = new SSEKify({ keepAliveMs: Number(process.env.SSE_KEEPALIVE_MS || 15000), retryMs: 2000 })
sse.on('error', (err) => console.error('[ssekify]', err.message))

const app = express()
app.use(express.json())

app.get('/sse', (req, res) => {
  sse.registerConnection(String(req.query.userId || 'guest'), res, { rooms: ['global'] })
})

// Start a job: hand it to B with the address B calls back.
app.post('/start', async (req, res) => {
  const { userId = 'guest', payload = {} } = req.body ?? {}
  const cid = `cid_${crypto.randomUUID()}`
  const answer = await fetch(`${B_URL}/process`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ userId, cid, payload, callback: `${PUBLIC_URL}/fanout` })
  })
  if (!answer.ok) return res.status(502).json({ error: `B answered ${answer.status}` })
  res.json({ accepted: true, cid })
})

const sameSecret = (given) => {
  const a = Buffer.from(String(given || ''))
  const b = Buffer.from(CALLBACK_TOKEN)
  return a.length === b.length && crypto.timingSafeEqual(a, b)
}

// B calls back here; A delivers to the user's connections on this instance.
app.post('/fanout', (req, res) => {
  if (!sameSecret(req.get('x-callback-token'))) return res.status(401).json({ error: 'bad callback token' })
  const { userId, data = {} } = req.body ?? {}
  if (typeof userId !== 'string' || userId === '') return res.status(400).json({ error: 'userId required' })
  res.json({ ok: true, delivered: sse.sendToUser(userId, data, { event: 'job:done' }) })
})

app.get('/', (_req, res) => {
  res.type('html').send(`<!doctype html><meta charset="utf-8"><title>ssekify · HTTP callback, server A</title>
<h1>Cross-server via HTTP callback: server A</h1>
<p><button onclick="start()">start a job for alice (A → B → callback → A → alice)</button></p>
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
  console.log(`ssekify cross-callback A listening on http://${HOST || 'localhost'}:${PORT} (B at ${B_URL})`)
})

process.once('SIGTERM', async () => {
  await sse.shutdown({ graceMs: Number(process.env.SHUTDOWN_GRACE_MS || 5000) })
  server.close()
  server.closeIdleConnections()
})
