/**
 * Routed channels with sharded Pub/Sub (`SSUBSCRIBE` / `SPUBLISH`) on a real Redis
 * Cluster of 3 masters with one replica each: every channel on the master of its slot,
 * no classic PUBLISH, and subscriptions that follow a failover and a slot move.
 */
import { expect, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import { afterAll, beforeAll, describe } from "vitest"
import * as RedisConnection from "../../src/RedisConnection.js"
import * as RedisTransport from "../../src/RedisTransport.js"
import { Transport, userChannel } from "../../src/Transport.js"
import { slotOf } from "../../src/internal/redis/slot.js"
import * as TransportRedis from "../../src/Transport/Redis.js"
import { type RedisCluster, redisAvailable, redisCli, startCluster, stopAll } from "../support/redisServer.js"
import { eventually, info, unique } from "../redis/helpers.js"
import { receiver } from "../support/routedReceiver.js"

interface ClusterNode {
  readonly id: string
  readonly port: number
  readonly master: boolean
  readonly failed: boolean
  readonly slots: ReadonlyArray<readonly [number, number]>
}

/** `CLUSTER NODES` as seen by the node on `port`. */
const clusterNodes = async (port: number): Promise<Array<ClusterNode>> => {
  const out = await redisCli(port, ["cluster", "nodes"])
  return out.split("\n").filter((l) => l.trim() !== "").map((line) => {
    const f = line.split(" ")
    const slots = f.slice(8).filter((s) => /^\d/.test(s)).map((s) => {
      const [a, b] = s.split("-")
      return [Number(a), Number(b ?? a)] as const
    })
    return {
      id: f[0]!,
      port: Number(/:(\d+)@/.exec(f[1]!)?.[1]),
      master: f[2]!.includes("master"),
      failed: f[2]!.includes("fail"),
      slots
    }
  })
}

/** `CLUSTER KEYSLOT` of `key`. */
const keyslot = async (port: number, key: string): Promise<number> => Number((await redisCli(port, ["cluster", "keyslot", key])).trim())

/** Shard subscribers of each channel on the node on `port` (`PUBSUB SHARDNUMSUB`: local to the node). */
const shardNumsubs = async (port: number, channels: ReadonlyArray<string>): Promise<Array<number>> => {
  const out = (await redisCli(port, ["pubsub", "shardnumsub", ...channels])).trim().split(/\s+/)
  return channels.map((_, i) => Number(out[2 * i + 1] ?? 0))
}

const shardNumsub = async (port: number, channel: string): Promise<number> => (await shardNumsubs(port, [channel]))[0]!

/** `calls` of `command` on the node on `port`. */
const calls = async (port: number, command: string): Promise<number> => {
  const stats = await info(port, "commandstats")
  return Number(/calls=(\d+)/.exec(stats.get(`cmdstat_${command}`) ?? "")?.[1] ?? 0)
}

const sumCalls = (ports: ReadonlyArray<number>, command: string) =>
  Effect.promise(() => Promise.all(ports.map((p) => calls(p, command)))).pipe(Effect.map((xs) => xs.reduce((a, b) => a + b, 0)))


describe.skipIf(!redisAvailable())("Redis routed channels, sharded Pub/Sub (3-master Cluster with replicas)", () => {
  let cluster: RedisCluster
  beforeAll(async () => {
    cluster = await startCluster({ replicas: 1 })
    // every replica is in sync (a failover needs it)
    const deadline = Date.now() + 20_000
    for (const n of cluster.nodes) {
      for (;;) {
        const role = await info(n.port, "replication")
        if (role.get("role") === "master" || role.get("master_link_status") === "up") break
        if (Date.now() > deadline) throw new Error(`replica ${n.port} not in sync`)
        await new Promise((r) => setTimeout(r, 100))
      }
    }
  }, 60_000)
  afterAll(stopAll)

  const livePorts = () => cluster.nodes.filter((n) => n.running).map((n) => n.port)

  /** The master that owns `slot`, from the view of a live node. */
  const ownerOf = async (slot: number): Promise<ClusterNode> => {
    const nodes = await clusterNodes(livePorts()[0]!)
    const owner = nodes.find((n) => n.master && !n.failed && n.slots.some(([a, b]) => slot >= a && slot <= b))
    if (owner === undefined) throw new Error(`no master owns slot ${slot}`)
    return owner
  }

  /** `n` users whose channels cover every master (owners from one `CLUSTER NODES`). */
  const usersOverMasters = async (app: string, n: number) => {
    const users = Array.from({ length: n }, (_, i) => `user${i}`)
    const channels = users.map((u) => userChannel(app, u))
    const nodes = await clusterNodes(livePorts()[0]!)
    const owners = channels.map((c) => {
      const slot = slotOf(c)
      return nodes.find((x) => x.master && !x.failed && x.slots.some(([a, b]) => slot >= a && slot <= b))!.port
    })
    return { channels, owners }
  }

  const routedOn = (startupNodes: RedisCluster["startupNodes"], sharded?: boolean | "auto") =>
    Effect.gen(function*() {
      const connection = yield* RedisConnection.make({ cluster: startupNodes })
      const transport = yield* TransportRedis.makeWith(connection, {
        routing: "user",
        ...(sharded !== undefined ? { sharded } : {})
      })
      return { connection, routed: transport.routed! }
    })

  it.scopedLive("channels in slots of every master all receive through SSUBSCRIBE on the owning shard; no classic PUBLISH / SUBSCRIBE", () =>
    Effect.gen(function*() {
      const app = unique("sh")
      const { channels, owners } = yield* Effect.promise(() => usersOverMasters(app, 30))
      expect(new Set(owners).size).toBe(3)
      // the library's slot of a channel is Redis' own
      for (const c of channels.slice(0, 5)) expect(slotOf(c)).toBe(yield* Effect.promise(() => keyslot(livePorts()[0]!, c)))
      const masters = Array.from(new Set(owners))
      const publishBefore = yield* sumCalls(masters, "publish")
      const subscribeBefore = yield* sumCalls(masters, "subscribe")
      const ssubscribeBefore = yield* sumCalls(masters, "ssubscribe")
      const { routed } = yield* routedOn(cluster.startupNodes) // sharded: "auto"
      const { routed: publisher } = yield* routedOn(cluster.startupNodes)
      const at = receiver()
      yield* routed.listen(at.onMessage, at.onError)
      // one fiber per add, all in one tick
      yield* Fiber.joinAll(yield* Effect.forEach(channels, (c) => Effect.fork(routed.add([c]))))
      for (const port of masters) {
        // the owning shard has the subscriber, the others do not
        const subs = yield* Effect.promise(() => shardNumsubs(port, channels))
        expect(subs).toEqual(channels.map((_, i) => (owners[i] === port ? 1 : 0)))
      }
      for (const channel of channels) yield* publisher.publish(channel, `to ${channel}`)
      yield* eventually("a message on every channel", () => channels.every((c) => at.of(c).length === 1))
      expect(channels.map((c) => at.of(c))).toEqual(channels.map((c) => [`to ${c}`]))
      expect(yield* sumCalls(masters, "publish")).toBe(publishBefore)
      expect(yield* sumCalls(masters, "subscribe")).toBe(subscribeBefore)
      // one SSUBSCRIBE per slot (Redis refuses one across slots): here one per channel
      expect((yield* sumCalls(masters, "ssubscribe")) - ssubscribeBefore).toBe(new Set(channels).size)
      expect(at.errors).toEqual([])
    }), 30_000)

  it.scopedLive("channels sharing a hash slot leave in ONE SSUBSCRIBE; sharded: false keeps classic Pub/Sub on the Cluster", () =>
    Effect.gen(function*() {
      const app = unique("sh")
      // a room and user of one tag share a slot: {same} in both
      const same = [userChannel(app, "same"), `${app}:r:{same}`, `${app}:x:{same}`]
      const masters = livePorts()
      const { routed } = yield* routedOn(cluster.startupNodes, true)
      const before = yield* sumCalls(masters, "ssubscribe")
      yield* Fiber.joinAll(yield* Effect.forEach(same, (c) => Effect.fork(routed.add([c]))))
      expect((yield* sumCalls(masters, "ssubscribe")) - before).toBe(1)

      const { routed: classic } = yield* routedOn(cluster.startupNodes, false)
      const { routed: classicPublisher } = yield* routedOn(cluster.startupNodes, false)
      const at = receiver()
      yield* classic.listen(at.onMessage, at.onError)
      const subscribeBefore = yield* sumCalls(masters, "subscribe")
      const ch = userChannel(app, "classic")
      yield* classic.add([ch])
      expect((yield* sumCalls(masters, "subscribe")) - subscribeBefore).toBe(1)
      yield* classicPublisher.publish(ch, "c1")
      yield* eventually("c1", () => at.of(ch).length === 1)
    }), 30_000)

  it.scopedLive("RedisTransport.layer({ cluster, routing: 'user' }) routes sharded", () =>
    Effect.gen(function*() {
      const context = yield* Layer.build(RedisTransport.layer({ cluster: cluster.startupNodes, routing: "user" }))
      const transport = Context.get(context, Transport)
      expect(transport.routed).toBeDefined()
      const ch = userChannel(unique("sh"), "layer")
      const at = receiver()
      yield* transport.routed!.listen(at.onMessage, at.onError)
      yield* transport.routed!.add([ch])
      const owner = yield* Effect.promise(async () => (await ownerOf(await keyslot(livePorts()[0]!, ch))).port)
      expect(yield* Effect.promise(() => shardNumsub(owner, ch))).toBe(1)
      yield* transport.routed!.publish(ch, "hi")
      yield* eventually("hi", () => at.of(ch).length === 1)
    }), 30_000)

  it.scopedLive("a slot moved to another master: the subscription follows it and messages flow again", () =>
    Effect.gen(function*() {
      const app = unique("sh")
      const ch = userChannel(app, "mover")
      const slot = yield* Effect.promise(() => keyslot(livePorts()[0]!, ch))
      const source = yield* Effect.promise(() => ownerOf(slot))
      const nodes = yield* Effect.promise(() => clusterNodes(source.port))
      const target = nodes.find((n) => n.master && !n.failed && n.id !== source.id)!
      const { routed } = yield* routedOn(cluster.startupNodes)
      const { routed: publisher } = yield* routedOn(cluster.startupNodes)
      const at = receiver()
      yield* routed.listen(at.onMessage, at.onError)
      yield* routed.add([ch])
      yield* publisher.publish(ch, "before")
      yield* eventually("before", () => at.of(ch).length === 1)

      // move the (keyless) slot: IMPORTING on the target, MIGRATING on the source, then NODE everywhere
      yield* Effect.promise(async () => {
        await redisCli(target.port, ["cluster", "setslot", String(slot), "importing", source.id])
        await redisCli(source.port, ["cluster", "setslot", String(slot), "migrating", target.id])
        for (const n of nodes.filter((x) => x.master && !x.failed)) {
          await redisCli(n.port, ["cluster", "setslot", String(slot), "node", target.id])
        }
      })
      const moved = Date.now()
      // published every 200 ms (bounded) until one arrives on the new owner
      let i = 0
      while (at.of(ch).length < 2 && Date.now() - moved < 20_000) {
        yield* Effect.ignore(publisher.publish(ch, `after-${i++}`))
        yield* Effect.sleep("200 millis")
      }
      const followMs = Date.now() - moved
      console.log("[sharded] slot move:", JSON.stringify({ slot, from: source.port, to: target.port, followMs, publishes: i }))
      expect(at.of(ch).length).toBeGreaterThanOrEqual(2)
      expect(at.errors).toEqual([])
      expect(yield* Effect.promise(() => shardNumsub(target.port, ch))).toBe(1)
    }), 40_000)

  it.scopedLive("a master killed and its replica promoted: the subscriptions follow and messages flow again within a bounded time", () =>
    Effect.gen(function*() {
      const app = unique("sh")
      const { channels, owners } = yield* Effect.promise(() => usersOverMasters(app, 30))
      const { routed } = yield* routedOn(cluster.startupNodes)
      const { routed: publisher } = yield* routedOn(cluster.startupNodes)
      const at = receiver()
      yield* routed.listen(at.onMessage, at.onError)
      yield* routed.add(channels)
      for (const c of channels) yield* publisher.publish(c, "before")
      yield* eventually("every channel before", () => channels.every((c) => at.of(c).length === 1))

      const victimPort = owners[0]!
      const victim = cluster.nodes.find((n) => n.port === victimPort)!
      const onVictim = channels.filter((_, i) => owners[i] === victimPort)
      expect(onVictim.length).toBeGreaterThan(0)
      yield* Effect.promise(() => victim.kill())
      const killed = Date.now()
      // every channel gets one more message once its shard is back (published every 200 ms, bounded)
      let round = 0
      while (!channels.every((c) => at.of(c).length >= 2) && Date.now() - killed < 30_000) {
        for (const c of channels) if (at.of(c).length < 2) yield* Effect.ignore(publisher.publish(c, `after-${round}`))
        round++
        yield* Effect.sleep("200 millis")
      }
      const recoveredMs = Date.now() - killed
      const promoted = yield* Effect.promise(() => ownerOf(slotOf(channels[owners.indexOf(victimPort)]!)))
      console.log("[sharded] failover:", JSON.stringify({ killed: victimPort, promoted: promoted.port, recoveredMs, rounds: round, onVictim: onVictim.length }))
      expect(channels.filter((c) => at.of(c).length < 2)).toEqual([])
      expect(promoted.port).not.toBe(victimPort)
      expect(recoveredMs).toBeLessThan(30_000)
      for (const c of onVictim) expect(yield* Effect.promise(() => shardNumsub(promoted.port, c))).toBe(1)
    }), 60_000)
})
