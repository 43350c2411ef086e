/**
 * The Redis backends as sub-module layers on ONE `RedisConnection` per instance:
 * two `SseKify.layer(...)` composed from `TransportRedis.layer`,
 * `SequencerRedis.layerStore` and `ReplayBufferRedis.layer` (no `RedisTransport`),
 * global seq across them, a reconnect to the other instance replayed from Redis, three
 * connections per instance (one connection service shared by every backend) and all of
 * them closed with the scope; `createIORedisAdapter` is a skin over the same service.
 */
import { expect, it } from "@effect/vitest"
import * as Config from "effect/Config"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import { afterAll, beforeAll, describe } from "vitest"
import { createIORedisAdapter, Sequencer, SseKify } from "../../src/index.js"
import { RedisConnection, RedisTransport, ReplayBufferRedis, SequencerRedis, TransportRedis } from "../../src/redis.js"
import { ConnectionsKey } from "../../src/redisAdapter.js"
import { redisAvailable, type RedisServer, startRedis, stopAll } from "../support/redisServer.js"
import { connect, startServer } from "../support/sse.js"
import { clientNames, unique } from "./helpers.js"

describe.skipIf(!redisAvailable())("Redis backends as layers on one RedisConnection", () => {
  let server: RedisServer
  beforeAll(async () => {
    server = await startRedis()
  })
  afterAll(stopAll)

  it.scopedLive("two instances: global seq, replay from Redis at the other instance, three connections each, closed with the scope", () =>
    Effect.gen(function*() {
      const channel = unique("ssekify:layers")
      const name = unique("lay")
      const live = (id: string) =>
        SseKify.layer({ channel, instanceId: id, keepAliveMs: 0, autoFields: { timestamp: false }, shutdown: { announce: false, graceMs: 0 } }).pipe(
          Layer.provide(
            Layer.mergeAll(
              TransportRedis.layer,
              Sequencer.layerStore({ keyPrefix: `${channel}:seq:` }).pipe(Layer.provide(SequencerRedis.layerStore)),
              ReplayBufferRedis.layer({ size: 10, keyPrefix: `${channel}:replay:` })
            )
          ),
          Layer.provide(RedisConnection.layer({ url: server.url, connectionName: `${name}-${id}` }))
        )
      const scope = yield* Scope.make()
      const a = yield* Effect.map(Layer.buildWithScope(live("a"), scope), Context.get(SseKify.SseKify))
      const b = yield* Effect.map(Layer.buildWithScope(live("b"), scope), Context.get(SseKify.SseKify))
      yield* a.ready
      yield* b.ready
      const ours = () => clientNames(server.port).then((l) => l.filter((n) => n.startsWith(`${name}-`)).sort())
      expect(yield* Effect.promise(ours)).toEqual([`${name}-a:kv`, `${name}-a:pub`, `${name}-a:sub`, `${name}-b:kv`, `${name}-b:pub`, `${name}-b:sub`])

      const http = yield* Effect.acquireRelease(
        Effect.promise(() =>
          startServer((req, res) => void Effect.runFork((req.url?.startsWith("/b") ? b : a).registerConnection("alice", res)))
        ),
        (s) => Effect.promise(() => s.close())
      )
      const first = yield* Effect.promise(() => connect(http.url + "/a"))
      yield* Effect.promise(() => first.waitFor((c) => c.text().includes("retry:")))
      yield* a.publish({ streamId: "s" }, "alice", { id: "1" })
      yield* b.publish({ streamId: "s" }, "alice", { id: "2" })
      yield* a.publish({ streamId: "s" }, "alice", { id: "3" })
      yield* Effect.promise(() => first.waitFor((c) => c.messages().length === 3))
      expect(first.messages().map((m) => JSON.parse(m.data).seq)).toEqual([0, 1, 2])
      first.close()

      const again = yield* Effect.promise(() => connect(http.url + "/b", { headers: { "last-event-id": "1" } }))
      yield* Effect.promise(() => again.waitFor((c) => c.messages().length === 2, 5_000, "the replay at B"))
      expect(again.messages().map((m) => m.id)).toEqual(["2", "3"])
      again.close()

      expect(Exit.isSuccess(yield* Effect.exit(Scope.close(scope, Exit.void)))).toBe(true)
      yield* Effect.promise(async () => {
        const deadline = Date.now() + 3_000
        while ((await ours()).length > 0) {
          if (Date.now() > deadline) throw new Error(`connections left: ${(await ours()).join(", ")}`)
          await new Promise((r) => setTimeout(r, 20))
        }
      })
    }), 20_000)

  it.scopedLive("createIORedisAdapter is a skin over a RedisConnection: the same three clients, its KV through the same gate", () =>
    Effect.gen(function*() {
      const name = unique("skin")
      const adapter = createIORedisAdapter(server.url, { connectionName: name })
      const connection = yield* Option.getOrThrow(RedisConnection.fromAdapter(adapter, { closeOnRelease: true }))
      expect(connection.publisher).toBe(adapter[ConnectionsKey].connections.publisher)
      const store = SequencerRedis.makeStoreWith(connection)
      const key = unique("k")
      expect(yield* store.incrExpire(key, 30)).toBe(1)
      expect(yield* Effect.promise(() => adapter.incrExpire(key, 30))).toBe(2)
      expect(yield* Effect.promise(() => adapter.incr(key))).toBe(3)
      expect(Option.isNone(RedisConnection.fromAdapter({ publish() {}, subscribe() {}, on() {} }))).toBe(true)
    }))

  it.live("RedisTransport.layerConfig takes each option as its own Config (Config.Wrap), the URL Redacted", () =>
    Effect.gen(function*() {
      const name = unique("tcfg")
      const provider = ConfigProvider.fromMap(
        new Map([["MY_REDIS", server.url], ["MY_NAME", name], ["MY_TIMEOUT", "3 seconds"]])
      )
      const n = yield* Effect.gen(function*() {
        const store = yield* Sequencer.Store
        const value = yield* store.incrExpire(unique("k"), 30)
        // the KV connection answered, so it carries the configured name
        expect(yield* Effect.promise(() => clientNames(server.port))).toContain(`${name}:kv`)
        return value
      }).pipe(
        Effect.scoped,
        Effect.provide(
          RedisTransport.layerConfig({
            url: Config.redacted("MY_REDIS"),
            connectionName: Config.string("MY_NAME"),
            commandTimeout: Config.duration("MY_TIMEOUT")
          }).pipe(Layer.provide(Layer.setConfigProvider(provider)))
        )
      )
      expect(n).toBe(1)
      // a missing variable is a ConfigError naming it, not a connection to a default
      const missing = yield* Effect.exit(
        Effect.scoped(Layer.build(RedisTransport.layerConfig({ url: Config.redacted("NOT_SET") }))).pipe(
          Effect.withConfigProvider(ConfigProvider.fromMap(new Map()))
        )
      )
      expect(Exit.isFailure(missing) && String(missing.cause)).toContain("NOT_SET")
    }))

  it.live("RedisConnection.layerConfig takes each option as its own Config (Config.Wrap)", () =>
    Effect.gen(function*() {
      const provider = ConfigProvider.fromMap(new Map([["MY_REDIS", server.url], ["MY_NAME", unique("cfg")]]))
      const n = yield* Effect.flatMap(SequencerRedis.makeStore, (store) => store.incrExpire(unique("k"), 30)).pipe(
        Effect.provide(
          RedisConnection.layerConfig({ url: Config.redacted("MY_REDIS"), connectionName: Config.string("MY_NAME") }).pipe(
            Layer.provide(Layer.setConfigProvider(provider))
          )
        )
      )
      expect(n).toBe(1)
    }))
})

