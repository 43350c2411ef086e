'use strict'
/**
 * Cross-server push without Redis, server B (does the work, holds no connection).
 * It answers at once, works, then POSTs `{ userId, data }` to the callback URL it was
 * given, with the shared token. It only calls back the origins it is told to trust,
 * so it cannot be used to make requests elsewhere.
 *
 *   npm run dev:cross:cb:b      # B on 4005
 *
 * Env: PORT (4005), CALLBACK_ALLOWLIST (origins B may call back; default
 * http://localhost:3005,http://127.0.0.1:3005), CALLBACK_TOKEN (shared with A),
 * PROCESS_DELAY_MS (the simulated work, 300).
 */
const express = require('express')

const PORT = Number(process.env.PORT || 4005)
const HOST = process.env.HOST
const CALLBACK_TOKEN = process.env.CALLBACK_TOKEN || 'dev-only-callback-token'
const PROCESS_DELAY_MS = Number(process.env.PROCESS_DELAY_MS || 300)
const ALLOWED = new Set(
  (process.env.CALLBACK_ALLOWLIST || 'http://localhost:3005,http://127.0.0.1:3005').split(',').map((s) => s.trim()).filter(Boolean)
)

const originOf = (url) => {
  try {
    return new URL(url).origin
  } catch {
    return null
  }
}

const app = express()
app.use(express.json())

app.post('/process', (req, res) => {
  const { userId = 'guest', cid = 'cid', payload = {}, callback } = req.body ?? {}
  if (!ALLOWED.has(originOf(callback))) return res.status(400).json({ error: 'callback origin not allowed' })
  res.json({ processing: true, cid })
  setTimeout(async () => {
    const data = { cid, ok: true, echo: payload, at: Date.now() }
    try {
      const answer = await fetch(callback, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-callback-token': CALLBACK_TOKEN },
        body: JSON.stringify({ userId, data })
      })
      console.log(`[B] ${cid}: callback answered ${answer.status}`)
    } catch (err) {
      console.error(`[B] ${cid}: callback failed: ${err.message}`)
    }
  }, PROCESS_DELAY_MS)
})

const server = app.listen(PORT, HOST, () => {
  console.log(`ssekify cross-callback B listening on http://${HOST || 'localhost'}:${PORT}`)
})

process.once('SIGTERM', () => {
  server.close()
  server.closeIdleConnections()
})
