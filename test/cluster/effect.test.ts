/**
 * The Effect API across instances, once: two `SseKify.layer(...)` on
 * `RedisTransport.layer({ url })`, built in one scope, exchange a publish (a real HTTP
 * server and SSE client on one of them, the `events` stream on the other side); closing
 * the scope shuts both down cleanly: the SSE connection ends, every Redis connection is
 * closed, the services refuse to publish.
 *
 * `it.scopedLive`: the scoped test with the live clock (real sockets and Redis).
 */
import { expect, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { afterAll, beforeAll, describe } from "vitest"
import { InvalidInput, ShuttingDown, SseKify, type SseKifyEvent } from "../../src/index.js"
import { RedisTransport } from "../../src/redis.js"
import { redisAvailable, type RedisServer, startRedis, stopAll } from "../support/redisServer.js"
import { connect, startServer } from "../support/sse.js"
import { clientList, unique } from "./support.js"

/** Polls `check` (every 20 ms) until it holds, failing after `timeoutMs`. */
const eventually = (what: string, check: () => boolean | Promise<boolean>, timeoutMs = 5_000) =>
  Effect.promise(async () => {
    const deadline = Date.now() + timeoutMs
    while (!(await check())) {
      if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
      await new Promise((r) => setTimeout(r, 20))
    }
  })

describe.skipIf(!redisAvailable())("SseKify.layer on RedisTransport.layer", () => {
  let server: RedisServer
  beforeAll(async () => {
    server = await startRedis()
  })
  afterAll(stopAll)

  it.scopedLive("two layers exchange a publish; closing their scope shuts both down and closes every Redis connection", () =>
    Effect.gen(function*() {
      const channel = unique("ssekify:bus:effect")
      const name = unique("fx")
      const live = (id: string) =>
        SseKify.layer({ channel, keepAliveMs: 0, autoFields: { timestamp: false }, shutdown: { graceMs: 0 } }).pipe(
          Layer.provide(RedisTransport.layer({ url: server.url, connectionName: `${name}-${id}` }))
        )
      const scope = yield* Scope.make()
      const a = yield* Effect.map(Layer.buildWithScope(live("a"), scope), Context.get(SseKify.SseKify))
      const b = yield* Effect.map(Layer.buildWithScope(live("b"), scope), Context.get(SseKify.SseKify))
      yield* a.ready
      yield* b.ready
      const ours = () => clientList(server.port).then((l) => l.filter((c) => c.name.startsWith(`${name}-`)).map((c) => c.name).sort())
      expect(yield* Effect.promise(ours)).toEqual([`${name}-a:kv`, `${name}-a:pub`, `${name}-a:sub`, `${name}-b:kv`, `${name}-b:pub`, `${name}-b:sub`])

      // alice's SSE connection on A, registered through the service
      const http = yield* Effect.acquireRelease(
        Effect.promise(() => startServer((_req, res) => void Effect.runFork(a.registerConnection("alice", res)))),
        (s) => Effect.promise(() => s.close())
      )
      const alice = yield* Effect.acquireRelease(Effect.promise(() => connect(http.url)), (c) => Effect.sync(() => c.close()))
      yield* Effect.promise(() => alice.waitFor((c) => c.text().includes("retry:")))

      // A's events, from the stream; a local send proves the stream is subscribed
      const seen: Array<SseKifyEvent> = []
      const collecting = yield* Effect.fork(Stream.runForEach(a.events, (e) => Effect.sync(() => seen.push(e))))
      yield* eventually("A's events stream to run", () => {
        Effect.runSync(Effect.ignore(a.sendToAll("probe", { event: "probe" })))
        return seen.some((e) => e.type === "message-sent")
      })

      yield* b.publish({ hello: "from B" }, "alice", { event: "notify", id: "1" })
      yield* Effect.promise(() => alice.waitFor((c) => c.messages().some((m) => m.event === "notify"), 5_000, "B's publish at alice"))
      expect(alice.messages().filter((m) => m.event === "notify")).toEqual([
        { id: "1", event: "notify", data: '{"hello":"from B"}', comments: [] }
      ])
      yield* eventually("the 'publish' event on A", () => seen.some((e) => e.type === "publish"))
      expect(seen.filter((e) => e.type === "publish").map((e) => e.payload)).toEqual([
        { type: "user", target: "alice", data: { hello: "from B" }, event: "notify", id: "1", at: expect.any(Number), origin: b.instanceId }
      ])
      expect(seen.filter((e) => e.type === "error")).toEqual([])
      // typed errors on the Effect API
      expect(yield* Effect.flip(b.publishToRoom("", "x"))).toBeInstanceOf(InvalidInput)
      expect(yield* b.stats).toMatchObject({ published: 1, received: 0 })
      expect(yield* a.stats).toMatchObject({ published: 0, received: 1 })
      yield* Fiber.interrupt(collecting)

      // closing the scope: both shut down (announce, then the connection ends), the
      // transports close their connections
      const closed = yield* Effect.exit(Scope.close(scope, Exit.void))
      expect(Exit.isSuccess(closed)).toBe(true)
      yield* Effect.promise(() => alice.ended(2_000))
      expect(alice.messages().map((m) => m.event).filter((e) => e !== "probe")).toEqual(["notify", "server:shutdown"])
      yield* eventually("no connection of ours on the server", async () => (await ours()).length === 0, 3_000)
      expect(yield* Effect.flip(a.publish("late"))).toBeInstanceOf(ShuttingDown)
    }), 20_000)
})
