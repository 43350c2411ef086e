/**
 * `ssekify/client` in headless Chromium (the Debian package, through playwright-core)
 * against the seed's AI-chat flow: an Express server implementing `/sse` and
 * `POST /api/chat` as the seed's "完整示例：AI 对话场景" does (progress chunks, then
 * done, event `notify`, published to the user from the auth middleware's `req.user`),
 * and a page running the seed's frontend with the esbuild-bundled client.
 */
import { build } from "esbuild"
import express from "express"
import type * as net from "node:net"
import * as path from "node:path"
import type { Browser, BrowserContext, Page } from "playwright-core"
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest"
import type { ConnectionInfo } from "../../src/client/index.js"
import { type RegisterOptions, SSEKify, type SSEKifyOptions } from "../../src/index.js"
import { browserAvailable, launch } from "../support/browser.js"
import { startServer, until } from "../support/sse.js"
import type * as ChatPageModule from "./client.page.js"

type ChatPage = typeof ChatPageModule
/** The page's globals, as seen from `page.evaluate` callbacks. */
interface PageGlobals {
  readonly ChatPage: ChatPage
  readonly EventSource: new (url: string) => {
    addEventListener(type: string, listener: (e: { readonly data: string; readonly lastEventId: string }) => void): void
    close(): void
  }
  raw?: Array<string>
  rawClose?: () => void
}

const available = browserAvailable()

const TOKENS: Readonly<Record<string, string>> = { "tok-alice": "alice" }
const CHUNKS = 10
const chunkText = (i: number) => `这是第 ${i + 1} 段内容。`
const FULL = Array.from({ length: CHUNKS }, (_, i) => chunkText(i)).join("")

const html = `<!doctype html>
<html lang="zh">
<head><meta charset="utf-8"><title>ssekify AI chat</title></head>
<body>
<script>localStorage.setItem('authToken', 'tok-alice')</script>
<script src="/client.js"></script>
</body>
</html>`

interface WithUser extends express.Request {
  user?: { readonly id: string }
}

interface ChatAppOptions {
  readonly sse: SSEKifyOptions
  /** `'seed'`: the seed's loop of 10 chunks then done; `'manual'`: the test publishes. */
  readonly mode: "seed" | "manual"
  readonly chunkDelayMs?: number
  /** Options of the n-th (from 1) SSE connection. */
  readonly register?: (n: number) => RegisterOptions | undefined
}

let bundle = ""
let browser: Browser | undefined
let closeBrowser: (() => Promise<void>) | undefined
let cleanup: Array<() => unknown> = []

afterEach(async () => {
  for (const f of cleanup.reverse()) await f()
  cleanup = []
})

const startChatApp = async (o: ChatAppOptions) => {
  const sse = new SSEKify(o.sse)
  const posts: Array<{ readonly authorization: string | undefined; readonly body: Record<string, unknown>; readonly userId: string }> = []
  const sseRequests: Array<{ readonly lastEventId: string | undefined; readonly socket: net.Socket }> = []
  const loops = new Set<Promise<void>>()
  const app = express()
  app.use(express.json())
  // The seed's "认证中间件": req.user from the bearer token.
  app.use((req: WithUser, _res, next) => {
    const token = (req.headers.authorization ?? "").replace(/^Bearer /, "")
    const id = TOKENS[token]
    if (id !== undefined) req.user = { id }
    next()
  })
  app.get("/", (_req, res) => {
    res.type("html").send(html)
  })
  app.get("/client.js", (_req, res) => {
    res.type("text/javascript").send(bundle)
  })

  // ========== 服务端（sseKify + Express），as in the seed ==========
  // SSE 连接端点
  app.get("/sse", (req, res) => {
    const userId = req.query.userId
    if (!userId) {
      res.status(400).json({ error: "userId required" })
      return
    }
    const header = req.headers["last-event-id"]
    const n = sseRequests.push({ lastEventId: typeof header === "string" ? header : undefined, socket: req.socket })
    sse.registerConnection(String(userId), res, o.register?.(n))
  })

  // AI 对话端点
  app.post("/api/chat", (req: WithUser, res) => {
    const { requestId, message } = req.body as { requestId: string; message: string }
    if (req.user === undefined) {
      res.status(401).json({ error: "unauthorized" })
      return
    }
    const userId = req.user.id // 从认证中间件获取
    posts.push({ authorization: req.headers.authorization, body: req.body as Record<string, unknown>, userId })
    void message
    // 立即返回 HTTP 响应
    res.json({ requestId, status: "processing" })
    if (o.mode !== "seed") return
    // 异步处理 AI 对话并推送进度
    const loop = (async () => {
      try {
        let fullContent = ""
        // 模拟 AI 流式响应
        for (let i = 0; i < CHUNKS; i++) {
          const chunk = chunkText(i)
          fullContent += chunk
          // 推送进度
          await sse.publish({
            requestId,
            phase: "progress",
            type: "chat",
            payload: { content: chunk, percent: (i + 1) * 10 }
          }, userId, { event: "notify" })
          await new Promise((resolve) => setTimeout(resolve, o.chunkDelayMs ?? 20))
        }
        // 完成
        await sse.publish({
          requestId,
          phase: "done",
          payload: { content: fullContent, totalChunks: CHUNKS }
        }, userId, { event: "notify" })
      } catch (err) {
        // 错误
        await sse.publish({
          requestId,
          phase: "error",
          error: { code: "AI_ERROR", message: (err as Error).message }
        }, userId, { event: "notify" })
      }
    })()
    loops.add(loop)
    void loop.finally(() => loops.delete(loop))
  })

  const server = await startServer(app)
  cleanup.push(async () => {
    await Promise.allSettled(Array.from(loops))
    await sse.shutdown({ announce: false, graceMs: 0 })
    await server.close()
  })
  return { sse, server, posts, sseRequests }
}

const openPage = async (url: string): Promise<{ page: Page; errors: Array<string> }> => {
  const context: BrowserContext = await browser!.newContext()
  cleanup.push(() => context.close())
  const page = await context.newPage()
  const errors: Array<string> = []
  page.on("pageerror", (e) => errors.push(e.message))
  await page.goto(url)
  await page.waitForFunction(() => (globalThis as unknown as PageGlobals).ChatPage?.sse.state === "open", undefined, { timeout: 10_000 })
  return { page, errors }
}

const info = (page: Page): Promise<ConnectionInfo> => page.evaluate(() => (globalThis as unknown as PageGlobals).ChatPage.sse.info())

/** Polls a value computed in the page. */
const untilPage = async (page: Page, check: () => Promise<boolean>, what: string, timeoutMs = 10_000) => {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; client: ${JSON.stringify(await info(page))}`)
    }
    await page.waitForTimeout(10)
  }
}

const expectedProgress = (seqOffset = 0) =>
  Array.from({ length: CHUNKS }, (_, i) => ({ content: chunkText(i), percent: (i + 1) * 10, seq: i + seqOffset }))

describe.skipIf(!available)("ssekify/client in headless Chromium", () => {
  beforeAll(async () => {
    const out = await build({
      entryPoints: [path.join(__dirname, "client.page.ts")],
      bundle: true,
      format: "iife",
      globalName: "ChatPage",
      platform: "browser",
      target: "chrome110",
      write: false,
      logLevel: "silent"
    })
    bundle = out.outputFiles[0]!.text
    const launched = await launch()
    browser = launched.browser
    closeBrowser = launched.close
  })

  afterAll(async () => {
    await closeBrowser?.()
  })

  it("runs the seed's AI chat: every chunk once and in order, then done, and the subscription ends", async () => {
    const app = await startChatApp({
      mode: "seed",
      chunkDelayMs: 20,
      sse: { keepAliveMs: 100, keepAliveEvent: "ping", recentBufferSize: 50 }
    })
    const { page, errors } = await openPage(`${app.server.url}/?ping=1000`)
    // Two conversations at once over the page's single EventSource.
    const records = await page.evaluate(() => {
      const { ChatPage } = globalThis as unknown as PageGlobals
      return Promise.all([ChatPage.chat("你好，请介绍一下 SSE"), ChatPage.chat("再来一段")])
    })
    expect(records).toHaveLength(2)
    expect(records[0]!.requestId).not.toBe(records[1]!.requestId)
    for (const r of records) {
      expect(r.requestId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
      expect(r.status).toBe(200)
      expect(r.body).toEqual({ requestId: r.requestId, status: "processing" })
      expect(r.progress).toEqual(expectedProgress())
      expect(r.done).toEqual([{ payload: { content: FULL, totalChunks: CHUNKS }, seq: CHUNKS }])
      expect(r.ui).toEqual(Array.from({ length: CHUNKS }, (_, i) => Array.from({ length: i + 1 }, (_, j) => chunkText(j)).join("")))
      expect(r.completed).toBe(FULL)
      expect(r.errors).toEqual([])
      expect(r.afterDone).toBe(0)
      expect(r.end).toEqual({ requestId: r.requestId, reason: "done", messages: CHUNKS + 1 })
    }
    // The POSTs carried the token from localStorage and the generated requestId.
    expect(app.posts.map((p) => p.authorization)).toEqual(["Bearer tok-alice", "Bearer tok-alice"])
    expect(app.posts.map((p) => p.userId)).toEqual(["alice", "alice"])
    expect(app.posts.map((p) => p.body.requestId).sort()).toEqual(records.map((r) => r.requestId).sort())
    expect(app.posts.map((p) => p.body.message).sort()).toEqual(["你好，请介绍一下 SSE", "再来一段"].sort())

    // The subscriptions are over: a late frame for a finished request is dropped.
    expect(await page.evaluate(() => (globalThis as unknown as PageGlobals).ChatPage.sse.activeRequests())).toEqual([])
    await app.sse.publish({ requestId: records[0]!.requestId, phase: "progress", type: "chat", payload: { content: "late" } }, "alice", { event: "notify" })
    await untilPage(page, async () => (await info(page)).dropped === 1, "the late frame to be dropped")
    // Heartbeats reached the page as named events; one EventSource all along.
    await untilPage(page, () => page.evaluate(() => (globalThis as unknown as PageGlobals).ChatPage.heartbeats.count >= 2), "heartbeats")
    expect(await info(page)).toMatchObject({ state: "open", connections: 1, reconnects: 0, subscriptions: 0 })
    expect(await page.evaluate(() => (globalThis as unknown as PageGlobals).ChatPage.broadcasts)).toEqual([])
    expect(app.sse.getUserConnectionCount("alice")).toBe(1)
    expect(errors).toEqual([])
  })

  it("frames without an id are not taken for duplicates although Chromium gives them the last id", async () => {
    const app = await startChatApp({ mode: "seed", chunkDelayMs: 5, sse: { keepAliveMs: 0, autoFields: { timestamp: false } } })
    const { page, errors } = await openPage(`${app.server.url}/?ping=0`)
    // A raw EventSource of the same user shows what Chromium reports as lastEventId.
    await page.evaluate(() => {
      const g = globalThis as unknown as PageGlobals
      const es = new g.EventSource("/sse?userId=alice")
      g.raw = []
      es.addEventListener("notify", (e) => g.raw!.push(e.lastEventId))
      g.rawClose = () => es.close()
    })
    await until(() => app.sse.getUserConnectionCount("alice") === 2, 10_000, "both connections")
    app.sse.sendToUser("alice", { type: "news", text: "v2 released" }, { event: "notify", id: "news-1" })
    await untilPage(page, () => page.evaluate(() => (globalThis as unknown as PageGlobals).ChatPage.broadcasts.length === 1), "the broadcast")
    const record = await page.evaluate(() => (globalThis as unknown as PageGlobals).ChatPage.chat("hi"))
    expect(record.progress).toEqual(expectedProgress())
    expect(record.end.reason).toBe("done")
    const raw = await page.evaluate(() => (globalThis as unknown as PageGlobals).raw!)
    // Chromium gave every later frame the broadcast's id...
    expect(raw).toEqual(Array.from({ length: CHUNKS + 2 }, () => "news-1"))
    // ...and the client delivered them all, dropping nothing.
    expect((await info(page)).dropped).toBe(0)
    expect(await page.evaluate(() => (globalThis as unknown as PageGlobals).ChatPage.broadcasts)).toEqual([{ type: "news", text: "v2 released" }])
    await page.evaluate(() => (globalThis as unknown as PageGlobals).rawClose!())
    expect(errors).toEqual([])
  })

  it("after the server drops the connection, Chromium's reconnect and an overlapping replay give each chunk once, in order", async () => {
    let replayFrom: string | undefined
    const app = await startChatApp({
      mode: "manual",
      sse: { keepAliveMs: 100, keepAliveEvent: "ping", retryMs: 100, recentBufferSize: 50 },
      // The second connection replays from chunk 1 although the page has seen chunk 4.
      register: (n) => (n === 2 && replayFrom !== undefined ? { lastEventId: replayFrom } : undefined)
    })
    const { page, errors } = await openPage(`${app.server.url}/?ping=1000`)
    const pending = page.evaluate(() => (globalThis as unknown as PageGlobals).ChatPage.chat("long answer"))
    await until(() => app.posts.length === 1, 10_000, "the POST")
    const requestId = String(app.posts[0]!.body.requestId)
    const send = (i: number) =>
      app.sse.sendToUser("alice", {
        requestId,
        phase: "progress",
        type: "chat",
        payload: { content: chunkText(i), percent: (i + 1) * 10 }
      }, { event: "notify", id: `${requestId}:${i}` })
    for (let i = 0; i < 4; i++) send(i)
    await untilPage(page, async () => (await info(page)).delivered === 4, "chunks 1-4")
    replayFrom = `${requestId}:0`
    // Chunks 5 and 6 go out in the same tick as the connection dies.
    send(4)
    send(5)
    for (const r of app.sseRequests) r.socket.destroy()
    await until(() => app.sseRequests.length === 2 && app.sse.getUserConnectionCount("alice") === 1, 10_000, "Chromium to reconnect")
    expect(app.sseRequests[1]!.lastEventId).toMatch(new RegExp(`^${requestId}:[35]$`))
    await untilPage(page, async () => (await info(page)).delivered === 6, "the replayed chunks")
    for (let i = 6; i < CHUNKS; i++) send(i)
    app.sse.sendToUser("alice", { requestId, phase: "done", payload: { content: FULL, totalChunks: CHUNKS } }, { event: "notify", id: `${requestId}:done` })
    const record = await pending
    expect(record.progress).toEqual(expectedProgress())
    expect(record.done).toEqual([{ payload: { content: FULL, totalChunks: CHUNKS }, seq: CHUNKS }])
    expect(record.end).toEqual({ requestId, reason: "done", messages: CHUNKS + 1 })
    expect(record.afterDone).toBe(0)
    const after = await info(page)
    // Chunks 2-4 came again with the replay and were dropped.
    expect(after.dropped).toBe(3)
    // Chromium reconnected by itself; the client did not need to.
    expect(after).toMatchObject({ connections: 1, reconnects: 0, subscriptions: 0 })
    expect(errors).toEqual([])
  })
})
