/**
 * `ssekify/client` in Node with the `eventsource` package against real `node:http`
 * servers running the `SSEKify` facade: multiplexing, done/error, broadcast routing,
 * the bearer token, the watchdog (through a TCP proxy that freezes the connection),
 * replay after the server drops the connection, and deduplication of an overlapping
 * replay; then the edges: an abort while the EventSource is not open, close() while
 * the token is fetched, callbacks that throw with nobody listening, bad requestIds,
 * an EventSource that cannot be constructed.
 */
import { EventSource } from "eventsource"
import type * as http from "node:http"
import * as net from "node:net"
import type { AddressInfo } from "node:net"
import { afterEach, describe, expect, it, vi } from "vitest"
import {
  type FrameMeta,
  type ListenMessage,
  SSEClient,
  SSEClientError,
  type SSEClientEventMap,
  type SSEClientOptions
} from "../src/client/index.js"
import { type RegisterOptions, SSEKify, type SSEKifyOptions } from "../src/index.js"
import { startServer, until } from "./support/sse.js"

let cleanup: Array<() => unknown> = []
afterEach(async () => {
  for (const f of cleanup.reverse()) await f()
  cleanup = []
})

interface Task {
  readonly userId: string
  readonly body: Record<string, unknown>
  readonly headers: http.IncomingHttpHeaders
}

interface SseRequest {
  readonly url: string
  readonly lastEventIdHeader: string | undefined
  readonly socket: net.Socket
}

interface Hooks {
  /** Options for the n-th (from 1) SSE request, or 'refuse' to answer it with 503. */
  readonly sseRequest?: (n: number) => RegisterOptions | "refuse" | undefined
  /** The user of a POST from its Authorization header; default: the `userId` query parameter. */
  readonly auth?: (authorization: string | undefined) => string | undefined
}

const readBody = (req: http.IncomingMessage): Promise<string> =>
  new Promise((resolve, reject) => {
    const chunks: Array<Buffer> = []
    req.on("data", (c: Buffer) => chunks.push(c))
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")))
    req.on("error", reject)
  })

/** An app like the seed's: `GET /sse?userId=` registers, `POST /api/task` answers `{ requestId, status }`. */
const startApp = async (options: SSEKifyOptions, hooks: Hooks = {}) => {
  const sse = new SSEKify(options)
  const tasks: Array<Task> = []
  const sseRequests: Array<SseRequest> = []
  const server = await startServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://x")
    if (req.method === "GET" && url.pathname === "/sse") {
      const header = req.headers["last-event-id"]
      const n = sseRequests.push({ url: req.url ?? "", lastEventIdHeader: typeof header === "string" ? header : undefined, socket: req.socket })
      const extra = hooks.sseRequest?.(n)
      if (extra === "refuse") {
        res.writeHead(503, { "retry-after": "0" }).end()
        return
      }
      sse.registerConnection(url.searchParams.get("userId") ?? "", res, extra)
      return
    }
    if (req.method === "POST" && url.pathname === "/api/task") {
      void readBody(req).then((text) => {
        const body = JSON.parse(text) as Record<string, unknown>
        const authorization = req.headers.authorization
        const userId = hooks.auth !== undefined ? hooks.auth(authorization) : url.searchParams.get("userId") ?? undefined
        if (userId === undefined) {
          res.writeHead(401, { "content-type": "application/json" }).end(JSON.stringify({ error: "unauthorized" }))
          return
        }
        tasks.push({ userId, body, headers: req.headers })
        res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ requestId: body.requestId, status: "processing" }))
      })
      return
    }
    if (url.pathname === "/api/hang") return // never answers
    res.writeHead(404).end()
  })
  cleanup.push(() => server.close(), () => sse.shutdown({ announce: false, graceMs: 0 }))
  /** Destroys the sockets of the SSE requests so far, as a network failure would. */
  const dropSse = () => {
    for (const r of sseRequests) r.socket.destroy()
  }
  return { sse, server, tasks, sseRequests, dropSse }
}

/** A TCP proxy whose current connections can be frozen (server → client bytes stop flowing). */
const startProxy = async (targetPort: number) => {
  const pairs = new Set<{ readonly client: net.Socket; readonly upstream: net.Socket }>()
  const server = net.createServer((client) => {
    const upstream = net.connect(targetPort, "127.0.0.1")
    const pair = { client, upstream }
    pairs.add(pair)
    const done = () => {
      client.destroy()
      upstream.destroy()
      pairs.delete(pair)
    }
    client.on("error", done).on("close", done)
    upstream.on("error", done).on("close", done)
    client.pipe(upstream)
    upstream.pipe(client)
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  const close = () =>
    new Promise<void>((resolve) => {
      for (const { client, upstream } of pairs) {
        client.destroy()
        upstream.destroy()
      }
      server.close(() => resolve())
    })
  cleanup.push(close)
  return {
    url,
    /** Stops forwarding what the server sends on the open connections; returns how many. */
    freeze: (): number => {
      for (const { client, upstream } of pairs) {
        upstream.unpipe(client)
        upstream.pause()
      }
      return pairs.size
    }
  }
}

const makeClient = (options: SSEClientOptions) => {
  const client = new SSEClient({ EventSource, ...options })
  cleanup.push(() => client.close())
  return client
}

/** Records a client's events. */
const record = (client: SSEClient) => {
  const events = {
    open: [] as Array<SSEClientEventMap["open"]>,
    reconnect: [] as Array<SSEClientEventMap["reconnect"]>,
    heartbeat: 0,
    broadcast: [] as Array<SSEClientEventMap["broadcast"]>,
    dropped: [] as Array<SSEClientEventMap["dropped"]>,
    end: [] as Array<SSEClientEventMap["end"]>,
    handlerErrors: [] as Array<unknown>
  }
  client.on("open", (e) => events.open.push(e))
  client.on("reconnect", (e) => events.reconnect.push(e))
  client.on("heartbeat", () => events.heartbeat++)
  client.on("broadcast", (e) => events.broadcast.push(e))
  client.on("dropped", (e) => events.dropped.push(e))
  client.on("end", (e) => events.end.push(e))
  client.on("error", (e) => {
    if (e.kind === "handler") events.handlerErrors.push(e.error)
  })
  return events
}

/** A callback that collects messages and their metadata. */
const collector = () => {
  const messages: Array<ListenMessage> = []
  const metas: Array<FrameMeta> = []
  const onMessage = (m: ListenMessage, meta: FrameMeta) => {
    messages.push(m)
    metas.push(meta)
  }
  return { messages, metas, onMessage }
}

const noTimestamp = { autoFields: { timestamp: false } } as const

describe("ssekify/client in Node", () => {
  it("multiplexes concurrent postAndListen calls over one EventSource and routes broadcasts", async () => {
    const app = await startApp({ keepAliveMs: 0, ...noTimestamp })
    const broadcasts: Array<unknown> = []
    const client = makeClient({
      url: `${app.server.url}/sse?userId=alice`,
      eventName: "notify",
      onBroadcast: (message) => broadcasts.push(message)
    })
    const events = record(client)
    const perRequest = new Map<number, ReturnType<typeof collector>>()
    const results = await Promise.all(Array.from({ length: 5 }, (_, k) => {
      const c = collector()
      perRequest.set(k, c)
      return client.postAndListen(`${app.server.url}/api/task?userId=alice`, { k, message: `task ${k}` }, c.onMessage)
    }))
    expect(results.map((r) => r.response.status)).toEqual([200, 200, 200, 200, 200])
    expect(await Promise.all(results.map((r) => r.response.json()))).toEqual(
      results.map((r) => ({ requestId: r.requestId, status: "processing" }))
    )
    const ids = results.map((r) => r.requestId)
    expect(new Set(ids).size).toBe(5)
    for (const id of ids) expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
    expect(app.tasks.map((t) => t.body)).toEqual(ids.map((requestId, k) => ({ k, message: `task ${k}`, requestId })))
    expect(client.activeRequests().sort()).toEqual([...ids].sort())

    // Interleaved progress of every request, then done, then two frames of no request.
    for (let chunk = 0; chunk < 3; chunk++) {
      for (const [k, requestId] of ids.entries()) {
        await app.sse.publish({ requestId, phase: "progress", type: "chat", payload: { k, chunk } }, "alice", { event: "notify" })
      }
    }
    for (const [k, requestId] of ids.entries()) {
      await app.sse.publish({ requestId, phase: "done", payload: { k } }, "alice", { event: "notify" })
    }
    await app.sse.publish({ type: "announcement", text: "hello all" }, "alice", { event: "notify" })
    await app.sse.publish({ requestId: "started-elsewhere", phase: "progress" }, "alice", { event: "notify" })
    // Another event name is not this client's business.
    app.sse.sendToUser("alice", { requestId: ids[0], phase: "progress" }, { event: "other" })

    const ends = await Promise.all(results.map((r) => r.ended))
    expect(ends).toEqual(ids.map((requestId) => ({ requestId, reason: "done", messages: 4 })))
    for (const [k, requestId] of ids.entries()) {
      const { messages } = perRequest.get(k)!
      expect(messages).toEqual([
        { requestId, phase: "progress", type: "chat", payload: { k, chunk: 0 }, seq: 0 },
        { requestId, phase: "progress", type: "chat", payload: { k, chunk: 1 }, seq: 1 },
        { requestId, phase: "progress", type: "chat", payload: { k, chunk: 2 }, seq: 2 },
        { requestId, phase: "done", payload: { k }, seq: 3 }
      ])
    }
    await until(() => broadcasts.length === 2, 5_000, "broadcasts")
    expect(broadcasts).toEqual([
      { type: "announcement", text: "hello all" },
      { requestId: "started-elsewhere", phase: "progress", seq: 0 }
    ])
    expect(events.broadcast.map((b) => b.message)).toEqual(broadcasts)
    expect(client.activeRequests()).toEqual([])
    // One EventSource, one server connection for all of it.
    expect(client.info()).toMatchObject({ state: "open", connections: 1, reconnects: 0, subscriptions: 0, dropped: 0 })
    expect(app.sse.getUserConnectionCount("alice")).toBe(1)
    expect(app.sseRequests).toHaveLength(1)
    expect(events.end.map((e) => e.reason)).toEqual(["done", "done", "done", "done", "done"])
  })

  it("phase 'error' ends the subscription; later frames of that request are dropped, not broadcast", async () => {
    const app = await startApp({ keepAliveMs: 0, ...noTimestamp })
    const broadcasts: Array<unknown> = []
    const client = makeClient({ url: `${app.server.url}/sse?userId=bob`, eventName: "notify", onBroadcast: (m) => broadcasts.push(m) })
    const events = record(client)
    const c = collector()
    const ended: Array<unknown> = []
    const r = await client.postAndListen(`${app.server.url}/api/task?userId=bob`, { message: "hi" }, (m, meta) => {
      c.onMessage(m, meta)
      if (m.phase === "progress") throw new Error("a callback that throws does not break routing")
    }, { onEnd: (end) => ended.push(end) })
    const { requestId } = r
    await app.sse.publish({ requestId, phase: "progress", payload: { n: 1 } }, "bob", { event: "notify" })
    await app.sse.publish({ requestId, phase: "error", error: { code: "AI_ERROR", message: "upstream failed" } }, "bob", { event: "notify" })
    await app.sse.publish({ requestId, phase: "progress", payload: { n: 2 } }, "bob", { event: "notify" })
    expect(await r.ended).toEqual({ requestId, reason: "error", messages: 2 })
    expect(ended).toEqual([{ requestId, reason: "error", messages: 2 }])
    await until(() => events.dropped.length === 1, 5_000, "the late frame")
    expect(events.dropped[0]).toMatchObject({ reason: "ended", requestId, seq: 0 })
    expect(c.messages.map((m) => [m.phase, m.seq])).toEqual([["progress", 0], ["error", 1]])
    expect(c.messages[1]!.error).toEqual({ code: "AI_ERROR", message: "upstream failed" })
    expect(events.handlerErrors).toHaveLength(1)
    expect(broadcasts).toEqual([])

    // unsubscribe() ends it too; what follows is dropped.
    const c2 = collector()
    const r2 = await client.postAndListen(`${app.server.url}/api/task?userId=bob`, {}, c2.onMessage)
    await app.sse.publish({ requestId: r2.requestId, phase: "progress" }, "bob", { event: "notify" })
    await until(() => c2.messages.length === 1)
    r2.unsubscribe()
    r2.unsubscribe()
    expect(await r2.ended).toEqual({ requestId: r2.requestId, reason: "unsubscribed", messages: 1 })
    await app.sse.publish({ requestId: r2.requestId, phase: "done" }, "bob", { event: "notify" })
    await until(() => events.dropped.length === 2, 5_000, "the frame after unsubscribe")
    expect(c2.messages).toHaveLength(1)
    expect(broadcasts).toEqual([])
  })

  it("sends the bearer token, the configured headers, and ends the subscription on a non-2xx answer", async () => {
    const users: Record<string, string> = { "Bearer tok-carol": "carol", "Bearer tok-carol-2": "carol" }
    const app = await startApp({ keepAliveMs: 0, ...noTimestamp }, { auth: (h) => (h === undefined ? undefined : users[h]) })
    let current = "tok-carol-2"
    const client = makeClient({
      url: `${app.server.url}/sse?userId=carol`,
      eventName: "notify",
      token: "tok-carol",
      headers: { "x-app": "ssekify-test" }
    })
    const c = collector()
    const r = await client.postAndListen(`${app.server.url}/api/task`, { message: "hello" }, c.onMessage)
    expect(r.response.status).toBe(200)
    expect(app.tasks[0]!.headers).toMatchObject({
      authorization: "Bearer tok-carol",
      "content-type": "application/json",
      "x-app": "ssekify-test"
    })
    expect(app.tasks[0]!.userId).toBe("carol")
    await app.sse.publish({ requestId: r.requestId, phase: "done", payload: { ok: true } }, "carol", { event: "notify" })
    expect((await r.ended).reason).toBe("done")

    // A token getter (called for each POST), per call.
    const r2 = await client.postAndListen(`${app.server.url}/api/task`, {}, () => {}, { token: () => Promise.resolve(current) })
    expect(app.tasks[1]!.headers.authorization).toBe("Bearer tok-carol-2")
    r2.unsubscribe()
    current = "tok-revoked"
    // Rejected by the server: resolves with the response, the subscription is over.
    const r3 = await client.postAndListen(`${app.server.url}/api/task`, {}, () => {}, { token: () => current })
    expect(r3.response.status).toBe(401)
    expect(r3.response.ok).toBe(false)
    expect(await r3.response.json()).toEqual({ error: "unauthorized" })
    expect(await r3.ended).toEqual({ requestId: r3.requestId, reason: "http", messages: 0 })
    // token: null → no Authorization header at all.
    const r4 = await client.postAndListen(`${app.server.url}/api/task`, {}, () => {}, { token: null })
    expect(r4.response.status).toBe(401)
    expect(client.activeRequests()).toEqual([])
  })

  it("the watchdog reopens a silent connection, reports it, and the replay fills the gap", async () => {
    const app = await startApp({
      keepAliveMs: 50,
      keepAliveEvent: "ping",
      retryMs: 50,
      recentBufferSize: 50,
      seq: { frameIdPolicy: "snowflake" },
      ...noTimestamp
    })
    const proxy = await startProxy(app.server.port)
    const reported: Array<SSEClientEventMap["reconnect"]> = []
    const client = makeClient({
      url: `${proxy.url}/sse?userId=dave`,
      eventName: "notify",
      keepAliveEvent: "ping",
      // Generous against a loaded CI machine: the server beats every 50 ms, the
      // watchdog allows 2 × 200 ms of silence.
      expectedPingInterval: 200,
      onReconnect: (e) => reported.push(e)
    })
    const events = record(client)
    await client.connect()
    // Heartbeats keep the connection alive: several intervals pass without a reconnect.
    await until(() => events.heartbeat >= 12, 5_000, "heartbeats")
    expect(events.reconnect).toEqual([])

    const c = collector()
    const r = await client.postAndListen(`${app.server.url}/api/task?userId=dave`, {}, c.onMessage)
    const send = (phase: string, n: number) => app.sse.sendToUser("dave", { requestId: r.requestId, phase, payload: { n } }, { event: "notify" })
    send("progress", 0)
    send("progress", 1)
    await until(() => c.messages.length === 2)
    const lastSeen = c.metas[1]!.id
    expect(lastSeen).toMatch(/^\d+$/)

    // The network path goes silent: no more heartbeats nor frames reach the client.
    expect(proxy.freeze()).toBe(1)
    send("progress", 2)
    send("progress", 3)
    await until(() => events.reconnect.length === 1, 5_000, "the watchdog")
    expect(events.reconnect[0]).toMatchObject({ reason: "watchdog", lastEventId: lastSeen })
    expect(events.reconnect[0]!.silentMs).toBeGreaterThanOrEqual(400)
    expect(reported).toEqual(events.reconnect)
    // The new EventSource asks for a replay after the last id it saw.
    await until(() => events.open.length === 2, 5_000, "the new connection")
    expect(app.sseRequests).toHaveLength(2)
    expect(new URL(app.sseRequests[1]!.url, "http://x").searchParams.get("lastEventId")).toBe(lastSeen)
    await until(() => c.messages.length === 4, 5_000, "the replayed frames")
    send("done", 4)
    expect(await r.ended).toEqual({ requestId: r.requestId, reason: "done", messages: 5 })
    expect(c.messages.map((m) => [m.phase, m.seq])).toEqual([
      ["progress", 0],
      ["progress", 1],
      ["progress", 2],
      ["progress", 3],
      ["done", 4]
    ])
    expect(events.reconnect).toHaveLength(1)
    expect(client.info()).toMatchObject({ connections: 2, reconnects: 1 })
  })

  it("no duplicate callbacks when the server drops the connection and the EventSource reconnects with Last-Event-ID", async () => {
    const app = await startApp({ keepAliveMs: 0, retryMs: 50, recentBufferSize: 50, seq: { frameIdPolicy: "snowflake" }, ...noTimestamp })
    const client = makeClient({ url: `${app.server.url}/sse?userId=erin`, eventName: "notify" })
    const events = record(client)
    const c = collector()
    const r = await client.postAndListen(`${app.server.url}/api/task?userId=erin`, {}, c.onMessage)
    const send = (phase: string, n: number) => app.sse.sendToUser("erin", { requestId: r.requestId, phase, payload: { n } }, { event: "notify" })
    for (let n = 0; n < 3; n++) send("progress", n)
    await until(() => c.messages.length === 3)
    // Two more frames go out in the same tick as the connection dies.
    send("progress", 3)
    send("progress", 4)
    app.dropSse()
    await until(() => app.sseRequests.length === 2 && app.sse.getUserConnectionCount("erin") === 1, 5_000, "the reconnect")
    expect(c.metas.map((m) => m.id)).toContain(app.sseRequests[1]!.lastEventIdHeader)
    await until(() => c.messages.length === 5, 5_000, "the replay")
    // Frames 3 and 4 never reached the old connection: they came with the replay.
    expect(app.sse.stats().replayed).toBe(2)
    send("done", 5)
    expect((await r.ended).reason).toBe("done")
    expect(c.messages.map((m) => [m.phase, m.payload])).toEqual([
      ["progress", { n: 0 }],
      ["progress", { n: 1 }],
      ["progress", { n: 2 }],
      ["progress", { n: 3 }],
      ["progress", { n: 4 }],
      ["done", { n: 5 }]
    ])
    expect(new Set(c.metas.map((m) => m.id)).size).toBe(6)
    // The EventSource reconnected by itself: the client did not have to.
    expect(client.info()).toMatchObject({ connections: 1, reconnects: 0 })
    expect(events.reconnect).toEqual([])
  })

  it("drops the duplicates of a replay that overlaps what was already delivered (frame ids and seq)", async () => {
    let replayFrom: string | undefined
    const app = await startApp(
      { keepAliveMs: 0, retryMs: 50, recentBufferSize: 50, seq: { frameIdPolicy: "snowflake" }, ...noTimestamp },
      // The second connection replays from an older point than the client's Last-Event-ID
      // (an application checkpoint, a proxy that rewrote the header...).
      { sseRequest: (n) => (n >= 2 && replayFrom !== undefined ? { lastEventId: replayFrom } : undefined) }
    )
    const broadcasts: Array<unknown> = []
    const client = makeClient({ url: `${app.server.url}/sse?userId=fay`, eventName: "notify", onBroadcast: (m) => broadcasts.push(m) })
    const events = record(client)
    const c = collector()
    const r = await client.postAndListen(`${app.server.url}/api/task?userId=fay`, {}, c.onMessage)
    const send = (phase: string, n: number) => app.sse.sendToUser("fay", { requestId: r.requestId, phase, payload: { n } }, { event: "notify" })
    send("progress", 0)
    app.sse.sendToUser("fay", { type: "announcement", text: "maintenance at 5" }, { event: "notify" })
    send("progress", 1)
    send("progress", 2)
    await until(() => c.messages.length === 3 && broadcasts.length === 1)
    replayFrom = c.metas[0]!.id
    app.dropSse()
    // The replay resends the broadcast and progress 1 and 2: all three are dropped.
    await until(() => events.dropped.length === 3, 5_000, "the overlapping replay")
    expect(events.dropped.map((d) => d.reason)).toEqual(["frame-id", "frame-id", "frame-id"])
    expect(events.dropped.map((d) => d.seq)).toEqual([undefined, 1, 2])
    send("done", 3)
    expect((await r.ended).reason).toBe("done")
    expect(c.messages.map((m) => m.seq)).toEqual([0, 1, 2, 3])
    expect(broadcasts).toEqual([{ type: "announcement", text: "maintenance at 5" }])
    expect(app.sse.stats().replayed).toBeGreaterThanOrEqual(3)

    // Without frame ids, the per-request seq drops a frame sent twice (an upstream retry).
    const c2 = collector()
    const r2 = await client.postAndListen(`${app.server.url}/api/task?userId=fay`, {}, c2.onMessage)
    app.sse.sendToUser("fay", { requestId: r2.requestId, phase: "progress", payload: "a" }, { event: "notify", id: "x-1" })
    app.sse.sendToUser("fay", { requestId: r2.requestId, phase: "progress", payload: "a", seq: 0 }, { event: "notify", id: "x-1-retry" })
    app.sse.sendToUser("fay", { requestId: r2.requestId, phase: "done", payload: "b" }, { event: "notify", id: "x-2" })
    expect((await r2.ended).reason).toBe("done")
    expect(c2.messages.map((m) => [m.payload, m.seq])).toEqual([["a", 0], ["b", 1]])
    expect(events.dropped.at(-1)).toMatchObject({ reason: "seq", requestId: r2.requestId, seq: 0 })
  })

  it("opens a new EventSource when the server refuses the connection, and postAndListen waits for it", async () => {
    const app = await startApp({ keepAliveMs: 0, ...noTimestamp }, { sseRequest: (n) => (n === 1 ? "refuse" : undefined) })
    const client = makeClient({ url: `${app.server.url}/sse?userId=gus`, eventName: "notify", reopenDelayMs: 20 })
    const events = record(client)
    const c = collector()
    const pending = client.postAndListen(`${app.server.url}/api/task?userId=gus`, {}, c.onMessage)
    const r = await pending
    expect(events.reconnect).toHaveLength(1)
    expect(events.reconnect[0]!.reason).toBe("closed")
    expect(app.sseRequests).toHaveLength(2)
    await app.sse.publish({ requestId: r.requestId, phase: "done" }, "gus", { event: "notify" })
    expect((await r.ended).reason).toBe("done")
  })

  it("POST failures reject with a typed error and leave no subscription", async () => {
    const app = await startApp({ keepAliveMs: 0, ...noTimestamp })
    const client = makeClient({ url: `${app.server.url}/sse?userId=hal`, eventName: "notify" })
    const timeout = client.postAndListen(`${app.server.url}/api/hang`, {}, () => {}, { timeoutMs: 100 })
    await expect(timeout).rejects.toMatchObject({ name: "SSEClientError", code: "POST_TIMEOUT" })
    const controller = new AbortController()
    const aborted = client.postAndListen(`${app.server.url}/api/hang`, {}, () => {}, { signal: controller.signal })
    await until(() => client.activeRequests().length === 1)
    controller.abort()
    await expect(aborted).rejects.toMatchObject({ code: "ABORTED" })
    const closedPort = await new Promise<number>((resolve) => {
      const s = net.createServer().listen(0, "127.0.0.1", () => {
        const port = (s.address() as AddressInfo).port
        s.close(() => resolve(port))
      })
    })
    const refused = client.postAndListen(`http://127.0.0.1:${closedPort}/api/task`, {}, () => {})
    await expect(refused).rejects.toBeInstanceOf(SSEClientError)
    await expect(refused).rejects.toMatchObject({ code: "POST_FAILED" })
    expect(client.activeRequests()).toEqual([])
    const fixed = await client.postAndListen(`${app.server.url}/api/task?userId=hal`, {}, () => {}, { requestId: "my-own-id" })
    expect(fixed.requestId).toBe("my-own-id")
    expect(app.tasks[0]!.body.requestId).toBe("my-own-id")
    await expect(client.postAndListen(`${app.server.url}/api/task?userId=hal`, {}, () => {}, { requestId: "my-own-id" }))
      .rejects.toMatchObject({ code: "DUPLICATE_REQUEST_ID" })
  })

  it("close() ends every subscription, closes the connection and refuses new requests", async () => {
    const app = await startApp({ keepAliveMs: 0, ...noTimestamp })
    const client = makeClient({ url: `${app.server.url}/sse?userId=ivy`, eventName: "notify" })
    const r = await client.postAndListen(`${app.server.url}/api/task?userId=ivy`, {}, () => {})
    expect(app.sse.getUserConnectionCount("ivy")).toBe(1)
    client.close()
    expect(await r.ended).toEqual({ requestId: r.requestId, reason: "closed", messages: 0 })
    expect(client.state).toBe("closed")
    await until(() => app.sse.getUserConnectionCount("ivy") === 0, 5_000, "the server to see the disconnect")
    await expect(client.postAndListen(`${app.server.url}/api/task?userId=ivy`, {}, () => {})).rejects.toMatchObject({ code: "CLOSED" })
    await expect(client.connect()).rejects.toMatchObject({ code: "CLOSED" })
  })

  it("needs an EventSource", () => {
    expect(() => new SSEClient({ url: "http://127.0.0.1:1/sse" })).toThrow(/EventSource/)
    expect(() => new SSEClient({ EventSource, url: "http://127.0.0.1:1/sse", expectedPingInterval: -1, autoConnect: false })).toThrow(TypeError)
  })
})

/** A `fetch` that counts the POSTs it passes on to the real one. */
const countingFetch = () => {
  const posts: Array<string> = []
  const fetchFn = (url: string, init: RequestInit): Promise<Response> => {
    posts.push(url)
    return fetch(url, init)
  }
  return { posts, fetchFn }
}

describe("ssekify/client at the edges", () => {
  it("a signal that fires while the EventSource is not open yet rejects ABORTED at once and sends nothing", async () => {
    const app = await startApp({ keepAliveMs: 0, ...noTimestamp }, { sseRequest: () => "refuse" })
    const { posts, fetchFn } = countingFetch()
    const client = makeClient({
      url: `${app.server.url}/sse?userId=jay`,
      eventName: "notify",
      // The refused EventSource is reopened only after a minute and the wait for it never
      // times out: only the signal can end the call.
      reopenDelayMs: 60_000,
      connectTimeoutMs: 0,
      fetch: fetchFn
    })
    await until(() => app.sseRequests.length === 1 && client.state === "connecting", 5_000, "the refused SSE request")
    const controller = new AbortController()
    const outcome: { value?: unknown } = {}
    client.postAndListen(`${app.server.url}/api/task?userId=jay`, {}, () => {}, { signal: controller.signal, requestId: "r-abort" })
      .then((r) => (outcome.value = r), (e: unknown) => (outcome.value = e))
    controller.abort()
    await until(() => "value" in outcome, 5_000, "the aborted postAndListen to settle")
    expect(outcome.value).toBeInstanceOf(SSEClientError)
    expect(outcome.value).toMatchObject({ code: "ABORTED", requestId: "r-abort" })
    expect(posts).toEqual([])
    expect(client.activeRequests()).toEqual([])
    expect(app.sseRequests).toHaveLength(1)
  })

  it("close() while the token is being fetched: the POST is not sent and the call rejects CLOSED", async () => {
    const app = await startApp({ keepAliveMs: 0, ...noTimestamp })
    const { posts, fetchFn } = countingFetch()
    const client = makeClient({ url: `${app.server.url}/sse?userId=kim`, eventName: "notify", fetch: fetchFn })
    const gate: { release?: (token: string) => void } = {}
    const token = () => new Promise<string>((resolve) => (gate.release = resolve))
    const pending = client.postAndListen(`${app.server.url}/api/task?userId=kim`, {}, () => {}, { token })
    await until(() => gate.release !== undefined, 5_000, "the token getter")
    expect(client.activeRequests()).toHaveLength(1)
    client.close()
    gate.release!("tok-kim")
    await expect(pending).rejects.toMatchObject({ name: "SSEClientError", code: "CLOSED" })
    expect(posts).toEqual([])
    expect(app.tasks).toEqual([])
  })

  it("a callback that throws with nobody listening to 'error' is reported on the console, and routing goes on", async () => {
    const app = await startApp({ keepAliveMs: 0, ...noTimestamp })
    const client = makeClient({
      url: `${app.server.url}/sse?userId=lea`,
      eventName: "notify",
      onBroadcast: () => {
        throw new Error("broadcast handler bug")
      }
    })
    const reported: Array<Array<unknown>> = []
    const spy = vi.spyOn(console, "error").mockImplementation((...args: Array<unknown>) => {
      reported.push(args)
    })
    cleanup.push(() => spy.mockRestore())
    const phases: Array<unknown> = []
    const r = await client.postAndListen(`${app.server.url}/api/task?userId=lea`, {}, (m) => {
      phases.push(m.phase)
      throw new Error(`message handler bug (${String(m.phase)})`)
    })
    await app.sse.publish({ requestId: r.requestId, phase: "progress" }, "lea", { event: "notify" })
    await app.sse.publish({ type: "announcement" }, "lea", { event: "notify" })
    await app.sse.publish({ requestId: r.requestId, phase: "done" }, "lea", { event: "notify" })
    expect(await r.ended).toEqual({ requestId: r.requestId, reason: "done", messages: 2 })
    expect(phases).toEqual(["progress", "done"])
    await until(() => reported.length === 3, 5_000, "the three errors on the console")
    expect(reported.map((args) => (args.at(-1) as Error).message)).toEqual([
      "message handler bug (progress)",
      "broadcast handler bug",
      "message handler bug (done)"
    ])
  })

  it("a requestId that is not a non-empty string is refused before anything is sent", async () => {
    const app = await startApp({ keepAliveMs: 0, ...noTimestamp })
    const { posts, fetchFn } = countingFetch()
    const client = makeClient({
      url: `${app.server.url}/sse?userId=max`,
      eventName: "notify",
      fetch: fetchFn,
      // A JavaScript caller's counter: frames carrying a number never match a subscription.
      generateRequestId: () => 42 as unknown as string
    })
    const task = `${app.server.url}/api/task?userId=max`
    await expect(client.postAndListen(task, {}, () => {})).rejects.toThrow(TypeError)
    await expect(client.postAndListen(task, {}, () => {}, { requestId: "" })).rejects.toThrow(/non-empty string/)
    expect(posts).toEqual([])
    expect(client.activeRequests()).toEqual([])
    const r = await client.postAndListen(task, {}, () => {}, { requestId: "max-1" })
    expect(r.response.status).toBe(200)
    expect(app.tasks.map((t) => t.body.requestId)).toEqual(["max-1"])
  })

  it("connect() reports an EventSource that cannot be constructed as a rejection, not a synchronous throw", async () => {
    const client = makeClient({ url: "http://[not-a-host", autoConnect: false })
    const call: { connecting?: Promise<void> } = {}
    expect(() => {
      call.connecting = client.connect()
    }).not.toThrow()
    await expect(call.connecting).rejects.toMatchObject({ name: "SyntaxError" })
    expect(client.state).toBe("idle")
  })
})
