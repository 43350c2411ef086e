/**
 * createIORedisAdapter (the original's RedisLike adapter) on a real redis-server, and
 * RedisTransport.fromAdapter on it.
 */
import { expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import { Cluster, Redis } from "ioredis"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, beforeAll, describe } from "vitest"
import { IORedisMissingError, loadFrom, missingMessage } from "../../src/internal/redis/ioredis.js"
import { ConnectionsKey, createIORedisAdapter, type IORedisAdapter } from "../../src/redisAdapter.js"
import * as RedisTransport from "../../src/RedisTransport.js"
import { createMemoryBus } from "../../src/Transport.js"
import {
  type RedisCluster,
  type RedisServer,
  redisAvailable,
  redisCli,
  startCluster,
  startRedis,
  stopAll
} from "../support/redisServer.js"
import { collector, eventually, unique } from "./helpers.js"

const received = (adapter: IORedisAdapter) => {
  const got: Array<[string, string]> = []
  adapter.on("message", (channel, message) => got.push([channel, message]))
  return got
}

/** The statuses of the connections the adapter carries under its hidden key. */
const statuses = (adapter: IORedisAdapter) => {
  const { connections } = adapter[ConnectionsKey]
  return [connections.publisher.status, connections.subscriber.status, connections.kv.status]
}

describe("createIORedisAdapter without ioredis", () => {
  it("throws an error that says `npm i ioredis`", () => {
    // a directory where `require("ioredis")` cannot resolve: the real missing-module path
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ssekify-no-ioredis-"))
    try {
      let thrown: unknown
      try {
        loadFrom(path.join(dir, "index.js"))
      } catch (error) {
        thrown = error
      }
      expect(thrown).toBeInstanceOf(IORedisMissingError)
      expect((thrown as Error).message).toBe(missingMessage)
      expect((thrown as Error).message).toContain("npm i ioredis")
      expect(((thrown as Error).cause as { code?: string }).code).toBe("MODULE_NOT_FOUND")
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })
})

describe.skipIf(!redisAvailable())("createIORedisAdapter", () => {
  let server: RedisServer
  let cluster: RedisCluster
  beforeAll(async () => {
    server = await startRedis()
    cluster = await startCluster()
  })
  afterAll(stopAll)

  /**
   * `a` publishes two messages, `b` gets them in order. On a single node PUBLISH answers
   * the number of receivers (1); on a Cluster only those on the node it went to, so the
   * number is checked for single nodes only.
   */
  const exchange = async (a: IORedisAdapter, b: IORedisAdapter, options: { readonly cluster?: boolean } = {}) => {
    const channel = unique("ad")
    const atB = received(b)
    await b.subscribe(channel)
    const receivers = await a.publish(channel, "one")
    if (!options.cluster) expect(receivers).toBe(1)
    await a.publish(channel, "two")
    await new Promise<void>((resolve, reject) => {
      const deadline = Date.now() + 5_000
      const poll = () => (atB.length >= 2 ? resolve() : Date.now() > deadline ? reject(new Error("no messages")) : setTimeout(poll, 20))
      poll()
    })
    expect(atB).toEqual([[channel, "one"], [channel, "two"]])
  }

  it("from a URL: publish / subscribe / on('message'), KV (incr, expire, pexpire, kv), close ends all three connections", async () => {
    const a = createIORedisAdapter(server.url)
    const b = createIORedisAdapter(server.url)
    try {
      await exchange(a, b)
      const key = unique("k")
      expect(await a.incr(key)).toBe(1)
      expect(await b.kv.incr(key)).toBe(2)
      expect(await a.expire(key, 50)).toBe(1)
      const ttl = Number((await redisCli(server.port, ["ttl", key])).trim())
      expect(ttl).toBeGreaterThan(45)
      expect(ttl).toBeLessThanOrEqual(50)
      expect(await a.kv.pexpire(key, 20_000)).toBe(1)
      const pttl = Number((await redisCli(server.port, ["pttl", key])).trim())
      expect(pttl).toBeGreaterThan(15_000)
      expect(pttl).toBeLessThanOrEqual(20_000)
      expect(await a.incrExpire(unique("ie"), 10)).toBe(1)
      // the lead's generic RedisLike path finds the KV on the adapter
      expect(typeof a.kv.expire).toBe("function")
    } finally {
      await a.close()
      await b.close()
    }
    expect(statuses(a)).toEqual(["end", "end", "end"])
    await expect(a.publish("x", "after close")).rejects.toThrow(/closed/)
    await a.close() // idempotent
  })

  it("the publishes of one tick leave in one write on the publisher's socket, in order, each with its own result", async () => {
    const a = createIORedisAdapter(server.url)
    const b = createIORedisAdapter(server.url)
    try {
      const channel = unique("batch")
      const atB = received(b)
      await b.subscribe(channel)
      await a.publish(channel, "warm-up") // connected and ready
      const socket = (a[ConnectionsKey].connections.publisher as Redis).stream
      let writes = 0
      const write = socket.write
      socket.write = function(this: typeof socket, ...args: Parameters<typeof write>) {
        writes++
        return write.apply(this, args)
      } as typeof write
      const messages = Array.from({ length: 50 }, (_, i) => `m${i}`)
      const results = await Promise.all(messages.map((m) => a.publish(channel, m)))
      socket.write = write
      expect(writes).toBe(1)
      expect(results).toEqual(messages.map(() => 1))
      const deadline = Date.now() + 5_000
      while (atB.length < 51 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10))
      expect(atB.map(([, m]) => m)).toEqual(["warm-up", ...messages])
      // a lone publish on a later tick is sent on its own
      expect(await a.publish(channel, "alone")).toBe(1)
    } finally {
      await Promise.all([a.close(), b.close()])
    }
  })

  it("from ioredis options", async () => {
    const a = createIORedisAdapter({ host: "127.0.0.1", port: server.port })
    const b = createIORedisAdapter({ host: "127.0.0.1", port: server.port, db: 0 })
    try {
      await exchange(a, b)
    } finally {
      await Promise.all([a.close(), b.close()])
    }
  })

  it("from a Redis instance: duplicates it and never closes it", async () => {
    const mine = new Redis(server.url)
    try {
      const a = createIORedisAdapter(mine)
      const b = createIORedisAdapter(mine)
      try {
        await exchange(a, b)
      } finally {
        await Promise.all([a.close(), b.close()])
      }
      expect(mine.status).toBe("ready")
      expect(await mine.ping()).toBe("PONG")
    } finally {
      await mine.quit()
    }
  })

  it("from a Cluster instance", async () => {
    const mine = new Cluster(cluster.startupNodes.slice())
    try {
      const a = createIORedisAdapter(mine)
      const b = createIORedisAdapter(mine)
      try {
        await exchange(a, b, { cluster: true })
        const key = unique("ck")
        expect(await a.incr(key)).toBe(1)
        expect(await b.incr(key)).toBe(2)
      } finally {
        await Promise.all([a.close(), b.close()])
      }
      expect(mine.status).toBe("ready")
    } finally {
      await mine.quit()
    }
  })

  it("while Redis is down: publish rejects within a second, 'error' listeners hear of it once per error", async () => {
    const local = await startRedis()
    const a = createIORedisAdapter(local.url)
    const errors: Array<unknown> = []
    a.on("error", (e) => errors.push(e))
    try {
      await a.publish("x", "up")
      // all three connections up (the KV one connects in the background), then kill
      const readyBy = Date.now() + 5_000
      while (statuses(a).some((s) => s !== "ready") && Date.now() < readyBy) await new Promise((r) => setTimeout(r, 20))
      expect(statuses(a)).toEqual(["ready", "ready", "ready"])
      await local.kill()
      const started = Date.now()
      await expect(a.publish("x", "down")).rejects.toThrow(/not ready|closed|Connection/)
      const ms = Date.now() - started
      expect(ms).toBeLessThan(1_500)
      const deadline = Date.now() + 3_000
      while (errors.length < 4 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50))
      // two more reconnect attempts (at most 1 s apart) add nothing
      const seenAt = errors.length
      await new Promise((r) => setTimeout(r, 2_100))
      expect(errors.length).toBe(seenAt)
      // 3 connections lost: each reports its loss once; the error they all hit on every
      // reconnect attempt (ECONNREFUSED, once a second) is reported once in all
      const messages = errors.map((e) => (e as Error).message)
      console.log("[adapter] errors while down:", JSON.stringify(messages))
      expect(messages.filter((m) => m.includes("connection lost")).length).toBe(3)
      expect(messages.filter((m) => m.includes("ECONNREFUSED")).length).toBe(1)
      expect(new Set(messages).size).toBe(messages.length)
      await local.restart()
      const upAt = Date.now()
      let ok = false
      while (!ok && Date.now() - upAt < 5_000) ok = await a.publish("x", "back").then(() => true, () => false)
      expect(ok).toBe(true)
    } finally {
      await a.close()
      await local.stop()
    }
  })

  it.scopedLive("RedisTransport.fromAdapter builds the full transport on the adapter's connections", () =>
    Effect.gen(function*() {
      const adapter = createIORedisAdapter(server.url)
      expect(RedisTransport.isIORedisAdapter(adapter)).toBe(true)
      const channel = unique("up")
      const scope = yield* Scope.make()
      const t = yield* RedisTransport.fromAdapter(adapter, { closeOnRelease: true }).pipe(Scope.extend(scope))
      const other = yield* RedisTransport.make({ url: server.url })
      expect(t.kind).toBe("redis")
      const got = collector()
      yield* t.subscribe(channel, got.handlers).pipe(Scope.extend(scope))
      yield* other.publish(channel, "to the adapter's transport")
      yield* eventually("the message", () => got.messages.length === 1)
      // the atomic KV script, not INCR + EXPIRE
      yield* Effect.promise(() => redisCli(server.port, ["config", "resetstat"]))
      const key = unique("upk")
      expect(yield* Option.getOrThrow(t.kv).incrExpire(key, 30)).toBe(1)
      const stats = yield* Effect.promise(() => redisCli(server.port, ["info", "commandstats"]))
      expect(stats).toMatch(/cmdstat_eval(sha)?:calls=1/)
      yield* Scope.close(scope, Exit.void)
      // closeOnRelease: the adapter is closed with the transport
      expect(statuses(adapter)).toEqual(["end", "end", "end"])
    }))

  it.scopedLive("RedisTransport.fromAdapter on any other RedisLike falls back to the generic transport", () =>
    Effect.gen(function*() {
      const bus = createMemoryBus()
      const adapter = bus.adapter()
      expect(RedisTransport.isIORedisAdapter(adapter)).toBe(false)
      const t = yield* RedisTransport.fromAdapter(adapter)
      expect(t.kind).toBe("redis-like")
    }))

  it.live("fromAdapter with closeOnRelease: an adapter whose close() throws does not fail the release", () =>
    Effect.gen(function*() {
      const real = createIORedisAdapter(server.url)
      let closeCalls = 0
      // object spread keeps the hidden connections key: still an ioredis adapter
      const throwing: IORedisAdapter = {
        ...real,
        close: () => {
          closeCalls++
          throw new Error("close bug")
        }
      }
      expect(RedisTransport.isIORedisAdapter(throwing)).toBe(true)
      const scope = yield* Scope.make()
      const t = yield* RedisTransport.fromAdapter(throwing, { closeOnRelease: true }).pipe(Scope.extend(scope))
      expect(t.kind).toBe("redis")
      const exit = yield* Effect.exit(Scope.close(scope, Exit.void))
      expect(Exit.isSuccess(exit)).toBe(true)
      expect(closeCalls).toBe(1)
      yield* Effect.promise(() => real.close())
      expect(statuses(real)).toEqual(["end", "end", "end"])
    }))
})
