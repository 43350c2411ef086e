'use strict'
/**
 * The AI-chat flow of the ssekify README (the postAndListen pattern): the page keeps one
 * EventSource; each question is a POST carrying a `requestId`; the server answers the
 * POST at once, then streams the answer as `notify` events whose data carries the same
 * `requestId` and a `phase`: 'progress' chunks, then 'done' (or 'error'). ssekify adds
 * `timestamp` and a per-requestId `seq` (0, 1, 2...) to each frame, and, with
 * frameIdPolicy, an `id:` so a reconnecting page gets what it missed.
 *
 * A page that loses its stream mid-answer (a network change, a laptop lid) reconnects
 * by itself with `Last-Event-ID` a few seconds later, while the answer is still being
 * published to a user who, for a moment, has no connection. By default ssekify does
 * not keep frames sent to a user with no connection (replay covers frames lost in
 * transit); `replayOffline: true` keeps them in the user's replay buffer (the last
 * `recentBufferSize` frames, for `recentTTLMs`), so the reconnect replays the missed
 * chunks before the live ones. `replayGapEvent` tells the page when a reconnect could
 * not get everything (the buffer was gone: a restart, an expired or evicted user).
 * With REDIS_URL the buffer lives in Redis (`replay: 'redis'`), so a reconnect that
 * lands on another instance replays too.
 *
 *   npm run dev:ai-chat        # PORT=3000, then open http://localhost:3000/
 *
 * Env: PORT (3000), REDIS_URL (optional: publish reaches the instance holding the
 * user's connection), SSE_KEEPALIVE_MS (15000; heartbeats are also sent as `ping`
 * events the page can watch), CHAT_CHUNKS (10), CHAT_CHUNK_MS (500).
 * Requests to try: examples/express/ai-chat.api.http
 */
const express = require('express')
const { SSEKify, createIORedisAdapter } = require('ssekify')

const PORT = Number(process.env.PORT || 3000)
const HOST = process.env.HOST
const CHUNKS = Number(process.env.CHAT_CHUNKS || 10)
const CHUNK_MS = Number(process.env.CHAT_CHUNK_MS || 500)

const sse = new SSEKify({
  redis: process.env.REDIS_URL ? createIORedisAdapter(process.env.REDIS_URL) : undefined,
  channel: process.env.SSE_CHANNEL || 'ssekify:bus',
  keepAliveMs: Number(process.env.SSE_KEEPALIVE_MS || 15000),
  keepAliveEvent: 'ping', // a client watchdog can see heartbeats (comments are invisible to pages)
  recentBufferSize: 50, // more than one answer's frames (CHAT_CHUNKS + 1)
  replayOffline: true, // keep frames published while the page is reconnecting
  replay: process.env.REDIS_URL ? 'redis' : 'memory', // across instances with Redis
  replayGapEvent: 'gap', // the page hears when a reconnect could not get everything
  seq: { frameIdPolicy: 'timestamp' } // frames get ids: Last-Event-ID replay after a reconnect
})
sse.on('error', (err) => console.error('[ssekify]', err.message))

const app = express()
app.use(express.json())

// Demo identity. A real app takes the user from its session or a verified token (see
// examples/auth/index.cjs); EventSource cannot send headers, hence the query on /sse.
const identify = (req, res, next) => {
  const id = req.get('x-user-id') || req.query.userId
  if (!id) return res.status(401).json({ error: 'unauthorized: send X-User-Id (demo auth)' })
  req.user = { id: String(id) }
  next()
}

app.get('/sse', (req, res) => {
  const userId = req.query.userId
  if (!userId) return res.status(400).json({ error: 'userId required' })
  sse.registerConnection(String(userId), res)
})

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

// Stand-in for a model streaming its answer.
async function* generate(message, simulateError) {
  for (let i = 0; i < CHUNKS; i++) {
    if (simulateError && i === 2) throw new Error('the model went away (simulated)')
    await sleep(CHUNK_MS)
    yield `Part ${i + 1} of the answer to "${message}". `
  }
}

app.post('/api/chat', identify, (req, res) => {
  const { requestId, message = '', simulateError = false } = req.body ?? {}
  if (typeof requestId !== 'string' || requestId === '') return res.status(400).json({ error: 'requestId required' })
  const userId = req.user.id

  // 1) answer the POST at once
  res.json({ requestId, status: 'processing' })

  // 2) stream the answer over SSE: every frame carries the requestId
  ;(async () => {
    let fullContent = ''
    let n = 0
    try {
      for await (const chunk of generate(String(message), simulateError === true)) {
        fullContent += chunk
        n++
        await sse.publish(
          { requestId, phase: 'progress', type: 'chat', payload: { content: chunk, percent: Math.round((n / CHUNKS) * 100) } },
          userId,
          { event: 'notify' }
        )
      }
      await sse.publish(
        { requestId, phase: 'done', payload: { content: fullContent, totalChunks: n } },
        userId,
        { event: 'notify' }
      )
      console.log(`[chat] ${userId} ${requestId}: done after ${n} chunks`)
    } catch (err) {
      // 'done' or 'error' always ends the stream: the client stops listening for this requestId
      await sse.publish(
        { requestId, phase: 'error', error: { code: 'AI_ERROR', message: err.message } },
        userId,
        { event: 'notify' }
      ).catch((e) => console.error('[chat] could not report the error:', e.message))
      console.log(`[chat] ${userId} ${requestId}: error after ${n} chunks`)
    }
  })()
})

app.get('/', (_req, res) => {
  res.type('html').send(PAGE)
})

const server = app.listen(PORT, HOST, () => {
  console.log(`ssekify ai-chat listening on http://${HOST || 'localhost'}:${PORT}`)
})

process.once('SIGTERM', async () => {
  await sse.shutdown({ graceMs: Number(process.env.SHUTDOWN_GRACE_MS || 5000) })
  server.close()
  server.closeIdleConnections()
})

// A minimal postAndListen client: one EventSource, callbacks routed by requestId,
// unsubscribed on 'done' / 'error', frames already seen (by requestId + seq) ignored.
const PAGE = `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>ssekify · AI chat</title>
<style>body{font-family:system-ui,sans-serif;margin:24px;max-width:720px}#answer{white-space:pre-wrap;background:#f6f8fa;padding:8px;min-height:4em}</style></head>
<body>
<h1>AI chat over SSE</h1>
<form id="ask"><input id="message" size="50" value="Tell me about SSE"> <button>ask</button>
  <label><input type="checkbox" id="fail"> simulate a failure</label></form>
<p id="status">connecting…</p>
<div id="answer"></div>
<script>
  const userId = 'alice'
  const listeners = new Map()
  const seen = new Map()
  const es = new EventSource('/sse?userId=' + userId)
  es.onopen = () => { document.getElementById('status').textContent = 'connected as ' + userId }
  es.onerror = () => { document.getElementById('status').textContent = 'reconnecting…' }
  // A reconnect that could not replay everything it missed (e.g. after a server restart)
  es.addEventListener('gap', (e) => {
    const gap = JSON.parse(e.data)
    document.getElementById('answer').textContent += '\\n\\n[some frames were lost: ' + gap.reason + ']'
  })
  es.addEventListener('ping', () => { document.getElementById('status').textContent = 'connected as ' + userId + ' (heartbeat ' + new Date().toLocaleTimeString() + ')' })
  es.addEventListener('notify', (e) => {
    const msg = JSON.parse(e.data)
    const listener = listeners.get(msg.requestId)
    if (!listener || (seen.get(msg.requestId) ?? -1) >= msg.seq) return
    seen.set(msg.requestId, msg.seq)
    listener(msg)
    if (msg.phase === 'done' || msg.phase === 'error') listeners.delete(msg.requestId)
  })
  async function postAndListen(url, body, onMessage) {
    const requestId = crypto.randomUUID()
    listeners.set(requestId, onMessage)
    const response = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', 'x-user-id': userId },
      body: JSON.stringify({ ...body, requestId }) })
    return { requestId, response, unsubscribe: () => listeners.delete(requestId) }
  }
  document.getElementById('ask').onsubmit = async (event) => {
    event.preventDefault()
    const out = document.getElementById('answer')
    out.textContent = ''
    await postAndListen('/api/chat', { message: document.getElementById('message').value, simulateError: document.getElementById('fail').checked },
      ({ phase, payload, error }) => {
        if (phase === 'progress') out.textContent += payload.content
        else if (phase === 'done') out.textContent += '\\n\\n[done: ' + payload.totalChunks + ' chunks]'
        else if (phase === 'error') out.textContent += '\\n\\n[error ' + error.code + ': ' + error.message + ']'
      })
  }
</script>
</body>
</html>`
