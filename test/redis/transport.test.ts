/**
 * RedisTransport on a real single-node redis-server.
 */
import { expect, it } from "@effect/vitest"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Scope from "effect/Scope"
import { inspect } from "node:util"
import { afterAll, beforeAll, describe } from "vitest"
import { TransportError } from "../../src/Errors.js"
import * as RedisTransport from "../../src/RedisTransport.js"
import * as Sequencer from "../../src/Sequencer.js"
import { Transport } from "../../src/Transport.js"
import { redisAvailable, redisCli, type RedisServer, startRedis, stopAll } from "../support/redisServer.js"
import { awaitClients, clientNames, collector, eventually, eventuallyEffect, info, tcpSockets, unique } from "./helpers.js"

const kvOf = (t: RedisTransport.RedisTransportService) => Option.getOrThrow(t.kv)

describe.skipIf(!redisAvailable())("RedisTransport (single node)", () => {
  let server: RedisServer
  beforeAll(async () => {
    server = await startRedis()
  })
  afterAll(stopAll)

  it.scopedLive("two transports exchange messages on a channel, in order, both ways", () =>
    Effect.gen(function*() {
      const channel = unique("ch")
      const a = yield* RedisTransport.make({ url: server.url })
      const b = yield* RedisTransport.make({ url: server.url })
      const atA = collector()
      const atB = collector()
      yield* a.subscribe(channel, atA.handlers)
      yield* b.subscribe(channel, atB.handlers)
      const sent = Array.from({ length: 100 }, (_, i) => `from-a-${i}`)
      for (const m of sent) yield* a.publish(channel, m)
      yield* b.publish(channel, "from-b")
      yield* eventually("all messages at b", () => atB.messages.length === 101)
      yield* eventually("all messages at a", () => atA.messages.length === 101)
      expect(atB.messages).toEqual([...sent, "from-b"])
      expect(atA.messages).toEqual([...sent, "from-b"])
      expect(atA.errors).toEqual([])
      expect(atB.errors).toEqual([])
      expect(a.kind).toBe("redis")
    }))

  it.scopedLive("channels are isolated, and an unsubscribed handler gets nothing more", () =>
    Effect.gen(function*() {
      const x = unique("x")
      const y = unique("y")
      const pub = yield* RedisTransport.make({ url: server.url })
      const sub = yield* RedisTransport.make({ url: server.url })
      const atX = collector()
      const atY = collector()
      const atX2 = collector()
      const xScope = yield* Scope.make()
      yield* sub.subscribe(x, atX.handlers).pipe(Scope.extend(xScope))
      yield* sub.subscribe(y, atY.handlers)
      yield* sub.subscribe(x, atX2.handlers) // a second subscriber of x on the same transport
      yield* pub.publish(x, "x1")
      yield* pub.publish(y, "y1")
      yield* pub.publish(unique("nobody"), "lost")
      yield* pub.publish(x, "x2")
      yield* eventually("x2 at both x subscribers", () => atX.messages.length === 2 && atX2.messages.length === 2)
      yield* eventually("y1", () => atY.messages.length === 1)
      expect(atX.messages).toEqual(["x1", "x2"])
      expect(atX2.messages).toEqual(["x1", "x2"])
      expect(atY.messages).toEqual(["y1"])

      // close the first x subscription: the second still gets x, the first nothing
      yield* Scope.close(xScope, Exit.void)
      yield* pub.publish(x, "x3")
      yield* pub.publish(y, "y2") // same publisher connection: arrives after x3
      yield* eventually("y2", () => atY.messages.length === 2)
      yield* eventually("x3 at the remaining x subscriber", () => atX2.messages.length === 3)
      expect(atX.messages).toEqual(["x1", "x2"])
      expect(atX2.messages).toEqual(["x1", "x2", "x3"])
      expect(atY.messages).toEqual(["y1", "y2"])
    }))

  it.scopedLive("the last subscription of a channel closing sends UNSUBSCRIBE", () =>
    Effect.gen(function*() {
      const channel = unique("unsub")
      const t = yield* RedisTransport.make({ url: server.url })
      const numsub = () =>
        Effect.promise(() => redisCli(server.port, ["pubsub", "numsub", channel])).pipe(
          Effect.map((out) => Number(out.trim().split("\n")[1]))
        )
      const inner = yield* Scope.make()
      yield* t.subscribe(channel, collector().handlers).pipe(Scope.extend(inner))
      expect(yield* numsub()).toBe(1)
      yield* Scope.close(inner, Exit.void)
      yield* eventuallyEffect("PUBSUB NUMSUB to drop to 0", Effect.map(numsub(), (n) => n === 0), 2_000)
      expect(yield* numsub()).toBe(0)
    }))

  it.scopedLive("a throwing onMessage is reported to its onError and does not stop delivery", () =>
    Effect.gen(function*() {
      const channel = unique("throw")
      const t = yield* RedisTransport.make({ url: server.url })
      const errors: Array<TransportError> = []
      const ok = collector()
      yield* t.subscribe(channel, {
        onMessage: () => {
          throw new Error("handler bug")
        },
        onError: (e) => errors.push(e)
      })
      yield* t.subscribe(channel, ok.handlers)
      yield* t.publish(channel, "m1")
      yield* t.publish(channel, "m2")
      yield* eventually("both messages at the healthy subscriber", () => ok.messages.length === 2)
      expect(ok.messages).toEqual(["m1", "m2"])
      expect(errors.map((e) => [e._tag, e.operation, (e.cause as Error).message])).toEqual([
        ["TransportError", "onMessage", "handler bug"],
        ["TransportError", "onMessage", "handler bug"]
      ])
    }))

  it.scopedLive("incrExpire is atomic under concurrent callers of two transports and sets the TTL", () =>
    Effect.gen(function*() {
      const key = unique("seq")
      const a = kvOf(yield* RedisTransport.make({ url: server.url }))
      const b = kvOf(yield* RedisTransport.make({ url: server.url }))
      const n = 200
      const calls = Array.from({ length: n }, (_, i) => (i % 2 === 0 ? a : b).incrExpire(key, 120))
      const values = yield* Effect.all(calls, { concurrency: "unbounded" })
      // one sequence: every value 1..n exactly once (no lost or repeated increment)
      expect([...values].sort((x, y) => x - y)).toEqual(Array.from({ length: n }, (_, i) => i + 1))
      // each transport's values, in the order its calls completed, strictly increase
      const ofA = values.filter((_, i) => i % 2 === 0)
      const ofB = values.filter((_, i) => i % 2 === 1)
      for (const own of [ofA, ofB]) for (let i = 1; i < own.length; i++) expect(own[i]!).toBeGreaterThan(own[i - 1]!)
      const ttl = Number((yield* Effect.promise(() => redisCli(server.port, ["ttl", key]))).trim())
      expect(ttl).toBeGreaterThan(100)
      expect(ttl).toBeLessThanOrEqual(120)
      // ttl 0: no expiry set on a new key
      const noTtl = unique("seq-nottl")
      expect(yield* a.incrExpire(noTtl, 0)).toBe(1)
      expect((yield* Effect.promise(() => redisCli(server.port, ["ttl", noTtl]))).trim()).toBe("-1")
      // expire sets it afterwards
      yield* a.expire(noTtl, 30)
      const later = Number((yield* Effect.promise(() => redisCli(server.port, ["ttl", noTtl]))).trim())
      expect(later).toBeGreaterThan(25)
      expect(later).toBeLessThanOrEqual(30)
    }))

  it.scopedLive("incrExpire is one round trip: one script call per increment, no separate EXPIRE", () =>
    Effect.gen(function*() {
      const kv = kvOf(yield* RedisTransport.make({ url: server.url }))
      const key = unique("rt")
      yield* kv.incrExpire(unique("warm"), 10) // loads the script (EVALSHA, then EVAL once)
      yield* Effect.promise(() => redisCli(server.port, ["config", "resetstat"]))
      for (let i = 0; i < 20; i++) yield* kv.incrExpire(key, 60)
      const stats = yield* Effect.promise(() => info(server.port, "commandstats"))
      const calls = (name: string) => Number(/calls=(\d+)/.exec(stats.get(`cmdstat_${name}`) ?? "")?.[1] ?? 0)
      expect(calls("evalsha") + calls("eval")).toBe(20)
      expect(calls("multi")).toBe(0)
      // INCR and EXPIRE ran inside the script
      expect(calls("incr")).toBe(20)
      expect(calls("expire")).toBe(20)
    }))

  it.live("closing the layer's scope closes the three connections: no client on the server, no socket in the process", () =>
    Effect.gen(function*() {
      const name = unique("close")
      const before = tcpSockets()
      const scope = yield* Scope.make()
      const t = yield* RedisTransport.make({ url: server.url, connectionName: name }).pipe(Scope.extend(scope))
      const c = collector()
      yield* t.subscribe(unique("c"), c.handlers).pipe(Scope.extend(scope))
      yield* t.publish(unique("c"), "x")
      yield* awaitClients(server.port, `${name}:`, 3)
      const names = (yield* Effect.promise(() => clientNames(server.port)))
        .filter((n) => n.startsWith(name)).sort()
      expect(names).toEqual([`${name}:kv`, `${name}:pub`, `${name}:sub`])
      expect(tcpSockets()).toBe(before + 3)
      yield* Scope.close(scope, Exit.void)
      expect(tcpSockets()).toBe(before)
      yield* awaitClients(server.port, `${name}:`, 0, 2_000)
      // the closed transport refuses work instead of hanging
      const exit = yield* Effect.exit(t.publish("c", "late"))
      expect(Exit.isFailure(exit)).toBe(true)
    }))

  it.live("layer / layerConfig: REDIS_URL with REDIS_PASSWORD (Redacted, never shown)", () =>
    Effect.gen(function*() {
      const secret = "s3cret-" + Math.random().toString(36).slice(2)
      const locked = yield* Effect.promise(() => startRedis({ password: secret }))
      const channel = unique("cfg")
      const provider = ConfigProvider.fromMap(
        new Map([["REDIS_URL", `redis://127.0.0.1:${locked.port}`], ["REDIS_PASSWORD", secret]])
      )
      const options = yield* RedisTransport.config.pipe(Effect.withConfigProvider(provider))
      expect(inspect(options, { depth: 5 })).not.toContain(secret)
      expect(JSON.stringify(options)).not.toContain(secret)

      const received = collector()
      yield* Effect.gen(function*() {
        const t = yield* Transport
        yield* t.subscribe(channel, received.handlers)
        yield* t.publish(channel, "through config")
        yield* eventually("message through the configured transport", () => received.messages.length === 1)
        expect(yield* (yield* Sequencer.Store).incrExpire(unique("k"), 10)).toBe(1)
      }).pipe(
        Effect.scoped,
        Effect.provide(RedisTransport.layerConfig().pipe(Layer.provide(Layer.setConfigProvider(provider))))
      )
      expect(received.messages).toEqual(["through config"])
      expect(received.errors).toEqual([])

      // a wrong password: publish fails (bounded), onError is told, the secret appears nowhere
      const wrong = "wrong-" + secret
      const errors = collector()
      const failure = yield* Effect.gen(function*() {
        const t = yield* RedisTransport.make({ url: `redis://127.0.0.1:${locked.port}`, password: Redacted.make(wrong) })
        yield* t.subscribe(channel, errors.handlers)
        return yield* Effect.flip(t.publish(channel, "nope"))
      }).pipe(Effect.scoped)
      expect(failure).toBeInstanceOf(TransportError)
      expect(errors.errors.length).toBeGreaterThan(0)
      const texts = [failure, ...errors.errors].map((e) => `${e.message} ${inspect(e, { depth: 5 })}`).join("\n")
      expect(texts).toMatch(/WRONGPASS|NOAUTH|not ready|not confirmed/)
      expect(texts).not.toContain(secret)
      yield* Effect.promise(() => locked.stop())
    }))

  it.effect("layerConfig fails with a ConfigError when no Redis is configured", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(
        Effect.scoped(Layer.build(RedisTransport.layerConfig())).pipe(
          Effect.withConfigProvider(ConfigProvider.fromMap(new Map()))
        )
      )
      expect(String(error)).toContain("REDIS_URL")
    }))

  it.scopedLive("RedisKv: appendCapped keeps the n highest-scored items per key with a TTL, in one round trip; list / del; bytes intact", () =>
    Effect.gen(function*() {
      const t = yield* RedisTransport.make({ url: server.url })
      const kv = Option.getOrThrow(RedisTransport.redisKv(t))
      const keys = [unique("r1"), unique("r2"), unique("r3")]
      const bytes = (i: number, key: string) => new Uint8Array([0, 10, 13, 255, i, ...new TextEncoder().encode(key)])
      yield* kv.incrExpire(unique("warm"), 1) // the script cache is per connection: warm it
      yield* kv.appendCapped([[unique("warm2"), new Uint8Array([1]), 0]], 1, 1000)
      yield* Effect.promise(() => redisCli(server.port, ["config", "resetstat"]))
      for (let i = 0; i < 5; i++) yield* kv.appendCapped(keys.map((k) => [k, bytes(i, k), i] as const), 3, 60_000)
      const stats = yield* Effect.promise(() => info(server.port, "commandstats"))
      const calls = (name: string) => Number(/calls=(\d+)/.exec(stats.get(`cmdstat_${name}`) ?? "")?.[1] ?? 0)
      // one script call per key and message: RPUSH, LTRIM and PEXPIRE ran inside it
      expect(calls("evalsha") + calls("eval")).toBe(15)
      expect(calls("zadd")).toBe(15)
      expect(calls("zremrangebyrank")).toBe(15)
      expect(calls("pexpire")).toBe(15)
      for (const k of keys) {
        const items = yield* kv.list(k)
        expect(items.map((b) => Array.from(b))).toEqual([2, 3, 4].map((i) => Array.from(bytes(i, k))))
        const pttl = Number((yield* Effect.promise(() => redisCli(server.port, ["pttl", k]))).trim())
        expect(pttl).toBeGreaterThan(55_000)
        expect(pttl).toBeLessThanOrEqual(60_000)
      }
      expect(yield* kv.list(unique("missing"))).toEqual([])
      yield* kv.del(keys.slice(0, 2))
      expect((yield* kv.list(keys[0]!)).length).toBe(0)
      expect((yield* kv.list(keys[2]!)).length).toBe(3)
      // not a Redis transport: no RedisKv
      const { createMemoryBus } = yield* Effect.promise(() => import("../../src/Transport.js"))
      expect(Option.isNone(RedisTransport.redisKv(yield* RedisTransport.fromAdapter(createMemoryBus().adapter())))).toBe(true)
    }))
})
