'use strict'
/**
 * Authenticated SSE, as recipes that hold on several instances (no per-process state
 * but the used-URL nonces): EventSource cannot send an Authorization header, so the
 * identity travels in the URL or a cookie. The three patterns of the README ("鉴权实战"):
 *
 * 1. JWT in the query   GET /sse?token=<short-lived JWT>
 * 2. Cookie session     POST /session (Bearer) sets an HMAC-signed, HttpOnly cookie;
 *                       GET /sse with that cookie (same origin: the browser sends it)
 * 3. Pre-signed URL     POST /sse-url (Bearer) returns /sse?uid=…&exp=…&nonce=…&sig=…,
 *                       valid SIGNED_URL_TTL_MS and once; the page opens EventSource on it
 *
 * Every refusal is a plain 401 JSON answer sent BEFORE registerConnection, so no SSE
 * header is ever written for it (and a browser's EventSource stops retrying on 401).
 *
 *   JWT_SECRET=… URL_SECRET=… node examples/auth/index.cjs     # PORT=3000
 *
 * Env: PORT (3000), HOST, JWT_SECRET, URL_SECRET (HMAC key of signed URLs and cookies),
 * SIGNED_URL_TTL_MS (30000), SESSION_TTL_MS (3600000).
 * Several instances: give them the same secrets; keep the nonces in Redis
 * (`SET nonce 1 NX PX ttl`) instead of the Map below.
 */
const crypto = require('crypto')
const express = require('express')
const jwt = require('jsonwebtoken')
const { SSEKify } = require('ssekify')

const PORT = Number(process.env.PORT || 3000)
const HOST = process.env.HOST
const JWT_SECRET = process.env.JWT_SECRET || 'dev-only-jwt-secret-change-me'
const URL_SECRET = process.env.URL_SECRET || 'dev-only-url-secret-change-me'
const SIGNED_URL_TTL_MS = Number(process.env.SIGNED_URL_TTL_MS || 30000)
const SESSION_TTL_MS = Number(process.env.SESSION_TTL_MS || 3600000)

const sse = new SSEKify({ keepAliveMs: 15000, retryMs: 2000 })
sse.on('error', (err) => console.error('[ssekify]', err.message))

const app = express()
app.use(express.json())

// -- helpers ------------------------------------------------------------------

const hmac = (text) => crypto.createHmac('sha256', URL_SECRET).update(text).digest('base64url')
const sameMac = (a, b) => {
  const x = Buffer.from(String(a))
  const y = Buffer.from(String(b))
  return x.length === y.length && crypto.timingSafeEqual(x, y)
}

/** A verified JWT's user, or null (expired, wrongly signed, `alg: none`, no subject …). */
const fromJwt = (token) => {
  try {
    const payload = jwt.verify(String(token || ''), JWT_SECRET, { algorithms: ['HS256'] })
    return typeof payload.sub === 'string' && payload.sub !== '' ? { id: payload.sub } : null
  } catch {
    return null
  }
}

const bearer = (req, res, next) => {
  const match = /^Bearer (.+)$/.exec(req.get('authorization') || '')
  req.user = match ? fromJwt(match[1]) : null
  if (!req.user) return res.status(401).json({ error: 'unauthorized' })
  next()
}

// -- 3) pre-signed URLs: HMAC over uid|exp|nonce, expiring, single use -----------

const usedNonces = new Map() // nonce -> exp (kept until the URL expires)
setInterval(() => {
  const now = Date.now()
  for (const [nonce, exp] of usedNonces) if (exp < now) usedNonces.delete(nonce)
}, 10000).unref()

const signUrl = (userId) => {
  const exp = Date.now() + SIGNED_URL_TTL_MS
  const nonce = crypto.randomBytes(12).toString('base64url')
  const sig = hmac(`${userId}|${exp}|${nonce}`)
  return `/sse?uid=${encodeURIComponent(userId)}&exp=${exp}&nonce=${nonce}&sig=${sig}`
}

const fromSignedUrl = (q) => {
  const { uid, exp, nonce, sig } = q
  if (typeof uid !== 'string' || typeof exp !== 'string' || typeof nonce !== 'string' || typeof sig !== 'string') return null
  if (!sameMac(sig, hmac(`${uid}|${exp}|${nonce}`))) return null // forged or altered
  const expires = Number(exp)
  if (!(expires > Date.now())) return null // expired
  if (usedNonces.has(nonce)) return null // replayed
  usedNonces.set(nonce, expires)
  return { id: uid }
}

// -- 2) cookie sessions: HMAC-signed `userId.expiry` ------------------------------

const COOKIE = 'ssekify_session'
const fromCookie = (req) => {
  const match = new RegExp(`(?:^|;\\s*)${COOKIE}=([^;]+)`).exec(req.get('cookie') || '')
  if (!match) return null
  const [body, sig] = decodeURIComponent(match[1]).split('.')
  if (!body || !sig || !sameMac(sig, hmac(`session|${body}`))) return null
  try {
    const { sub, exp } = JSON.parse(Buffer.from(body, 'base64url').toString('utf8'))
    return typeof sub === 'string' && sub !== '' && exp > Date.now() ? { id: sub } : null
  } catch {
    return null
  }
}

// -- routes -----------------------------------------------------------------------

// Demo login (a real one checks a password / SSO): a 10-minute JWT.
app.post('/login', (req, res) => {
  const { userId } = req.body ?? {}
  if (typeof userId !== 'string' || userId === '') return res.status(400).json({ error: 'userId required' })
  res.json({ token: jwt.sign({ sub: userId }, JWT_SECRET, { algorithm: 'HS256', expiresIn: '10m' }) })
})

app.post('/sse-url', bearer, (req, res) => {
  res.json({ url: signUrl(req.user.id), expiresInMs: SIGNED_URL_TTL_MS })
})

app.post('/session', bearer, (req, res) => {
  const body = Buffer.from(JSON.stringify({ sub: req.user.id, exp: Date.now() + SESSION_TTL_MS })).toString('base64url')
  res.cookie(COOKIE, `${body}.${hmac(`session|${body}`)}`, { httpOnly: true, sameSite: 'lax', path: '/', maxAge: SESSION_TTL_MS })
  res.json({ ok: true })
})

// The SSE endpoint: signed URL, else token, else cookie. Nothing is written before
// the identity is known.
app.get('/sse', (req, res) => {
  const user = req.query.sig !== undefined
    ? fromSignedUrl(req.query)
    : req.query.token !== undefined
    ? fromJwt(req.query.token)
    : fromCookie(req)
  if (!user) return res.status(401).json({ error: 'unauthorized' })
  sse.registerConnection(user.id, res, { rooms: ['global'] })
})

app.post('/notify/:userId', bearer, (req, res) => {
  res.json({ delivered: sse.sendToUser(req.params.userId, { from: req.user.id, ...req.body }, { event: 'notify' }) })
})

const server = app.listen(PORT, HOST, () => {
  console.log(`ssekify auth recipes listening on http://${HOST || 'localhost'}:${PORT}`)
})

process.once('SIGTERM', async () => {
  await sse.shutdown({ graceMs: Number(process.env.SHUTDOWN_GRACE_MS || 5000) })
  server.close()
  server.closeIdleConnections()
})
