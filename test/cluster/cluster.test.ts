/**
 * `SSEKify` instances on a real 3-master Redis Cluster (`createIORedisAdapter(new
 * Cluster(...))`, the README's way): user / room / broadcast messages cross, each frame
 * once and in order; the global seq and the Redis replay buffer work with their keys on
 * several masters (different slots).
 */
import { Cluster } from "ioredis"
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest"
import { createIORedisAdapter, type SSEKifyOptions } from "../../src/index.js"
import { type RedisCluster, redisAvailable, redisCli, startCluster, stopAll, waitUntil } from "../support/redisServer.js"
import { clientList, dataFrames, fence, Fixture, type Node, step, unique, until, waitFrames, withoutFences } from "./support.js"

describe.skipIf(!redisAvailable())("SSEKify instances on a Redis Cluster", () => {
  let cluster: RedisCluster
  const fx = new Fixture()
  beforeAll(async () => {
    cluster = await startCluster()
  }, 60_000)
  afterEach(async () => {
    await fx.dispose()
    for (const node of cluster.nodes) await redisCli(node.port, ["flushall"])
  })
  afterAll(stopAll)

  /** An adapter on a Cluster client of our own (the adapter duplicates it; we close ours). */
  const adapter = (connectionName?: string) => {
    const client = new Cluster(cluster.startupNodes.slice())
    fx.defer(() => client.quit().catch(() => client.disconnect()))
    return createIORedisAdapter(client, connectionName === undefined ? {} : { connectionName })
  }

  /** Instances named `names`; their Redis connections are named `<prefix><name>:pub|sub|kv`. */
  const nodes = async (names: ReadonlyArray<string>, options: SSEKifyOptions, prefix = unique("c")): Promise<Array<Node>> => {
    const made: Array<Node> = []
    for (const name of names) made.push(await fx.node(name, { redis: adapter(`${prefix}${name}`), ...options }))
    await Promise.all(made.map((n) => n.sse.ready()))
    return made
  }

  /** The master port holding each key (each master lists only its own keys). */
  const owners = async (pattern: string): Promise<Map<string, number>> => {
    const map = new Map<string, number>()
    for (const node of cluster.nodes) {
      const out = await redisCli(node.port, ["--scan", "--pattern", pattern])
      for (const key of out.split("\n").map((l) => l.trim()).filter((l) => l !== "")) map.set(key, node.port)
    }
    return map
  }

  it("two instances exchange user, room and broadcast messages: each frame once, each publisher's in order", async () => {
    const channel = unique("ssekify:bus:cluster")
    const [a, b] = await nodes(["A", "B"], { channel, autoFields: { timestamp: false } }) as [Node, Node]
    const aliceA = await a.open("alice", { rooms: ["r"] })
    const aliceB = await b.open("alice")
    const bobB = await b.open("bob", { rooms: ["r"] })
    await step(() => a.sse.publish("to alice", "alice", { event: "notify", id: "1" }), [aliceA, 1], [aliceB, 1])
    await step(() => b.sse.publishToRoom("r", "to r", { event: "room" }), [aliceA, 2], [bobB, 1])
    await step(() => a.sse.publish("to all"), [aliceA, 3], [aliceB, 2], [bobB, 2])
    // a burst from each instance to bob: Pub/Sub on a Cluster keeps each publisher's order
    const n = 50
    await Promise.all([
      (async () => {
        for (let i = 0; i < n; i++) await a.sse.publish({ from: "A", i }, "bob")
      })(),
      (async () => {
        for (let i = 0; i < n; i++) await b.sse.publish({ from: "B", i }, "bob")
      })()
    ])
    await waitFrames(bobB, 2 + 2 * n, "both bursts at bob", 10_000)
    await fence([a, b], [aliceA, aliceB, bobB])
    expect(withoutFences(aliceA)).toEqual([["notify", '"to alice"'], ["room", '"to r"'], [undefined, '"to all"']])
    expect(withoutFences(aliceB)).toEqual([["notify", '"to alice"'], [undefined, '"to all"']])
    const bob = withoutFences(bobB)
    expect(bob.slice(0, 2)).toEqual([["room", '"to r"'], [undefined, '"to all"']])
    const burst = bob.slice(2).map(([, d]) => JSON.parse(d) as { from: string; i: number })
    expect(burst.length).toBe(2 * n)
    for (const from of ["A", "B"]) {
      expect(burst.filter((m) => m.from === from).map((m) => m.i)).toEqual(Array.from({ length: n }, (_, i) => i))
    }
    expect(a.events.error).toEqual([])
    expect(b.events.error).toEqual([])
  }, 30_000)

  it("global seq: concurrent publishers on two instances, keys on several masters", async () => {
    const channel = unique("ssekify:bus:cluster-seq")
    const seq = { redisKeyPrefix: "ssekify:seq:" }
    const [a, b, c] = await nodes(["A", "B", "C"], { channel, autoFields: { timestamp: false }, seq }) as [Node, Node, Node]
    const alice = await c.open("alice")
    const streams = Array.from({ length: 6 }, (_, i) => `${unique("req")}-${i}`)
    const perStream = 10
    await Promise.all(
      streams.flatMap((requestId) =>
        Array.from({ length: perStream }, (_, i) => [
          a.sse.publish({ requestId, from: "A", i }, "alice"),
          b.sse.publish({ requestId, from: "B", i }, "alice")
        ]).flat()
      )
    )
    await waitFrames(alice, streams.length * perStream * 2, "every frame at C", 10_000)
    const got = alice.messages().map((m) => JSON.parse(m.data) as { requestId: string; from: string; i: number; seq: number })
    for (const requestId of streams) {
      const mine = got.filter((m) => m.requestId === requestId)
      expect(mine.map((m) => m.seq).sort((x, y) => x - y)).toEqual(Array.from({ length: 2 * perStream }, (_, i) => i))
      for (const from of ["A", "B"]) {
        const seqs = mine.filter((m) => m.from === from).map((m) => m.seq)
        for (let i = 1; i < seqs.length; i++) expect(seqs[i]!).toBeGreaterThan(seqs[i - 1]!)
      }
    }
    expect(a.sse.stats()).toMatchObject({ seqIncrsRedis: streams.length * perStream, seqIncrsLocal: 0 })
    expect(b.sse.stats()).toMatchObject({ seqIncrsRedis: streams.length * perStream, seqIncrsLocal: 0 })
    const keys = await owners("ssekify:seq:*")
    expect([...keys.keys()].sort()).toEqual(streams.map((s) => `ssekify:seq:${s}`).sort())
    expect(new Set(keys.values()).size).toBeGreaterThanOrEqual(2)
  }, 30_000)

  it("replay: 'redis' right after start: each user's list keeps the delivery order; users moving from A to B get what they missed, in order", async () => {
    const channel = unique("ssekify:bus:cluster-replay")
    const options: SSEKifyOptions = { channel, replay: "redis", recentBufferSize: 20, replayGapEvent: "gap", autoFields: { timestamp: false } }
    const prefix = unique("c")
    const [a, b, p] = await nodes(["A", "B", "P"], options, prefix) as [Node, Node, Node]
    const users = Array.from({ length: 12 }, (_, i) => `user${i}`)
    const onA = await Promise.all(users.map((u) => a.open(u, { rooms: ["all-users"] })))
    // A's first append reaches every master (its KV connections to them open on first use,
    // as ioredis opens cluster node connections lazily); the next frame follows once they
    // are open: the order of a user's frames must not depend on that timing
    await p.sse.publishToRoom("all-users", { j: 0 }, { id: "room-0" })
    await waitUntil("A's KV connection on every master", async () => {
      for (const node of cluster.nodes) {
        if (!(await clientList(node.port)).some((c) => c.name === `${prefix}A:kv`)) return false
      }
      return true
    }, 5_000, 5)
    await p.sse.publish({ j: 0 }, undefined, { id: "all-0" })
    // then to each user, to the room, to everyone, three rounds: 11 frames per user
    const expected = (u: string) => ["room-0", "all-0", ...[1, 2, 3].flatMap((j) => [`${u}-${j}`, `room-${j}`, `all-${j}`])]
    for (let j = 1; j <= 3; j++) {
      for (const u of users) await p.sse.publish({ to: u, j }, u, { id: `${u}-${j}` })
      await p.sse.publishToRoom("all-users", { j }, { id: `room-${j}` })
      await p.sse.publish({ j }, undefined, { id: `all-${j}` })
    }
    await Promise.all(onA.map((c) => waitFrames(c, 11, "eleven frames at A")))
    // Pub/Sub delivered them in order (one publisher)
    users.forEach((u, i) => expect(dataFrames(onA[i]!).map((f) => f.id)).toEqual(expected(u)))
    // the lists: one per user (own slot), on several masters, in the order A delivered
    const key = (u: string) => `${channel}:replay:{${u}}`
    const listIds = async (u: string): Promise<Array<string>> => {
      const owner = (await owners(key(u))).get(key(u))
      if (owner === undefined) return []
      const out = await redisCli(owner, ["zrange", key(u), "0", "-1"])
      // an item is `<id length>:<id>` then the frame, whose first line is `id: <id>`
      return out.split("\n").map((l) => /id: (\S+)$/.exec(l)?.[1]).filter((id): id is string => id !== undefined)
    }
    await waitUntil("every list complete", async () => (await Promise.all(users.map(listIds))).every((ids) => ids.length === 11), 5_000)
    const keys = await owners(`${channel}:replay:*`)
    expect([...keys.keys()].sort()).toEqual(users.map(key).sort())
    expect(new Set(keys.values()).size).toBeGreaterThanOrEqual(2)
    for (const u of users) expect(await listIds(u), `the replay list of ${u}`).toEqual(expected(u))

    for (const c of onA) c.close()
    await until(() => a.events.disconnect.length === users.length, 5_000, "A noticed")
    // each reconnects to B after its first frame of its own
    const onB = await Promise.all(users.map((u) => b.open(u, { lastEventId: `${u}-1` })))
    await Promise.all(onB.map((c) => waitFrames(c, 8, "eight replayed frames at B")))
    users.forEach((u, i) => expect(dataFrames(onB[i]!).map((f) => f.id)).toEqual(expected(u).slice(3)))
    expect(b.sse.stats()).toMatchObject({ replayed: 8 * users.length, replayMisses: 0 })
    expect(b.events.error).toEqual([])
  }, 30_000)
})
