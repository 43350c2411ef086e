/**
 * Shutdown of the `@effect/platform` endpoint with a real `NodeHttpServer` on 127.0.0.1
 * and real clients: the SSE responses get the shutdown event and end when the HTTP
 * server's scope closes, whichever of the `SseKify` and server layers is released
 * first (`HttpServer.serve` and `HttpSse.serve`); the grace period is skipped with
 * nothing connected and ends early when the last client leaves; `SseKify.layerTest`
 * and `SseKify.layer()` finish under `it.scoped` (TestClock).
 *
 * Time bounds here are hang detectors only (generous), never assertions on speed.
 */
import { HttpRouter, HttpServer } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Context, Effect, Exit, Fiber, Layer, Scope } from "effect"
import * as http from "node:http"
import * as HttpSse from "../src/HttpSse.js"
import { SseKify, Transport } from "../src/index.js"
import { connect, type RawClient } from "./support/sse.js"

type Order = "SseKify released first" | "server released first"
type Serve = "HttpServer.serve" | "HttpSse.serve"

const app = HttpRouter.empty.pipe(HttpRouter.get("/sse", HttpSse.handler()))

/** Hang detector: fails (not times out the whole file) when `effect` takes longer than `ms`. */
const bounded = <A, E>(effect: Effect.Effect<A, E>, what: string, ms = 15_000) =>
  effect.pipe(Effect.timeoutFail({ duration: ms, onTimeout: () => new Error(`hang: ${what} not done after ${ms} ms`) }))

/**
 * Builds app + SseKify + NodeHttpServer in `scope`, composed in `order`, served with `serve`.
 * "server released first" is the README's first Effect quick start: SseKify provided
 * outside (built first, released last).
 */
const build = (order: Order, serve: Serve, options: SseKify.LayerOptions, scope: Scope.Scope) =>
  Effect.gen(function*() {
    const nodeServer = NodeHttpServer.layer(() => http.createServer(), { port: 0, host: "127.0.0.1" })
    const sseLayer = SseKify.layer(options).pipe(Layer.provide(Transport.layerNone))
    const served = serve === "HttpSse.serve" ? HttpSse.serve(app) : HttpServer.serve(app)
    const layer = order === "SseKify released first"
      ? served.pipe(Layer.provideMerge(sseLayer), Layer.provideMerge(nodeServer))
      : served.pipe(Layer.provideMerge(nodeServer), Layer.provideMerge(sseLayer))
    const context = yield* Layer.buildWithScope(layer, scope)
    const address = Context.get(context, HttpServer.HttpServer).address
    if (address._tag !== "TcpAddress") throw new Error("expected a TCP address")
    return { url: `http://127.0.0.1:${address.port}`, sse: Context.get(context, SseKify.SseKify) }
  })

const open = (url: string) =>
  Effect.acquireRelease(Effect.promise(() => connect(url)), (client) => Effect.sync(() => client.close()))

const opened = (client: RawClient) => Effect.promise(() => client.waitFor((c) => c.text().includes("retry:"), 5_000, "retry:"))

describe("the SSE responses end when the HTTP server's scope closes", () => {
  for (const serve of ["HttpServer.serve", "HttpSse.serve"] as const) {
    for (const order of ["SseKify released first", "server released first"] as const) {
      it.live(`${serve}, ${order}: the client gets the shutdown event, its response ends, the scope closes`, () =>
        Effect.scoped(Effect.gen(function*() {
          const scope = yield* Scope.make()
          const { sse, url } = yield* build(order, serve, { shutdown: { announce: true, graceMs: 300 } }, scope)
          const client = yield* open(`${url}/sse?userId=alice`)
          yield* opened(client)
          const events: Array<string> = []
          const closing = yield* Effect.fork(
            Scope.close(scope, Exit.void).pipe(Effect.zipRight(Effect.sync(() => events.push("scope closed"))))
          )
          yield* bounded(Effect.promise(() => client.ended(15_000)), "the client's response")
          events.push("response ended")
          yield* bounded(Fiber.join(closing), "the scope's close")
          expect(client.messages().map((m) => m.event)).toEqual(["server:shutdown"])
          expect(JSON.parse(client.messages()[0]!.data)).toMatchObject({ code: "SHUTDOWN" })
          expect(events).toContain("response ended")
          expect(events).toContain("scope closed")
          expect((yield* sse.stats).connections).toBe(0)
        })))
    }
  }

  it.live("the grace period ends as soon as the last client is gone", () =>
    Effect.scoped(Effect.gen(function*() {
      const scope = yield* Scope.make()
      // A grace far longer than the hang detector: the scope closes only because the clients left.
      const { sse, url } = yield* build("server released first", "HttpServer.serve", {
        shutdown: { announce: true, graceMs: 600_000 }
      }, scope)
      const a = yield* open(`${url}/sse?userId=a`)
      const b = yield* open(`${url}/sse?userId=b`)
      yield* opened(a)
      yield* opened(b)
      const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
      for (const client of [a, b]) {
        yield* Effect.promise(() => client.waitFor((c) => c.messages().length === 1, 5_000, "announcement"))
      }
      a.close()
      // one client left: still in the grace period
      yield* Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve)))
      expect(b.isEnded()).toBe(false)
      b.close()
      yield* bounded(Fiber.join(closing), "the scope's close after the last client left")
      expect((yield* sse.stats).connections).toBe(0)
    })))

  it.live("a second shutdown while one runs does not announce again", () =>
    Effect.scoped(Effect.gen(function*() {
      const scope = yield* Scope.make()
      const { sse, url } = yield* build("SseKify released first", "HttpServer.serve", {
        shutdown: { announce: true, graceMs: 200 }
      }, scope)
      const client = yield* open(`${url}/sse?userId=a`)
      yield* opened(client)
      const first = yield* Effect.fork(sse.shutdown({ graceMs: 200 }))
      yield* Effect.promise(() => client.waitFor((c) => c.messages().length === 1, 5_000, "announcement"))
      yield* bounded(Scope.close(scope, Exit.void), "the scope's close")
      yield* Fiber.join(first)
      yield* Effect.promise(() => client.ended())
      expect(client.messages().map((m) => m.event)).toEqual(["server:shutdown"])
    })))
})

describe("releases that finish under TestClock", () => {
  it.scoped("SseKify.layerTest: no grace, memory transport; it.scoped finishes", () =>
    Effect.gen(function*() {
      const sse = yield* SseKify.SseKify
      yield* sse.ready
      expect(yield* sse.sendToUser("alice", { hi: 1 })).toBe(0)
      yield* sse.publish({ hi: 2 })
      expect((yield* sse.stats).published).toBe(1)
    }).pipe(Effect.provide(SseKify.layerTest())))

  it.scoped("SseKify.layer() with the default 5 s grace: nothing connected, the release does not wait", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const context = yield* Layer.buildWithScope(SseKify.layer().pipe(Layer.provide(Transport.layerNone)), scope)
      const sse = Context.get(context, SseKify.SseKify)
      expect((yield* sse.stats).accepting).toBe(true)
      // the TestClock never moves: a sleep here would never end
      yield* Scope.close(scope, Exit.void)
      expect((yield* sse.stats).accepting).toBe(false)
    }))

  it.scoped("shutdown() with nothing connected completes without time passing", () =>
    Effect.gen(function*() {
      const sse = yield* SseKify.SseKify
      yield* sse.shutdown({ graceMs: 60_000 })
      expect((yield* sse.stats).accepting).toBe(false)
    }).pipe(Effect.provide(SseKify.layer().pipe(Layer.provide(Transport.layerNone)))))
})
