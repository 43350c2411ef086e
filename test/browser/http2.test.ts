/**
 * HTTP/2 in headless Chromium: one page holds 10 EventSources to one origin at once over
 * h2 (`http2.createSecureServer({ allowHTTP1: true })`, a certificate made at test time,
 * certificate errors ignored by the browser context) and every one gets a broadcast.
 * Over HTTP/1.1 the browser opens 6 connections per origin: the 7th EventSource stays
 * pending until one of the 6 closes.
 */
import type { ServerResponse } from "node:http"
import type { Http2ServerResponse } from "node:http2"
import type { Browser, Page } from "playwright-core"
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest"
import { SSEKify } from "../../src/index.js"
import { browserAvailable, launch } from "../support/browser.js"
import { selfSignedCert, startH2Server } from "../support/h2.js"
import { startServer, until } from "../support/sse.js"

const available = browserAvailable()
const cert = available ? selfSignedCert() : undefined

const PAGE = `<!doctype html><html><head><meta charset="utf-8"><title>h2</title></head><body><script>
window.sources = []
window.got = []
window.openSources = (n) => {
  for (let i = 0; i < n; i++) {
    const es = new EventSource('/sse?u=t' + i)
    window.got.push([])
    const k = window.sources.push(es) - 1
    es.addEventListener('hello', (e) => window.got[k].push(e.data))
  }
}
</script></body></html>`

interface PageGlobals {
  openSources(n: number): void
  readonly got: Array<Array<string>>
  readonly sources: Array<{ readonly readyState: number; close(): void }>
}

let cleanup: Array<() => Promise<void> | void> = []
afterEach(async () => {
  for (const f of cleanup.reverse()) await f()
  cleanup = []
})

describe.skipIf(!available || cert === undefined)("HTTP/2 in Chromium", () => {
  let browser: Browser
  let close: () => Promise<void>
  beforeAll(async () => {
    ;({ browser, close } = await launch())
  })
  afterAll(async () => {
    await close?.()
  })

  const newPage = async (): Promise<Page> => {
    const context = await browser.newContext({ ignoreHTTPSErrors: true })
    cleanup.push(() => context.close())
    return context.newPage()
  }

  /** Registers `/sse?u=…`; serves the page on `/`; records each request's HTTP version. */
  const handler = (sse: SSEKify, versions: Array<string>) =>
  (req: { readonly url?: string | undefined; readonly httpVersion: string }, res: ServerResponse | Http2ServerResponse) => {
    const url = new URL(req.url ?? "/", "https://x")
    if (url.pathname === "/sse") {
      versions.push(req.httpVersion)
      sse.registerConnection(url.searchParams.get("u") ?? "guest", res)
      return
    }
    const r = res as ServerResponse // the page: the same two calls on either response
    r.writeHead(url.pathname === "/" ? 200 : 404, { "content-type": "text/html; charset=utf-8" })
    r.end(url.pathname === "/" ? PAGE : "")
  }

  it("10 EventSources to one origin over HTTP/2 are open at once and all get a broadcast", async () => {
    const warnings: Array<string> = []
    const onWarning = (w: Error) => warnings.push(`${w.name}: ${w.message}`)
    process.on("warning", onWarning)
    cleanup.push(() => void process.off("warning", onWarning))
    const sse = new SSEKify({ keepAliveMs: 0 })
    const versions: Array<string> = []
    const server = await startH2Server(cert!, handler(sse, versions))
    cleanup.push(() => server.close(), () => sse.shutdown({ announce: false, graceMs: 0 }))
    const page = await newPage()
    await page.goto(`${server.url}/`)
    await page.evaluate(() => (globalThis as unknown as PageGlobals).openSources(10))
    await until(() => sse.stats().connections === 10, 15_000, "10 SSE connections")
    expect(versions).toEqual(Array.from({ length: 10 }, () => "2.0"))
    await page.waitForFunction(() => (globalThis as unknown as PageGlobals).sources.every((s) => s.readyState === 1), undefined, { timeout: 10_000 })

    expect(sse.sendToAll("all ten", { event: "hello" })).toBe(10)
    await page.waitForFunction(() => (globalThis as unknown as PageGlobals).got.every((g) => g.length === 1), undefined, { timeout: 10_000 })
    const got = await page.evaluate(() => (globalThis as unknown as PageGlobals).got)
    expect(got).toEqual(Array.from({ length: 10 }, () => [JSON.stringify("all ten")]))
    expect(warnings).toEqual([]) // no Connection header over h2
  })

  it("over HTTP/1.1 the 7th EventSource to one origin waits until one of the 6 closes", async () => {
    const sse = new SSEKify({ keepAliveMs: 0 })
    const versions: Array<string> = []
    const server = await startServer(handler(sse, versions))
    cleanup.push(() => server.close(), () => sse.shutdown({ announce: false, graceMs: 0 }))
    const page = await newPage()
    await page.goto(`${server.url}/`)
    await page.evaluate(() => (globalThis as unknown as PageGlobals).openSources(7))
    await until(() => sse.stats().connections === 6, 15_000, "6 SSE connections")
    expect(sse.sendToAll("six", { event: "hello" })).toBe(6)
    await page.waitForFunction(() => (globalThis as unknown as PageGlobals).got.filter((g) => g.length === 1).length === 6, undefined, {
      timeout: 10_000
    })
    // the 6 got the broadcast; the 7th is still connecting and never reached the server
    const state = await page.evaluate(() => {
      const g = globalThis as unknown as PageGlobals
      return { readyState: g.sources[6]!.readyState, got: g.got[6] }
    })
    expect(state).toEqual({ readyState: 0, got: [] })
    expect(sse.isUserOnline("t6")).toBe(false)
    expect(versions).toEqual(Array.from({ length: 6 }, () => "1.1"))

    // closing one of the 6 frees a connection: the 7th goes through
    await page.evaluate(() => (globalThis as unknown as PageGlobals).sources[0]!.close())
    await until(() => sse.isUserOnline("t6"), 15_000, "the 7th connection")
    expect(sse.sendToUser("t6", "seventh", { event: "hello" })).toBe(1)
    await page.waitForFunction(() => (globalThis as unknown as PageGlobals).got[6]!.length === 1, undefined, { timeout: 10_000 })
  })
})
