'use strict'
/**
 * Multi-tenant isolation: one SSEKify per tenant, each on its own channel
 * `ssekify:bus:tenant:{id}`, so a tenant's users, rooms and broadcasts never reach
 * another tenant, on this instance or (with REDIS_URL) across instances.
 *
 *   npm run dev:multi                                   # PORT=3001
 *   REDIS_URL=redis://127.0.0.1:6379 npm run dev:multi  # across instances
 *
 * Env: TENANTS (the known tenants, default "t1,t2": an unknown one gets 404 instead of
 * a new instance per made-up name), REDIS_URL (optional), PORT (3001).
 * Requests to try: examples/express/multitenant.api.http
 */
const express = require('express')
const { SSEKify, createIORedisAdapter } = require('ssekify')

const PORT = Number(process.env.PORT || 3001)
const HOST = process.env.HOST
const TENANTS = new Set((process.env.TENANTS || 't1,t2').split(',').map((s) => s.trim()).filter(Boolean))

const kits = new Map()
const getKit = (tenant) => {
  let kit = kits.get(tenant)
  if (kit === undefined) {
    kit = new SSEKify({
      // one adapter (three Redis connections) per tenant: each instance closes its own
      redis: process.env.REDIS_URL ? createIORedisAdapter(process.env.REDIS_URL) : undefined,
      channel: `ssekify:bus:tenant:${tenant}`,
      keepAliveMs: Number(process.env.SSE_KEEPALIVE_MS || 15000),
      retryMs: 2000,
      recentBufferSize: 20
    })
    kit.on('error', (err) => console.error(`[ssekify ${tenant}]`, err.message))
    kits.set(tenant, kit)
  }
  return kit
}

// Create the kits up front, so every tenant is subscribed before its first publish.
for (const tenant of TENANTS) getKit(tenant)

const app = express()
app.use(express.json())

// Resolve the tenant (in a real app: from the host name, a token claim...).
app.param('tenant', (req, res, next, tenant) => {
  if (!TENANTS.has(tenant)) return res.status(404).json({ error: `unknown tenant ${tenant}` })
  req.sse = getKit(tenant)
  next()
})

app.get('/:tenant/sse', (req, res) => {
  req.sse.registerConnection(String(req.query.userId || 'guest'), res, { rooms: ['global'] })
})
app.post('/:tenant/notify/:userId', (req, res) => {
  res.json({ delivered: req.sse.sendToUser(req.params.userId, req.body ?? {}, { event: 'notify' }) })
})
app.post('/:tenant/broadcast', async (req, res) => {
  await req.sse.publish(req.body ?? {}, undefined, { event: 'broadcast' })
  res.json({ ok: true })
})
app.post('/:tenant/room/:room', (req, res) => {
  res.json({ delivered: req.sse.sendToRoom(req.params.room, req.body ?? {}, { event: 'room' }) })
})
app.post('/:tenant/publish-room/:room', async (req, res) => {
  await req.sse.publishToRoom(req.params.room, req.body ?? {}, { event: 'room' })
  res.json({ ok: true })
})
app.post('/:tenant/close/:userId', (req, res) => {
  req.sse.close(req.params.userId)
  res.json({ closed: true })
})
app.get('/:tenant/stats', (req, res) => {
  res.json(req.sse.stats())
})

app.get('/', (_req, res) => {
  res.type('html').send(`<!doctype html><meta charset="utf-8"><title>ssekify · multi-tenant</title>
<h1>Multi-tenant isolation</h1>
<p>Tenants: ${Array.from(TENANTS).join(', ')}. Each frame below is labelled with the tenant whose stream carried it.</p>
<p><button onclick="post('/t1/broadcast')">t1 broadcast</button> <button onclick="post('/t2/broadcast')">t2 broadcast</button>
<button onclick="post('/t1/publish-room/global')">t1 publish room global</button></p>
<pre id="log"></pre>
<script>
  const log = (line) => { document.getElementById('log').textContent += line + '\\n' }
  for (const t of ['t1', 't2']) {
    const es = new EventSource('/' + t + '/sse?userId=alice')
    for (const name of ['notify', 'broadcast', 'room']) es.addEventListener(name, (e) => log(t + ' ' + name + ' ' + e.data))
  }
  const post = (url) => fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ from: url, at: Date.now() }) })
</script>`)
})

app.use((err, _req, res, _next) => {
  console.error('[express]', err.message)
  res.status(err.status || 500).json({ error: err.message })
})

const server = app.listen(PORT, HOST, () => {
  console.log(`ssekify multitenant listening on http://${HOST || 'localhost'}:${PORT} (tenants ${Array.from(TENANTS).join(', ')})`)
})

process.once('SIGTERM', async () => {
  const graceMs = Number(process.env.SHUTDOWN_GRACE_MS || 5000)
  await Promise.all(Array.from(kits.values(), (kit) => kit.shutdown({ graceMs })))
  server.close()
  server.closeIdleConnections()
})
