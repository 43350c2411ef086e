/**
 * The `@effect/platform` endpoint (`ssekify/platform`, module `HttpSse`) on a real
 * `NodeHttpServer` on 127.0.0.1, with real clients (raw `http.get` and the
 * `eventsource` package): headers, `retry:`, delivery, heartbeats under TestClock,
 * Last-Event-ID replay, backpressure with a client that stops reading (each
 * dropPolicy), refusals (503 / 400 / 429), the connection released when the client
 * goes, ended when the hub closes it, and shutdown before the HTTP server's release.
 */
import { HttpRouter, HttpServer, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Context, Effect, Exit, Fiber, Layer, Scope, Stream, TestClock } from "effect"
import { EventSource } from "eventsource"
import { type ChildProcess, spawn } from "node:child_process"
import * as http from "node:http"
import type { Socket } from "node:net"
import * as path from "node:path"
import { it as itVitest } from "vitest"
import type { DropPolicy } from "../src/Connection.js"
import * as HttpSse from "../src/HttpSse.js"
import { SseKify, Transport } from "../src/index.js"
import { loadApi } from "./examples/harness.js"
import { freePort, redisAvailable, startRedis } from "./support/redisServer.js"
import { connect, type RawClient, request, until } from "./support/sse.js"

// ---------------------------------------------------------------------------
// harness
// ---------------------------------------------------------------------------

interface Served {
  readonly url: string
  readonly sse: SseKify.SseKifyService
  /** Server-side sockets, to cut a client off as a network failure would. */
  readonly sockets: Set<Socket>
}

/**
 * Serves `app` with an SseKify instance and `NodeHttpServer` on 127.0.0.1, composed as
 * the docs say: SseKify provided before the server, so it is released first. Built in
 * `scope` (the test's, unless given).
 */
const serve = <E>(
  app: HttpRouter.HttpRouter<E, SseKify.SseKify>,
  options?: SseKify.LayerOptions,
  scope?: Scope.Scope
) =>
  Effect.gen(function*() {
    const sockets = new Set<Socket>()
    const nodeServer = NodeHttpServer.layer(() => {
      const server = http.createServer()
      server.on("connection", (socket) => {
        sockets.add(socket)
        socket.on("close", () => sockets.delete(socket))
      })
      return server
    }, { port: 0, host: "127.0.0.1" })
    const sseLayer = SseKify.layer({ shutdown: { announce: false, graceMs: 0 }, ...options }).pipe(
      Layer.provide(Transport.layerNone)
    )
    const layer = HttpServer.serve(app).pipe(
      Layer.provideMerge(sseLayer),
      Layer.provideMerge(nodeServer)
    )
    const context = scope === undefined ? yield* Layer.build(layer) : yield* Layer.buildWithScope(layer, scope)
    const address = Context.get(context, HttpServer.HttpServer).address
    if (address._tag !== "TcpAddress") throw new Error("expected a TCP address")
    const served: Served = {
      url: `http://127.0.0.1:${address.port}`,
      sse: Context.get(context, SseKify.SseKify),
      sockets
    }
    return served
  })

const open = (url: string, headers?: Record<string, string>) =>
  Effect.acquireRelease(
    Effect.promise(() => connect(url, headers ? { headers } : undefined)),
    (client) => Effect.sync(() => client.close())
  )

const waitFor = (client: RawClient, predicate: (c: RawClient) => boolean, what?: string, timeoutMs = 5_000) =>
  Effect.promise(() => client.waitFor(predicate, timeoutMs, what))

const opened = (client: RawClient) => waitFor(client, (c) => c.text().includes("retry:"), "retry:")

const waitUntil = (predicate: () => boolean, what: string, timeoutMs = 5_000) =>
  Effect.promise(() => until(predicate, timeoutMs, what))

/** A router with the convenience handler on /sse. */
const sseApp = (options?: HttpSse.HandlerOptions) => HttpRouter.empty.pipe(HttpRouter.get("/sse", HttpSse.handler(options)))

// ---------------------------------------------------------------------------
// tests
// ---------------------------------------------------------------------------

describe("HttpSse on NodeHttpServer", () => {
  it.scopedLive("sends the SSE headers, retry: and delivers to a user, a room and everyone", () =>
    Effect.gen(function*() {
      const { sse, url } = yield* serve(
        sseApp({ rooms: ["global"], headers: { "Access-Control-Allow-Origin": "*", "X-Count": 3 } }),
        { retryMs: 1234, keepAliveMs: 0, autoFields: { timestamp: false } }
      )
      const alice = yield* open(`${url}/sse?userId=alice`)
      expect(alice.status).toBe(200)
      expect(alice.headers["content-type"]).toBe("text/event-stream; charset=utf-8")
      expect(alice.headers["cache-control"]).toBe("no-cache, no-transform")
      expect(alice.headers["connection"]).toBe("keep-alive")
      expect(alice.headers["x-accel-buffering"]).toBe("no")
      expect(alice.headers["access-control-allow-origin"]).toBe("*")
      expect(alice.headers["x-count"]).toBe("3")
      expect(alice.headers["content-length"]).toBeUndefined()
      yield* opened(alice)
      expect(alice.text()).toBe("retry: 1234\n\n")
      yield* waitUntil(() => Effect.runSync(sse.isUserOnline("alice")), "alice registered")

      expect(yield* sse.sendToUser("alice", { n: 1 }, { event: "notify", id: "1" })).toBe(1)
      expect(yield* sse.sendToRoom("global", { n: 2 }, { event: "room" })).toBe(1)
      expect(yield* sse.sendToAll("three")).toBe(1)
      yield* sse.publish({ n: 4 }, "alice", { event: "pub" })
      yield* waitFor(alice, (c) => c.messages().length === 4, "4 messages")
      expect(alice.text()).toBe(
        "retry: 1234\n\n" +
          "id: 1\nevent: notify\ndata: {\"n\":1}\n\n" +
          "event: room\ndata: {\"n\":2}\n\n" +
          "data: \"three\"\n\n" +
          "event: pub\ndata: {\"n\":4}\n\n"
      )
      const stats = yield* sse.stats
      expect(stats).toMatchObject({ connections: 1, users: 1, rooms: 1 })
    }))

  it.scopedLive("on NodeHttpServer the hub writes to the Node response as on the Node path: a tick's first frame at once, the rest in one write", () =>
    Effect.gen(function*() {
      const { sse, url } = yield* serve(sseApp(), { keepAliveMs: 0, autoFields: { timestamp: false } })
      const alice = yield* open(`${url}/sse?userId=alice`)
      yield* opened(alice)
      yield* waitUntil(() => Effect.runSync(sse.isUserOnline("alice")), "alice registered")
      const writes: Array<number> = []
      const write = http.ServerResponse.prototype.write
      yield* Effect.acquireRelease(
        Effect.sync(() => {
          http.ServerResponse.prototype.write = function(this: http.ServerResponse, ...args: Parameters<typeof write>) {
            if (this.req.url?.startsWith("/sse") === true) writes.push(Buffer.byteLength(args[0] as Uint8Array))
            return write.apply(this, args)
          } as typeof write
        }),
        () => Effect.sync(() => void (http.ServerResponse.prototype.write = write))
      )
      yield* Effect.sync(() => {
        for (let i = 0; i < 50; i++) Effect.runSync(sse.sendToUser("alice", i))
      })
      yield* waitFor(alice, (c) => c.messages().length === 50, "50 messages")
      expect(alice.messages().map((m) => Number(m.data))).toEqual(Array.from({ length: 50 }, (_, i) => i))
      expect(writes).toEqual([Buffer.byteLength("data: 0\n\n"), 481])
    }))

  it.scopedLive("works with the eventsource client: named events, ids, reconnect with Last-Event-ID and replay", () =>
    Effect.gen(function*() {
      const { sockets, sse, url } = yield* serve(sseApp(), { retryMs: 50, keepAliveMs: 0 })
      const es = yield* Effect.acquireRelease(
        Effect.sync(() => new EventSource(`${url}/sse?userId=erin`)),
        (es) => Effect.sync(() => es.close())
      )
      const got: Array<[string, string, string]> = []
      es.addEventListener("notify", (e) => got.push(["notify", e.lastEventId, JSON.parse(e.data).text]))
      let opens = 0
      es.addEventListener("open", () => opens++)
      yield* waitUntil(() => opens === 1 && Effect.runSync(sse.isUserOnline("erin")), "open")
      yield* sse.sendToUser("erin", { text: "a" }, { event: "notify", id: "1" })
      yield* sse.sendToUser("erin", { text: "b" }, { event: "notify", id: "2" })
      yield* waitUntil(() => got.length === 2, "two events")
      // Recorded but never written: the socket dies (as in a network failure) before the flush.
      yield* sse.sendToUser("erin", { text: "missed" }, { event: "notify", id: "3" })
      for (const socket of sockets) socket.destroy()
      yield* waitUntil(() => opens === 2, "reconnected")
      yield* waitUntil(() => got.length === 3, "replayed event")
      yield* sse.sendToUser("erin", { text: "live" }, { event: "notify", id: "4" })
      yield* waitUntil(() => got.length === 4, "live event")
      expect(got).toEqual([["notify", "1", "a"], ["notify", "2", "b"], ["notify", "3", "missed"], ["notify", "4", "live"]])
      expect((yield* sse.stats).replayed).toBe(1)
    }))

  it.scopedLive("replays after Last-Event-ID from the header, ?lastEventId= and ?last-event-id=", () =>
    Effect.gen(function*() {
      const { sse, url } = yield* serve(sseApp(), { keepAliveMs: 0, autoFields: { timestamp: false } })
      const first = yield* open(`${url}/sse?userId=bob`)
      yield* opened(first)
      yield* waitUntil(() => Effect.runSync(sse.isUserOnline("bob")), "bob registered")
      for (let i = 1; i <= 4; i++) yield* sse.sendToUser("bob", `m${i}`, { id: `e${i}` })
      yield* waitFor(first, (c) => c.messages().length === 4, "4 messages")

      const header = yield* open(`${url}/sse?userId=bob`, { "Last-Event-ID": "e2" })
      const query1 = yield* open(`${url}/sse?userId=bob&lastEventId=e3`)
      const query2 = yield* open(`${url}/sse?userId=bob&last-event-id=e1`)
      yield* waitFor(header, (c) => c.messages().length === 2, "header replay")
      yield* waitFor(query1, (c) => c.messages().length === 1, "query replay")
      yield* waitFor(query2, (c) => c.messages().length === 3, "query replay 2")
      expect(header.messages().map((m) => [m.id, m.data])).toEqual([["e3", "\"m3\""], ["e4", "\"m4\""]])
      expect(query1.messages().map((m) => m.data)).toEqual(["\"m4\""])
      expect(query2.messages().map((m) => m.data)).toEqual(["\"m2\"", "\"m3\"", "\"m4\""])
      // replayed frames come after retry: and before live frames
      yield* sse.sendToUser("bob", "live", { id: "e5" })
      yield* waitFor(header, (c) => c.messages().length === 3, "live after replay")
      expect(header.text().startsWith("retry: 2000\n\nid: e3\n")).toBe(true)
      expect(header.messages().at(-1)!.data).toBe("\"live\"")
      expect((yield* sse.stats).replayed).toBe(6)
    }))

  it.scoped("heartbeats follow the Clock (TestClock)", () =>
    Effect.gen(function*() {
      const { url } = yield* serve(sseApp(), { keepAliveMs: 10_000 })
      const client = yield* open(`${url}/sse?userId=dave`)
      yield* opened(client)
      yield* TestClock.adjust("9 seconds")
      expect(client.text()).not.toContain(": ping")
      yield* TestClock.adjust("1 second")
      yield* waitFor(client, (c) => (c.text().match(/^: ping \d+$/gm) ?? []).length === 1, "first ping")
      yield* TestClock.adjust("20 seconds")
      yield* waitFor(client, (c) => (c.text().match(/^: ping \d+$/gm) ?? []).length === 3, "three pings")
    }))

  it.scopedLive("answers 503 + Retry-After while not accepting or full, 400 on invalid input, 429 over the per-user limit", () =>
    Effect.gen(function*() {
      const app = HttpRouter.empty.pipe(
        HttpRouter.get("/sse", HttpSse.handler()),
        HttpRouter.get("/bad", HttpSse.handler({ dropPolicy: "sometimes" as DropPolicy })),
        HttpRouter.get("/typed", HttpSse.respond("").pipe(Effect.catchAll((e) => HttpServerResponse.text(e._tag, { status: 418 }))))
      )
      const { sse, url } = yield* serve(app, { maxConnectionsPerUser: 1, maxConnections: 2 })
      const errors: Array<string> = []
      yield* sse.events.pipe(
        Stream.runForEach((e) => Effect.sync(() => e.type === "error" && errors.push((e.payload as { _tag?: string })._tag ?? ""))),
        Effect.forkScoped
      )
      yield* Effect.yieldNow()

      const noUser = yield* Effect.promise(() => request(`${url}/sse`))
      expect(noUser.status).toBe(400)
      expect(noUser.body).toBe("userId required")
      const badOption = yield* Effect.promise(() => request(`${url}/bad?userId=x`))
      expect(badOption.status).toBe(400)
      expect(badOption.body).toBe("invalid SSE connection options")
      const typed = yield* Effect.promise(() => request(`${url}/typed`))
      expect([typed.status, typed.body]).toEqual([418, "InvalidInput"])

      const first = yield* open(`${url}/sse?userId=lim`)
      yield* opened(first)
      const second = yield* Effect.promise(() => request(`${url}/sse?userId=lim`))
      expect([second.status, second.body]).toEqual([429, "Too many connections for this user"])
      const other = yield* open(`${url}/sse?userId=other`)
      yield* opened(other)
      const third = yield* Effect.promise(() => request(`${url}/sse?userId=third`))
      expect([third.status, third.body, third.headers["retry-after"]]).toEqual([503, "Too many connections", "2"])

      yield* sse.stopAccepting
      const refused = yield* Effect.promise(() => request(`${url}/sse?userId=late`))
      expect(refused.status).toBe(503)
      expect(refused.headers["retry-after"]).toBe("2")
      expect(refused.body).toBe("Server is shutting down")
      // open connections stay
      expect(yield* sse.sendToUser("lim", "still here")).toBe(1)
      yield* waitFor(first, (c) => c.messages().length === 1)
      expect((yield* sse.stats).connections).toBe(2)
      yield* waitUntil(() => errors.length >= 5, "error events")
      expect(errors).toEqual(["InvalidInput", "InvalidInput", "InvalidInput", "LimitExceeded", "LimitExceeded"])
    }))

  it.scopedLive("the client going away removes the connection", () =>
    Effect.gen(function*() {
      const { sse, url } = yield* serve(sseApp({ rooms: ["r"] }))
      const a = yield* open(`${url}/sse?userId=ann`)
      const b = yield* open(`${url}/sse?userId=ann`)
      yield* opened(a)
      yield* opened(b)
      yield* waitUntil(() => Effect.runSync(sse.getUserConnectionCount("ann")) === 2, "two connections")
      a.close()
      yield* waitUntil(() => Effect.runSync(sse.getUserConnectionCount("ann")) === 1, "one released")
      b.close()
      yield* waitUntil(() => Effect.runSync(sse.stats).connections === 0, "all released")
      expect(yield* sse.stats).toMatchObject({ connections: 0, users: 0, rooms: 0 })
    }))

  it.scopedLive("sse.close(userId) and the handle end the stream; onConnect gets the handle", () =>
    Effect.gen(function*() {
      const handles: Array<{ connId: string; join: (room: string) => boolean; close: () => void }> = []
      const app = HttpRouter.empty.pipe(
        HttpRouter.get(
          "/sse",
          HttpSse.handler({ onConnect: (handle) => Effect.sync(() => handles.push(handle)) })
        )
      )
      const { sse, url } = yield* serve(app, { keepAliveMs: 0 })
      const a = yield* open(`${url}/sse?userId=kim`)
      const b = yield* open(`${url}/sse?userId=lee`)
      yield* opened(a)
      yield* opened(b)
      yield* waitUntil(() => handles.length === 2, "handles")
      expect(yield* sse.getUserConnectionIds("kim")).toEqual([handles[0]!.connId])
      expect(handles[1]!.join("late-room")).toBe(true)
      expect(yield* sse.sendToRoom("late-room", "hello room")).toBe(1)
      yield* waitFor(b, (c) => c.messages().length === 1)

      // a send right before the close still arrives, then the stream ends
      yield* sse.sendToUser("kim", "bye")
      yield* sse.close("kim")
      yield* Effect.promise(() => a.ended())
      expect(a.messages().map((m) => m.data)).toEqual(["\"bye\""])
      expect(yield* sse.isUserOnline("kim")).toBe(false)

      handles[1]!.close()
      yield* Effect.promise(() => b.ended())
      expect((yield* sse.stats).connections).toBe(0)
    }))

  it.scopedLive("HttpSse.stream builds a body for a custom response", () =>
    Effect.gen(function*() {
      const app = HttpRouter.empty.pipe(
        HttpRouter.get(
          "/custom",
          Effect.gen(function*() {
            const req = yield* HttpServerRequest.HttpServerRequest
            const body = yield* HttpSse.stream("zed", { lastEventId: HttpSse.lastEventIdOf(req), keepAliveMs: 0 })
            return HttpServerResponse.stream(body, { headers: { ...HttpSse.headers, "x-custom": "1" } })
          }).pipe(Effect.catchAll(HttpSse.errorResponse))
        )
      )
      const { sse, url } = yield* serve(app, { autoFields: { timestamp: false } })
      const c = yield* open(`${url}/custom`)
      yield* opened(c)
      expect(c.headers["x-custom"]).toBe("1")
      expect(c.headers["content-type"]).toBe("text/event-stream; charset=utf-8")
      yield* waitUntil(() => Effect.runSync(sse.isUserOnline("zed")), "zed")
      yield* sse.sendToUser("zed", 42)
      yield* waitFor(c, (x) => x.messages().map((m) => m.data).join() === "42")
    }))

  describe("backpressure with a client that stops reading", () => {
    const FRAME = 16 * 1024
    const payload = (n: number) => String(n).padStart(8, "0") + "x".repeat(FRAME - 8)
    const numbers = (c: RawClient) => c.messages().map((m) => Number(m.data.slice(0, 8)))

    const setup = (dropPolicy: DropPolicy, limits: { maxQueueItems?: number; maxQueueBytes?: number }) =>
      Effect.gen(function*() {
        const { sse, url } = yield* serve(sseApp({ dropPolicy, ...limits }), {
          keepAliveMs: 0,
          autoFields: { timestamp: false },
          serializer: (d) => String(d)
        })
        const slow = yield* open(`${url}/sse?userId=slow`)
        const healthy = yield* open(`${url}/sse?userId=healthy`)
        yield* opened(slow)
        yield* opened(healthy)
        yield* waitUntil(() => Effect.runSync(sse.stats).connections === 2, "both registered")
        slow.response.pause()
        return { healthy, slow, sse }
      })

    /** Paced sends (one per macrotask, so healthy sockets drain) until `done`. */
    const sendUntil = (sse: SseKify.SseKifyService, done: () => boolean) =>
      Effect.promise(async () => {
        let n = 0
        while (!done()) {
          if (n >= 4_000) throw new Error(`no backpressure after ${n} frames`)
          Effect.runSync(sse.sendToAll(payload(n++)))
          await new Promise((r) => setImmediate(r))
        }
        return n
      })

    const stats = (sse: SseKify.SseKifyService) => Effect.runSync(sse.stats)

    it.scopedLive("'oldest' keeps the newest frames, in order, exactly once", () =>
      Effect.gen(function*() {
        const { healthy, slow, sse } = yield* setup("oldest", { maxQueueItems: 10 })
        const sent = yield* sendUntil(sse, () => stats(sse).droppedOldest >= 20)
        expect(stats(sse).queueItemsMax).toBe(10)
        slow.response.resume()
        yield* waitFor(slow, (c) => numbers(c).at(-1) === sent - 1, "last frame", 10_000)
        const got = numbers(slow)
        expect(got).toEqual([...got].sort((a, b) => a - b))
        expect(new Set(got).size).toBe(got.length)
        expect(got.length).toBe(sent - stats(sse).droppedOldest)
        expect(got.slice(-10)).toEqual(Array.from({ length: 10 }, (_, i) => sent - 10 + i))
        yield* waitFor(healthy, (c) => c.messages().length === sent, "healthy got all", 10_000)
        expect(numbers(healthy)).toEqual(Array.from({ length: sent }, (_, i) => i))
        expect(stats(sse).connections).toBe(2)
      }))

    it.scopedLive("'newest' keeps the queued frames and drops new ones; the queue drains", () =>
      Effect.gen(function*() {
        const frameBytes = Buffer.byteLength(`data: ${payload(0)}\n\n`)
        const { slow, sse } = yield* setup("newest", { maxQueueItems: 1000, maxQueueBytes: 6 * frameBytes - 1 })
        const sent = yield* sendUntil(sse, () => stats(sse).droppedNewest >= 20)
        expect(stats(sse).queueItemsMax).toBe(5)
        expect(stats(sse).queueBytesMax).toBe(5 * frameBytes)
        slow.response.resume()
        const expected = sent - stats(sse).droppedNewest
        yield* waitFor(slow, (c) => c.messages().length === expected, `${expected} frames`, 10_000)
        expect(numbers(slow)).toEqual(Array.from({ length: expected }, (_, i) => i))
        yield* sse.sendToUser("slow", payload(sent))
        yield* waitFor(slow, (c) => numbers(c).at(-1) === sent, "frames flow again")
      }))

    it.scopedLive("'disconnect' removes the connection with an error event and ends the stream", () =>
      Effect.gen(function*() {
        const { healthy, slow, sse } = yield* setup("disconnect", { maxQueueItems: 5 })
        const errors: Array<string> = []
        yield* sse.events.pipe(
          Stream.runForEach((e) => Effect.sync(() => e.type === "error" && errors.push(e.payload.message))),
          Effect.forkScoped
        )
        yield* Effect.yieldNow()
        const sent = yield* sendUntil(sse, () => stats(sse).disconnectedByBackpressure === 1)
        expect(yield* sse.isUserOnline("slow")).toBe(false)
        expect(yield* sse.isUserOnline("healthy")).toBe(true)
        yield* waitUntil(() => errors.length === 1, "error event")
        expect(errors[0]).toMatch(/^backpressure: queue limit exceeded, disconnecting /)
        slow.response.resume()
        yield* Effect.promise(() => slow.ended(10_000))
        yield* waitFor(healthy, (c) => c.messages().length === sent, "healthy got all", 10_000)
      }))
  })

  describe("shutdown before the HTTP server's release (Effect-TS/effect#3922)", () => {
    it.scopedLive("closing a scope with NodeHttpServer + SseKify and open streams ends them and closes promptly", () =>
      Effect.gen(function*() {
        const scope = yield* Scope.make()
        const { sse, url } = yield* serve(sseApp(), { shutdown: { announce: true, graceMs: 0 } }, scope)
        const clients = yield* Effect.forEach(
          Array.from({ length: 50 }, (_, i) => i),
          (i) => open(`${url}/sse?userId=u${i}`),
          { concurrency: 10 }
        )
        yield* Effect.forEach(clients, opened, { discard: true })
        yield* waitUntil(() => Effect.runSync(sse.stats).connections === 50, "50 connections")
        const started = Date.now()
        const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
        const result = yield* Fiber.await(closing).pipe(Effect.timeout("4 seconds"), Effect.option)
        const elapsed = Date.now() - started
        expect(result._tag).toBe("Some")
        // far below the 5 s keep-alive timeout a lingering socket would wait for
        expect(elapsed).toBeLessThan(2_000)
        yield* Effect.forEach(clients, (c) => Effect.promise(() => c.ended()), { discard: true })
        for (const c of clients) expect(c.messages().map((m) => m.event)).toEqual(["server:shutdown"])
        // the server is really closed
        const refused = yield* Effect.promise(() => request(`${url}/sse?userId=x`).then(() => false, () => true))
        expect(refused).toBe(true)
      }))

    it.scopedLive("a client that stopped reading does not hold the server's close", () =>
      Effect.gen(function*() {
        const scope = yield* Scope.make()
        const { sse, url } = yield* serve(sseApp(), { keepAliveMs: 0 }, scope)
        const stuck = yield* open(`${url}/sse?userId=stuck`)
        const fine = yield* open(`${url}/sse?userId=fine`)
        yield* opened(stuck)
        yield* opened(fine)
        stuck.response.pause()
        // fill the socket buffers and the connection's queue
        yield* Effect.promise(async () => {
          for (let i = 0; i < 4_000 && Effect.runSync(sse.stats).droppedOldest === 0; i++) {
            Effect.runSync(sse.sendToAll("x".repeat(16 * 1024)))
            await new Promise((r) => setImmediate(r))
          }
        })
        expect((yield* sse.stats).droppedOldest).toBeGreaterThan(0)
        const started = Date.now()
        const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
        const result = yield* Fiber.await(closing).pipe(Effect.timeout("4 seconds"), Effect.option)
        expect(result._tag).toBe("Some")
        expect(Date.now() - started).toBeLessThan(2_000)
        yield* Effect.promise(() => fine.ended())
      }))

    it.scoped("the grace period runs on the Clock; streams end when it is over", () =>
      Effect.gen(function*() {
        const scope = yield* Scope.make()
        const { url } = yield* serve(sseApp(), { shutdown: { announce: true, graceMs: 3_000 } }, scope)
        const client = yield* open(`${url}/sse?userId=g`)
        yield* opened(client)
        const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
        yield* waitFor(client, (c) => c.messages().some((m) => m.event === "server:shutdown"), "announcement")
        expect(client.isEnded()).toBe(false)
        yield* TestClock.adjust("3 seconds")
        yield* Effect.promise(() => client.ended())
        yield* Fiber.join(closing)
      }))
  })
})

// ---------------------------------------------------------------------------
// examples/effect/server.ts, as a child process
// ---------------------------------------------------------------------------

interface Child {
  readonly url: string
  readonly output: () => string
  /** SIGTERM; resolves with the ms until the process exited. */
  readonly stop: () => Promise<number>
}

const children = new Set<ChildProcess>()

/** Starts the Effect example with tsx on a free loopback port; waits for its "listening on" line. */
const startEffectExample = async (env: Record<string, string> = {}): Promise<Child> => {
  const port = await freePort()
  const childEnv: Record<string, string | undefined> = {
    ...process.env,
    PORT: String(port),
    HOST: "127.0.0.1",
    SSEKIFY_SHUTDOWN_GRACE_MS: "200",
    ...env
  }
  for (const key of ["REDIS_URL", "REDIS_CLUSTER_NODES", "REDIS_SENTINELS"]) if (env[key] === undefined) delete childEnv[key]
  const child = spawn(process.execPath, ["--import", "tsx", "examples/effect/server.ts"], {
    cwd: path.resolve(__dirname, ".."),
    env: childEnv,
    stdio: ["ignore", "pipe", "pipe"]
  })
  children.add(child)
  let output = ""
  child.stdout!.on("data", (d: Buffer) => (output += d.toString()))
  child.stderr!.on("data", (d: Buffer) => (output += d.toString()))
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()))
  await until(() => /listening on http:\/\/127\.0\.0\.1:\d+/.test(output) || child.exitCode !== null, 30_000, "example start")
  if (child.exitCode !== null) throw new Error(`examples/effect/server.ts exited (${child.exitCode}):\n${output}`)
  return {
    url: `http://127.0.0.1:${port}`,
    output: () => output,
    stop: async () => {
      const started = Date.now()
      child.kill("SIGTERM")
      await exited
      children.delete(child)
      return Date.now() - started
    }
  }
}

afterAll(() => {
  for (const child of children) child.kill("SIGKILL")
})

const dataOf = (c: RawClient) => c.messages().map((m) => [m.event, m.id, JSON.parse(m.data).msg])

describe("examples/effect/server.ts", () => {
  itVitest("serves every request of its api.http and shuts down promptly on SIGTERM", async () => {
    const example = await startEffectExample()
    const api = loadApi("examples/effect/api.http", { host: example.url })
    const alice = await api.open("Open an SSE connection as alice")
    const bob = await api.open("Open an SSE connection as bob")
    try {
      expect(alice.headers["content-type"]).toBe("text/event-stream; charset=utf-8")
      await alice.waitFor((c) => c.text().includes("retry:"))
      await bob.waitFor((c) => c.text().includes("retry:"))
      expect((await api.send("Notify alice (frame id 1)")).json()).toEqual({ delivered: 1 })
      expect((await api.send("Notify alice again (frame id 2)")).json()).toEqual({ delivered: 1 })
      expect((await api.send("Broadcast to everyone (publish: every instance)")).json()).toEqual({ ok: true })
      expect((await api.send("Send to room global (this instance)")).json()).toEqual({ delivered: 2 })
      expect((await api.send("Publish to room global (every instance)")).json()).toEqual({ ok: true })
      await alice.waitFor((c) => c.messages().length === 5, 5_000, "alice's 5 events")
      await bob.waitFor((c) => c.messages().length === 3, 5_000, "bob's 3 events")
      expect(dataOf(alice)).toEqual([
        ["notify", "1", "hi alice"],
        ["notify", "2", "second"],
        ["broadcast", undefined, "hello everyone"],
        ["room", undefined, "hello room"],
        ["room", undefined, "hello room, everywhere"]
      ])
      expect(dataOf(bob).map(([event]) => event)).toEqual(["broadcast", "room", "room"])

      const again = await api.open("Reconnect as alice after event 1 (Last-Event-ID replay)")
      await again.waitFor((c) => c.messages().length === 1, 5_000, "replay")
      expect(dataOf(again)).toEqual([["notify", "2", "second"]])

      const stats = (await api.send("Stats")).json()
      expect(stats).toMatchObject({ connections: 3, users: 2, rooms: 1, replayed: 1, accepting: true })
      expect((await api.send("Readiness probe")).status).toBe(200)

      expect((await api.send("Close alice's connections")).json()).toEqual({ closed: true })
      await alice.ended()
      await again.ended()
      expect(api.unused()).toEqual([])

      // SIGTERM: the announcement, the stream's end, and the process exits (grace 200 ms).
      const ms = await example.stop()
      expect(bob.messages().at(-1)!.event).toBe("server:shutdown")
      await bob.ended()
      expect(ms).toBeLessThan(3_000)
    } finally {
      alice.close()
      bob.close()
    }
  }, 60_000)

  itVitest.skipIf(!redisAvailable())("with REDIS_URL, publish reaches a client of another instance", async () => {
    const redis = await startRedis()
    try {
      const a = await startEffectExample({ REDIS_URL: redis.url })
      const b = await startEffectExample({ REDIS_URL: redis.url })
      const onB = await connect(`${b.url}/sse?userId=carol`)
      try {
        await onB.waitFor((c) => c.text().includes("retry:"))
        const viaA = await request(`${a.url}/broadcast`, { body: { msg: "from a" } })
        expect(JSON.parse(viaA.body)).toEqual({ ok: true })
        await request(`${a.url}/publish-room/global`, { body: { msg: "room from a" } })
        await onB.waitFor((c) => c.messages().length === 2, 5_000, "cross-instance events")
        expect(dataOf(onB)).toEqual([["broadcast", undefined, "from a"], ["room", undefined, "room from a"]])
        expect(JSON.parse((await request(`${b.url}/stats`)).body)).toMatchObject({ received: 2 })
        expect(JSON.parse((await request(`${a.url}/stats`)).body)).toMatchObject({ published: 2 })
      } finally {
        onB.close()
        await a.stop()
        await b.stop()
      }
    } finally {
      await redis.stop()
    }
  }, 60_000)
})
