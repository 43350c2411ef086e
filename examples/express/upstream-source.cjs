'use strict'
/**
 * A stand-in for the upstream SSE service the bridges consume (the original README
 * used a Python FastAPI one): plain node:http, no ssekify, so it behaves like any
 * foreign SSE source.
 *
 * - GET /stream: `retry: 1000`, then a `tick` event every TICK_MS with an `id:`; a
 *   reconnect with Last-Event-ID continues the numbering after it. With an
 *   `X-Upstream-To` request header, each tick's data carries that `userId` (the bridges
 *   then deliver it to that user only).
 * - POST /emit `{ event?, data }`: sends one event to every open stream.
 *
 *   npm run dev:upstream                                   # PORT=8000
 *   UPSTREAM_URL=http://localhost:8000/stream npm run dev:bridge:lazy
 *
 * Env: PORT (8000), TICK_MS (1000; 0: no ticks).
 * Requests to try: examples/express/upstream-source.api.http
 */
const http = require('http')

const PORT = Number(process.env.PORT || 8000)
const HOST = process.env.HOST
const TICK_MS = Number(process.env.TICK_MS ?? 1000)

const streams = new Set()
let lastId = 0

const write = (stream, event, data) => {
  const id = ++lastId
  const payload = stream.to && data !== null && typeof data === 'object' ? { ...data, userId: stream.to } : data
  stream.res.write(`id: ${id}\n${event === 'message' ? '' : `event: ${event}\n`}data: ${JSON.stringify(payload)}\n\n`)
}

const server = http.createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/stream') {
    const resumeAfter = Number(req.headers['last-event-id'])
    if (Number.isInteger(resumeAfter) && resumeAfter > lastId) lastId = resumeAfter
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', 'x-accel-buffering': 'no' })
    res.write('retry: 1000\n\n')
    const stream = { res, to: req.headers['x-upstream-to'] || null, n: 0 }
    streams.add(stream)
    console.log(`stream opened (last id ${req.headers['last-event-id'] || '-'}${stream.to ? `, to ${stream.to}` : ''})`)
    res.on('close', () => streams.delete(stream))
    return
  }
  if (req.method === 'POST' && req.url === '/emit') {
    let body = ''
    req.on('data', (chunk) => (body += chunk))
    req.on('end', () => {
      let parsed
      try {
        parsed = JSON.parse(body || '{}')
      } catch {
        res.writeHead(400, { 'content-type': 'application/json' }).end(JSON.stringify({ error: 'invalid JSON' }))
        return
      }
      const { event = 'message', data = {} } = parsed
      for (const stream of streams) write(stream, String(event), data)
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ streams: streams.size }))
    })
    return
  }
  res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ error: 'not found' }))
})

if (TICK_MS > 0) {
  setInterval(() => {
    for (const stream of streams) write(stream, 'tick', { n: ++stream.n, at: Date.now() })
  }, TICK_MS).unref()
}

server.listen(PORT, HOST, () => {
  console.log(`upstream SSE source listening on http://${HOST || 'localhost'}:${PORT}/stream`)
})

process.once('SIGTERM', () => {
  for (const stream of streams) stream.res.end()
  server.close()
})
