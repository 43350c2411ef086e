/**
 * RedisTransport on a real 3-master Redis Cluster.
 */
import { expect, it } from "@effect/vitest"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import { Cluster } from "ioredis"
import { afterAll, beforeAll, describe } from "vitest"
import * as RedisTransport from "../../src/RedisTransport.js"
import { Transport } from "../../src/Transport.js"
import { type RedisCluster, redisAvailable, redisCli, startCluster, stopAll } from "../support/redisServer.js"
import { clientNames, collector, eventually, eventuallyEffect, tcpSockets, unique } from "./helpers.js"

describe.skipIf(!redisAvailable())("RedisTransport (Cluster)", () => {
  let cluster: RedisCluster
  beforeAll(async () => {
    cluster = await startCluster()
  })
  afterAll(stopAll)

  /** The port of the master that owns `key`: the one that answers without `MOVED`. */
  const nodeOf = async (key: string): Promise<number> => {
    for (const n of cluster.nodes) {
      const out = await redisCli(n.port, ["exists", key]).catch((e: Error) => e.message)
      if (!out.includes("MOVED")) return n.port
    }
    throw new Error(`no node owns ${key}`)
  }

  it.scopedLive("two transports exchange messages through the cluster (one from nodes, one from a given Cluster client)", () =>
    Effect.gen(function*() {
      const channel = unique("cl")
      const given = new Cluster(cluster.startupNodes.slice())
      yield* Effect.addFinalizer(() => Effect.promise(() => given.quit().catch(() => "")))
      const a = yield* RedisTransport.make({ cluster: cluster.startupNodes })
      const inner = yield* Scope.make()
      const b = yield* RedisTransport.make({ client: given }).pipe(Scope.extend(inner))
      const atA = collector()
      const atB = collector()
      yield* a.subscribe(channel, atA.handlers)
      yield* b.subscribe(channel, atB.handlers).pipe(Scope.extend(inner))
      const n = 100
      const fromA = Array.from({ length: n }, (_, i) => `a${i}`)
      const fromB = Array.from({ length: n }, (_, i) => `b${i}`)
      for (const m of fromA) yield* a.publish(channel, m)
      for (const m of fromB) yield* b.publish(channel, m)
      yield* eventually("all messages at a and b", () => atA.messages.length === 2 * n && atB.messages.length === 2 * n)
      // each publisher's messages arrive in the order they were published (ioredis alone
      // would spread PUBLISH over random nodes and reorder them)
      for (const at of [atA, atB]) {
        expect(at.messages.filter((m) => m.startsWith("a"))).toEqual(fromA)
        expect(at.messages.filter((m) => m.startsWith("b"))).toEqual(fromB)
      }
      expect(atA.errors).toEqual([])
      expect(atB.errors).toEqual([])
      // closing b's transport leaves the given client open
      yield* Scope.close(inner, Exit.void)
      expect(given.status).toBe("ready")
      expect(yield* Effect.promise(() => given.ping())).toBe("PONG")
    }))

  it.scopedLive("incrExpire: keys on every master, each one atomic sequence under two concurrent transports, TTL set", () =>
    Effect.gen(function*() {
      const a = Option.getOrThrow((yield* RedisTransport.make({ cluster: cluster.startupNodes })).kv)
      const b = Option.getOrThrow((yield* RedisTransport.make({ cluster: cluster.startupNodes })).kv)
      const prefix = unique("cseq")
      // untagged keys spread over the slots; find ones on three different masters
      const byNode = new Map<number, string>()
      for (let i = 0; i < 200 && byNode.size < 3; i++) {
        const key = `${prefix}:${i}`
        const port = yield* Effect.promise(() => nodeOf(key))
        if (!byNode.has(port)) byNode.set(port, key)
      }
      expect(byNode.size).toBe(3)
      // and keys sharing one hash tag (one slot): what a multi-key operation must use
      const tagged = [`{${prefix}}:x`, `{${prefix}}:y`]
      const keys = [...byNode.values(), ...tagged]
      const perKey = 40
      const calls = keys.flatMap((key) =>
        Array.from({ length: perKey }, (_, i) => Effect.map((i % 2 === 0 ? a : b).incrExpire(key, 90), (n) => [key, n] as const))
      )
      const results = yield* Effect.all(calls, { concurrency: "unbounded" })
      for (const key of keys) {
        const values = results.filter(([k]) => k === key).map(([, n]) => n).sort((x, y) => x - y)
        expect(values).toEqual(Array.from({ length: perKey }, (_, i) => i + 1))
        const port = yield* Effect.promise(() => nodeOf(key))
        const ttl = Number((yield* Effect.promise(() => redisCli(port, ["ttl", key]))).trim())
        expect(ttl).toBeGreaterThan(80)
        expect(ttl).toBeLessThanOrEqual(90)
      }
      expect(yield* Effect.promise(() => nodeOf(tagged[0]!))).toBe(yield* Effect.promise(() => nodeOf(tagged[1]!)))
    }))

  it.live("layerFromEnv with REDIS_CLUSTER_NODES; closing the scope closes every cluster connection", () =>
    Effect.gen(function*() {
      const name = unique("clcfg")
      const channel = unique("clcfg-ch")
      const provider = ConfigProvider.fromMap(
        new Map([["REDIS_CLUSTER_NODES", cluster.startupNodes.map((n) => `${n.host}:${n.port}`).join(",")]])
      )
      const ours = () =>
        Effect.promise(() => Promise.all(cluster.nodes.map((n) => clientNames(n.port)))).pipe(
          Effect.map((lists) => lists.flat().filter((n) => n.includes(name)).length)
        )
      const before = tcpSockets()
      const got = collector()
      yield* Effect.gen(function*() {
        const t = yield* Transport
        yield* t.subscribe(channel, got.handlers)
        yield* t.publish(channel, "via env")
        yield* eventually("the message", () => got.messages.length === 1)
        expect(yield* ours()).toBeGreaterThanOrEqual(3)
      }).pipe(
        Effect.scoped,
        Effect.provide(
          RedisTransport.layerFromEnv({ connectionName: name }).pipe(Layer.provide(Layer.setConfigProvider(provider)))
        )
      )
      expect(got.messages).toEqual(["via env"])
      yield* eventuallyEffect("no connection of ours on any node", Effect.map(ours(), (n) => n === 0), 3_000)
      yield* eventually("no socket of ours in the process", () => tcpSockets() <= before, 3_000)
    }))

  it.scopedLive("RedisKv on a Cluster: appendCapped over keys on every master in one call, list, del", () =>
    Effect.gen(function*() {
      const kv = Option.getOrThrow(RedisTransport.redisKv(yield* RedisTransport.make({ cluster: cluster.startupNodes })))
      const prefix = unique("crep")
      const byNode = new Map<number, string>()
      for (let i = 0; i < 200 && byNode.size < 3; i++) {
        const key = `${prefix}:${i}`
        const port = yield* Effect.promise(() => nodeOf(key))
        if (!byNode.has(port)) byNode.set(port, key)
      }
      const keys = [...byNode.values()]
      expect(keys.length).toBe(3)
      for (let i = 0; i < 4; i++) {
        yield* kv.appendCapped(keys.map((k) => [k, new TextEncoder().encode(`${k}#${i}`), i] as const), 2, 30_000)
      }
      for (const k of keys) {
        expect((yield* kv.list(k)).map((b) => new TextDecoder().decode(b))).toEqual([`${k}#2`, `${k}#3`])
      }
      yield* kv.del(keys)
      for (const k of keys) expect(yield* kv.list(k)).toEqual([])
    }))
})
