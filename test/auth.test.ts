/**
 * The auth recipes of examples/auth (JWT in the query, signed cookie session,
 * pre-signed URL), started as a child process and talked to over real sockets. A
 * refused request must be refused before any SSE header is written: status 401, no
 * `text/event-stream`, none of the SSE headers, no `retry:` line.
 */
import * as crypto from "node:crypto"
import { createRequire } from "node:module"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { ensureBuilt, type RunningExample, startExample, stopExamples } from "./examples/harness.js"
import { connect, type RawClient, request } from "./support/sse.js"

const require = createRequire(import.meta.url)
const jwt = require("jsonwebtoken") as {
  sign(payload: object, secret: string, options?: object): string
}

const JWT_SECRET = "auth-test-jwt-secret-0123456789"
const URL_SECRET = "auth-test-url-secret-0123456789"
const SIGNED_URL_TTL_MS = 1_000

let app: RunningExample
beforeAll(async () => {
  await ensureBuilt()
  app = await startExample("examples/auth/index.cjs", {
    env: { JWT_SECRET, URL_SECRET, SIGNED_URL_TTL_MS: String(SIGNED_URL_TTL_MS) }
  })
}, 180_000)
afterAll(stopExamples)

const opened: Array<RawClient> = []
afterAll(() => {
  for (const c of opened) c.close()
})

const sse = async (path: string, headers?: Record<string, string>): Promise<RawClient> => {
  const c = await connect(`${app.url}${path}`, headers === undefined ? undefined : { headers })
  opened.push(c)
  return c
}

/** A refusal: 401 and nothing of SSE. */
const expectRefused = async (c: RawClient, what: string) => {
  expect(c.status, what).toBe(401)
  expect(String(c.headers["content-type"]), what).not.toContain("text/event-stream")
  expect(c.headers["x-accel-buffering"], what).toBeUndefined()
  expect(String(c.headers["cache-control"] ?? ""), what).not.toContain("no-transform")
  await c.ended()
  expect(c.text(), what).not.toContain("retry:")
  expect(JSON.parse(c.text()), what).toEqual({ error: "unauthorized" })
}

const expectSse = async (c: RawClient, what: string) => {
  expect(c.status, what).toBe(200)
  expect(String(c.headers["content-type"]), what).toContain("text/event-stream")
  await c.waitFor((x) => x.text().includes("retry: 2000"), 5_000, `${what}: retry line`)
}

const login = async (userId: string): Promise<string> => {
  const r = await request(`${app.url}/login`, { body: { userId } })
  expect(r.status).toBe(200)
  return (JSON.parse(r.body) as { token: string }).token
}

const notify = async (token: string, userId: string) => {
  const r = await request(`${app.url}/notify/${userId}`, { body: { msg: "hi" }, headers: { authorization: `Bearer ${token}` } })
  return (JSON.parse(r.body) as { delivered: number }).delivered
}

describe("auth recipes (examples/auth)", () => {
  it("JWT in the query: a valid token connects; expired, wrongly signed, alg none and subject-less tokens get 401 before any SSE header", async () => {
    const token = await login("alice")
    const ok = await sse(`/sse?token=${token}`)
    await expectSse(ok, "valid token")
    expect(await notify(token, "alice")).toBe(1)
    await ok.waitFor((x) => x.text().includes("event: notify"), 5_000, "the notification")

    const expired = jwt.sign({ sub: "alice", exp: Math.floor(Date.now() / 1000) - 10 }, JWT_SECRET, { algorithm: "HS256" })
    const wrongKey = jwt.sign({ sub: "alice" }, "another-secret-entirely", { algorithm: "HS256", expiresIn: "10m" })
    const header = Buffer.from(JSON.stringify({ alg: "none", typ: "JWT" })).toString("base64url")
    const body = Buffer.from(JSON.stringify({ sub: "alice", exp: Math.floor(Date.now() / 1000) + 600 })).toString("base64url")
    const algNone = `${header}.${body}.`
    const noSubject = jwt.sign({ role: "admin" }, JWT_SECRET, { algorithm: "HS256", expiresIn: "10m" })
    const tampered = token.slice(0, -2) + (token.endsWith("AA") ? "BB" : "AA")
    for (const [what, t] of [["expired", expired], ["wrongly signed", wrongKey], ["alg none", algNone], ["no subject", noSubject], ["tampered", tampered], ["empty", ""]] as const) {
      await expectRefused(await sse(`/sse?token=${encodeURIComponent(t)}`), what)
    }
    await expectRefused(await sse("/sse"), "no credentials")
  })

  it("pre-signed URL: exchanged with a Bearer token, opens once; replay, tampering and use after expiry get 401", async () => {
    const token = await login("bob")
    expect((await request(`${app.url}/sse-url`, { body: {} })).status).toBe(401) // no Bearer token

    const exchange = async () => {
      const r = await request(`${app.url}/sse-url`, { body: {}, headers: { authorization: `Bearer ${token}` } })
      expect(r.status).toBe(200)
      const { expiresInMs, url } = JSON.parse(r.body) as { url: string; expiresInMs: number }
      expect(expiresInMs).toBe(SIGNED_URL_TTL_MS)
      expect(url).toMatch(/^\/sse\?uid=bob&exp=\d+&nonce=[\w-]+&sig=[\w-]+$/)
      return url
    }
    const url = await exchange()
    const first = await sse(url)
    await expectSse(first, "signed URL")
    expect(await notify(token, "bob")).toBe(1)
    await expectRefused(await sse(url), "the same URL again (replay)")

    const other = await exchange()
    await expectRefused(await sse(other.replace("uid=bob", "uid=alice")), "another user id under bob's signature")
    const exp = Number(/exp=(\d+)/.exec(other)![1])
    await expectRefused(await sse(other.replace(/exp=\d+/, `exp=${exp + 3_600_000}`)), "a later expiry under the old signature")

    // never used, but used after it expired: refused (the wait is what is being tested)
    const late = await exchange()
    const lateExp = Number(/exp=(\d+)/.exec(late)![1])
    await new Promise((r) => setTimeout(r, Math.max(0, lateExp - Date.now()) + 50))
    await expectRefused(await sse(late), "a URL used after it expired")
  })

  it("cookie session: the signed cookie connects; a forged or altered cookie gets 401", async () => {
    const token = await login("carol")
    const session = await request(`${app.url}/session`, { body: {}, headers: { authorization: `Bearer ${token}` } })
    const cookie = String(session.headers["set-cookie"])
    expect(cookie).toMatch(/^ssekify_session=[\w-]+\.[\w-]+; Max-Age=3600; Path=\/; Expires=.+; HttpOnly; SameSite=Lax$/)
    const value = /^ssekify_session=([^;]+)/.exec(cookie)![1]!
    await expectSse(await sse("/sse", { cookie: `ssekify_session=${value}` }), "session cookie")
    expect(await notify(token, "carol")).toBe(1)

    const [body, sig] = value.split(".") as [string, string]
    const claims = JSON.parse(Buffer.from(body, "base64url").toString("utf8")) as { sub: string; exp: number }
    const otherBody = Buffer.from(JSON.stringify({ ...claims, sub: "alice" })).toString("base64url")
    await expectRefused(await sse("/sse", { cookie: `ssekify_session=${otherBody}.${sig}` }), "another user under carol's signature")
    const forgedSig = crypto.createHmac("sha256", "guessed-key").update(`session|${otherBody}`).digest("base64url")
    await expectRefused(await sse("/sse", { cookie: `ssekify_session=${otherBody}.${forgedSig}` }), "signed with another key")
    const expiredBody = Buffer.from(JSON.stringify({ sub: "carol", exp: Date.now() - 1 })).toString("base64url")
    const expiredSig = crypto.createHmac("sha256", URL_SECRET).update(`session|${expiredBody}`).digest("base64url")
    await expectRefused(await sse("/sse", { cookie: `ssekify_session=${expiredBody}.${expiredSig}` }), "an expired session")
  })
})
