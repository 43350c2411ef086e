/**
 * The fast path of the `@effect/platform` endpoint on a real `NodeHttpServer` on
 * 127.0.0.1 with real clients: the hub takes the Node response over and the request's
 * fiber ends (the platform's logger middleware sees the request done while the
 * connection stays open), with the status, headers and cookies the platform would have
 * sent (middleware included); a response replaced after `respond`, or a HEAD request,
 * registers nothing; the portable path (a `Stream` body) still serves other servers
 * (`HttpApp.toWebHandlerLayer`).
 */
import { HttpApp, HttpMiddleware, HttpRouter, HttpServer, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { NodeHttpServer, NodeHttpServerRequest } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Context, Effect, Layer, Logger } from "effect"
import * as http from "node:http"
import * as HttpSse from "../src/HttpSse.js"
import { SseKify, Transport } from "../src/index.js"
import { connect, type RawClient, request, until } from "./support/sse.js"

const sseLayer = SseKify.layer({ keepAliveMs: 0, autoFields: { timestamp: false }, shutdown: { graceMs: 0 } }).pipe(
  Layer.provide(Transport.layerNone)
)

/** Serves `served` (a layer needing HttpServer and SseKify) on 127.0.0.1 in the test's scope. */
const serveLayer = (served: Layer.Layer<never, never, HttpServer.HttpServer | SseKify.SseKify>, extra = Layer.empty) =>
  Effect.gen(function*() {
    const layer = served.pipe(
      Layer.provide(extra),
      Layer.provideMerge(sseLayer),
      Layer.provideMerge(NodeHttpServer.layer(() => http.createServer(), { port: 0, host: "127.0.0.1" }))
    )
    const context = yield* Layer.build(layer)
    const address = Context.get(context, HttpServer.HttpServer).address
    if (address._tag !== "TcpAddress") throw new Error("expected a TCP address")
    return { url: `http://127.0.0.1:${address.port}`, sse: Context.get(context, SseKify.SseKify) }
  })

const open = (url: string, headers?: Record<string, string>) =>
  Effect.acquireRelease(
    Effect.promise(() => connect(url, headers ? { headers } : undefined)),
    (client) => Effect.sync(() => client.close())
  )

const opened = (client: RawClient) => Effect.promise(() => client.waitFor((c) => c.text().includes("retry:"), 5_000, "retry:"))
const waitUntil = (predicate: () => boolean, what: string) => Effect.promise(() => until(predicate, 5_000, what))

describe("HttpSse fast path on NodeHttpServer", () => {
  it.scopedLive("the request's fiber is done while the connection stays open (the logger middleware logs it)", () =>
    Effect.gen(function*() {
      const logged: Array<unknown> = []
      const testLogger = Logger.make(({ annotations, message }) => {
        const status = [...annotations].find(([key]) => key === "http.status")
        logged.push({ message, status: status?.[1] })
      })
      const app = HttpRouter.empty.pipe(HttpRouter.get("/sse", HttpSse.handler()))
      const { sse, url } = yield* serveLayer(
        HttpServer.serve(app, HttpMiddleware.logger),
        Logger.replace(Logger.defaultLogger, testLogger)
      )
      const client = yield* open(`${url}/sse?userId=alice`)
      yield* opened(client)
      yield* waitUntil(() => logged.length > 0, "the request logged")
      expect(logged).toEqual([{ message: ["Sent HTTP response"], status: 200 }])
      expect(client.isEnded()).toBe(false)
      expect(yield* sse.sendToUser("alice", "still open")).toBe(1)
      yield* Effect.promise(() => client.waitFor((c) => c.messages().length === 1, 5_000, "a message"))
      expect(client.messages()[0]!.data).toBe("\"still open\"")
    }))

  it.scopedLive("once handed off, the platform's abort listener (which holds the finished fiber) is gone", () =>
    Effect.gen(function*() {
      let res: http.ServerResponse | undefined
      const route = Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => {
        res = NodeHttpServerRequest.toServerResponse(request)
        return HttpSse.respond("alice")
      }).pipe(Effect.orDie)
      const app = HttpRouter.empty.pipe(HttpRouter.get("/sse", route))
      const { sse, url } = yield* serveLayer(HttpServer.serve(app))
      const client = yield* open(`${url}/sse`)
      yield* opened(client)
      yield* Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve)))
      const sources = res!.listeners("close").map((listener) => String(listener))
      expect(sources.length).toBeGreaterThan(0) // the hub's
      expect(sources.filter((source) => source.includes("unsafeInterruptAsFork"))).toEqual([])
      // the client leaving is still seen (by the hub)
      client.close()
      yield* waitUntil(() => Effect.runSync(sse.stats).connections === 0, "connection removed")
    }))

  for (const helper of [false, true]) {
    it.scopedLive(`status, headers and cookies as the platform sends them: middleware included (${helper ? "HttpSse.serve" : "HttpServer.serve"})`, () =>
      Effect.gen(function*() {
        const route = HttpSse.respond("alice", { headers: { "X-Own": "1" } }).pipe(
          Effect.map((response) => HttpServerResponse.setHeader(response, "x-mapped", "2")),
          Effect.flatMap(HttpServerResponse.setCookie("session", "abc")),
          Effect.orDie
        )
        const app = HttpRouter.empty.pipe(HttpRouter.get("/sse", route))
        const cors = HttpMiddleware.cors({ allowedOrigins: ["http://page.test"] })
        const { sse, url } = yield* serveLayer(helper ? HttpSse.serve(app, cors) : HttpServer.serve(app, cors))
        const client = yield* open(`${url}/sse`, { origin: "http://page.test" })
        yield* opened(client)
        expect(client.status).toBe(200)
        expect(client.headers["content-type"]).toBe("text/event-stream; charset=utf-8")
        expect(client.headers["cache-control"]).toBe("no-cache, no-transform")
        expect(client.headers["x-own"]).toBe("1")
        expect(client.headers["x-mapped"]).toBe("2")
        expect(client.headers["access-control-allow-origin"]).toBe("http://page.test")
        expect(client.headers["set-cookie"]).toEqual(["session=abc"])
        expect(client.text()).toBe("retry: 2000\n\n")
        expect(yield* sse.sendToUser("alice", 1)).toBe(1)
        yield* Effect.promise(() => client.waitFor((c) => c.messages().length === 1, 5_000, "a message"))
        expect(client.text()).toBe("retry: 2000\n\ndata: 1\n\n")
      }))
  }

  it.scopedLive("a response replaced after respond registers nothing; the replacement is sent", () =>
    Effect.gen(function*() {
      const route = HttpSse.respond("alice").pipe(
        Effect.flatMap(() => Effect.succeed(HttpServerResponse.text("not today", { status: 418 }))),
        Effect.orDie
      )
      const app = HttpRouter.empty.pipe(HttpRouter.get("/sse", route))
      const { sse, url } = yield* serveLayer(HttpServer.serve(app))
      const response = yield* Effect.promise(() => request(`${url}/sse`))
      expect(response).toMatchObject({ status: 418, body: "not today" })
      expect((yield* sse.stats).connections).toBe(0)
    }))

  it.scopedLive("a HEAD request gets the headers and no connection", () =>
    Effect.gen(function*() {
      const app = HttpRouter.empty.pipe(HttpRouter.get("/sse", HttpSse.handler()))
      const { sse, url } = yield* serveLayer(HttpServer.serve(app))
      const response = yield* Effect.promise(() => request(`${url}/sse?userId=alice`, { method: "HEAD" }))
      expect(response.status).toBe(200)
      expect(response.headers["content-type"]).toBe("text/event-stream; charset=utf-8")
      expect((yield* sse.stats).connections).toBe(0)
    }))

  it.scopedLive("the client leaving removes the connection; a server-side close ends the response", () =>
    Effect.gen(function*() {
      const app = HttpRouter.empty.pipe(HttpRouter.get("/sse", HttpSse.handler()))
      const { sse, url } = yield* serveLayer(HttpSse.serve(app))
      const a = yield* open(`${url}/sse?userId=a`)
      const b = yield* open(`${url}/sse?userId=b`)
      yield* opened(a)
      yield* opened(b)
      expect((yield* sse.stats).connections).toBe(2)
      a.close()
      yield* waitUntil(() => Effect.runSync(sse.stats).connections === 1, "a removed")
      yield* sse.close("b")
      yield* Effect.promise(() => b.ended())
      expect((yield* sse.stats).connections).toBe(0)
    }))
})

describe("HttpSse portable path (no Node response underneath)", () => {
  it.scopedLive("HttpApp.toWebHandlerLayer: the body streams the connection", () =>
    Effect.gen(function*() {
      const app = HttpRouter.empty.pipe(HttpRouter.get("/sse", HttpSse.handler()))
      const { dispose, handler } = HttpApp.toWebHandlerLayer(HttpRouter.toHttpApp(app).pipe(Effect.flatten), sseLayer)
      yield* Effect.addFinalizer(() => Effect.promise(() => dispose()))
      const response = yield* Effect.promise(() => handler(new Request("http://x/sse?userId=alice")))
      expect(response.status).toBe(200)
      expect(response.headers.get("content-type")).toBe("text/event-stream; charset=utf-8")
      const reader = response.body!.getReader()
      const first = yield* Effect.promise(() => reader.read())
      expect(new TextDecoder().decode(first.value)).toBe("retry: 2000\n\n")
      yield* Effect.promise(() => reader.cancel())
    }))
})
