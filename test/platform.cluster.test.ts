/**
 * The `@effect/platform` endpoint takes the registration path of `registerConnection`
 * (`SseKifyService.endpoint`): the cluster-wide `maxConnectionsPerUser` (presence on a
 * real redis-server) holds there too, refusing with 429 before any SSE header, and a
 * connection refused by the cluster takes no slot.
 */
import { HttpRouter, HttpServer } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Context, Effect, Layer } from "effect"
import * as http from "node:http"
import * as HttpSse from "../src/HttpSse.js"
import { SseKify } from "../src/index.js"
import { RedisTransport } from "../src/redis.js"
import { redisAvailable, startRedis, stopAll } from "./support/redisServer.js"
import { connect, type RawClient } from "./support/sse.js"

/** One instance: the platform endpoint on a NodeHttpServer, presence on `redisUrl`, at most one connection per user in the cluster. */
const instance = (redisUrl: string) =>
  Effect.gen(function*() {
    const app = HttpRouter.empty.pipe(HttpRouter.get("/sse", HttpSse.handler()))
    const layer = HttpSse.serve(app).pipe(
      Layer.provideMerge(
        SseKify.layer({
          keepAliveMs: 0,
          maxConnectionsPerUser: 1,
          connectionLimitScope: "cluster",
          presence: { heartbeatMs: 200, ttlMs: 1000 },
          shutdown: { announce: false, graceMs: 0 }
        }).pipe(Layer.provide(RedisTransport.layer({ url: redisUrl })))
      ),
      Layer.provideMerge(NodeHttpServer.layer(() => http.createServer(), { port: 0, host: "127.0.0.1" }))
    )
    const context = yield* Layer.build(layer)
    const address = Context.get(context, HttpServer.HttpServer).address
    if (address._tag !== "TcpAddress") throw new Error("expected a TCP address")
    return { url: `http://127.0.0.1:${address.port}`, sse: Context.get(context, SseKify.SseKify) }
  })

const open = (url: string) =>
  Effect.acquireRelease(Effect.promise(() => connect(url)), (client) => Effect.sync(() => client.close()))

const opened = (client: RawClient) =>
  Effect.promise(() => client.waitFor((c) => c.text().includes("retry:"), 5_000, "retry:"))

describe.skipIf(!redisAvailable())("HttpSse under the cluster-wide cap (real redis-server)", () => {
  it.scopedLive("a second connection of the user on another instance gets 429 before any SSE header", () =>
    Effect.gen(function*() {
      const redis = yield* Effect.acquireRelease(Effect.promise(() => startRedis()), () => Effect.promise(() => stopAll()))
      const a = yield* instance(redis.url)
      const b = yield* instance(redis.url)

      const first = yield* open(`${a.url}/sse?userId=alice`)
      expect(first.status).toBe(200)
      yield* opened(first)

      const second = yield* open(`${b.url}/sse?userId=alice`)
      expect(second.status).toBe(429)
      expect(second.headers["content-type"]).not.toContain("text/event-stream")
      yield* Effect.promise(() => second.ended())
      expect(second.text()).toBe("Too many connections for this user")
      expect(yield* b.sse.isUserOnline("alice")).toBe(false)
      expect(yield* b.sse.getUserConnectionCount("alice", { scope: "cluster" })).toBe(1)

      // another user is admitted on the second instance: the refusal took no slot
      const other = yield* open(`${b.url}/sse?userId=bob`)
      expect(other.status).toBe(200)
      yield* opened(other)
      expect(yield* b.sse.getUserConnectionCount("bob", { scope: "cluster" })).toBe(1)
    }))
})
