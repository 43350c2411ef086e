/**
 * The browser's own EventSource (headless Debian Chromium): the connection dies
 * mid-stream with frames in flight, the browser reconnects by itself with
 * Last-Event-ID, and the page has every frame exactly once, in order. With
 * `replayGapEvent`, a reconnect after `clearRecent` shows the gap event.
 */
import type { Socket } from "node:net"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { SSEKify } from "../../src/index.js"
import { browserAvailable, launch } from "../support/browser.js"
import { startServer, type TestServer, until } from "../support/sse.js"

const available = browserAvailable()

const PAGE = `<!doctype html><meta charset="utf-8"><title>replay</title><script>
  window.received = []
  window.opens = 0
  const es = new EventSource("/sse?userId=" + new URLSearchParams(location.search).get("user"))
  es.onopen = () => window.opens++
  es.onmessage = (e) => window.received.push({ id: e.lastEventId, data: e.data })
  es.addEventListener("gap", (e) => window.received.push({ gap: JSON.parse(e.data) }))
</script>`

describe.skipIf(!available)("browser EventSource replay", () => {
  let sse: SSEKify
  let server: TestServer
  let browser: Awaited<ReturnType<typeof launch>>
  const sockets = new Map<string, Socket>()
  let registrations = 0

  beforeAll(async () => {
    sse = new SSEKify({ keepAliveMs: 0, retryMs: 100, replayGapEvent: "gap", autoFields: { timestamp: false } })
    server = await startServer((req, res) => {
      const url = new URL(req.url ?? "/", "http://x")
      if (url.pathname === "/sse") {
        const user = url.searchParams.get("userId")!
        sockets.set(user, req.socket)
        registrations++
        sse.registerConnection(user, res)
        return
      }
      res.writeHead(200, { "content-type": "text/html" }).end(PAGE)
    })
    browser = await launch()
  }, 60_000)

  afterAll(async () => {
    await browser?.close()
    await sse?.shutdown({ announce: false, graceMs: 0 })
    await server?.close()
  })

  it("every frame exactly once and in order across a dropped connection", async () => {
    const page = await browser.browser.newPage()
    await page.goto(`${server.url}/?user=alice`)
    await until(() => sse.isUserOnline("alice"), 10_000, "browser connected")
    const before = registrations
    let n = 0
    const send = (count: number) => {
      for (let i = 0; i < count; i++, n++) sse.sendToUser("alice", n, { id: String(n) })
    }
    send(10)
    await page.waitForFunction(() => (globalThis as unknown as { received: Array<unknown> }).received.length === 10)
    // Frames 10..14 are recorded, then the socket dies before they are written.
    send(5)
    sockets.get("alice")!.destroy()
    await until(() => registrations === before + 1 && sse.isUserOnline("alice"), 10_000, "browser reconnected")
    send(5)
    await page.waitForFunction(() => (globalThis as unknown as { received: Array<unknown> }).received.length >= 20, undefined, { timeout: 10_000 })
    const received = await page.evaluate(() => (globalThis as unknown as { received: Array<{ id: string; data: string }> }).received)
    expect(received.map((r) => Number(r.data))).toEqual(Array.from({ length: 20 }, (_, i) => i))
    expect(received.map((r) => r.id)).toEqual(Array.from({ length: 20 }, (_, i) => String(i)))
    expect(await page.evaluate(() => (globalThis as unknown as { opens: number }).opens)).toBe(2)
    expect(sse.stats().replayed).toBeGreaterThanOrEqual(5)
    await page.close()
  })

  it("shows the gap event when what was missed is no longer known", async () => {
    const page = await browser.browser.newPage()
    await page.goto(`${server.url}/?user=bob`)
    await until(() => sse.isUserOnline("bob"), 10_000, "browser connected")
    sse.sendToUser("bob", "a", { id: "b1" })
    await page.waitForFunction(() => (globalThis as unknown as { received: Array<unknown> }).received.length === 1)
    const before = registrations
    sse.clearRecent("bob")
    sockets.get("bob")!.destroy()
    await until(() => registrations === before + 1, 10_000, "browser reconnected")
    await page.waitForFunction(() => (globalThis as unknown as { received: Array<unknown> }).received.length === 2)
    const received = await page.evaluate(() => (globalThis as unknown as { received: Array<unknown> }).received)
    expect(received[1]).toEqual({ gap: { lastEventId: "b1", reason: "unknown" } })
    await page.close()
  })
})
