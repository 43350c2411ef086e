/**
 * The examples that need Redis, on real `redis-server` processes started here: cross-
 * server via Redis (A holds the connection, B publishes) and multi-tenant across two
 * instances on one Redis; the Cluster example twice on a 3-master cluster; the Sentinel
 * example twice on a sentinel set. Each client connects to one instance and the other
 * instance sends. Skips with one loud line without redis-server; fails under CI=true.
 */
import { randomUUID } from "node:crypto"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import {
  type RedisCluster,
  redisAvailable,
  redisCli,
  type RedisSentinel,
  type RedisServer,
  startCluster,
  startRedis,
  startSentinel,
  stopAll,
  waitUntil
} from "../support/redisServer.js"
import { type Api, ensureBuilt, events, loadApi, opened, startExample, stopExamples, waitEvents } from "./harness.js"

const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/
const stamped = (data: object) => ({ ...data, timestamp: expect.stringMatching(ISO) })

/** Subscribers of `channel`, summed over `ports` (a cluster counts per node). */
const subscribers = async (ports: ReadonlyArray<number>, channel: string): Promise<number> => {
  let total = 0
  for (const port of ports) {
    const out = (await redisCli(port, ["pubsub", "numsub", channel])).trim().split(/\s+/)
    total += Number(out[1] ?? 0)
  }
  return total
}

/** Waits (bounded) until every instance has subscribed: a publish before that is lost by design. */
const subscribed = (ports: ReadonlyArray<number>, channels: ReadonlyArray<string>, n: number) =>
  waitUntil(`${n} subscribers on ${channels.join(", ")}`, async () => {
    for (const channel of channels) if ((await subscribers(ports, channel)) < n) return false
    return true
  }, 10_000, 50)

/** Titles run through none of the given views of one api.http. */
const unusedByAll = (...apis: Array<Api>) => apis.reduce((left, api) => left.filter((t) => api.unused().includes(t)), apis[0]!.unused())

describe.skipIf(!redisAvailable())("examples on Redis", () => {
  let redis: RedisServer
  let cluster: RedisCluster
  let sentinel: RedisSentinel

  beforeAll(async () => {
    // the three Redis set-ups and the build side by side
    ;[redis, cluster, sentinel] = await Promise.all([startRedis(), startCluster(), startSentinel(), ensureBuilt()])
  }, 120_000)

  afterAll(async () => {
    await stopExamples()
    await stopAll()
  })

  it("cross-redis: B publishes to alice, Redis carries it to A, which holds her connection", async () => {
    const channel = `ssekify:bus:examples:${randomUUID()}`
    const env = { REDIS_URL: redis.url, SSE_CHANNEL: channel }
    const b = await startExample("examples/express/cross-redis-b.cjs", { env: { ...env, PROCESS_DELAY_MS: "20" } })
    const a = await startExample("examples/express/cross-redis-a.cjs", { env: { ...env, B_URL: b.url } })
    await subscribed([redis.port], [channel], 2)
    const api = loadApi("examples/express/cross-redis.api.http", { a: a.url, b: b.url })

    const alice = await api.open("A: open an SSE connection as alice")
    await opened(alice)
    const started = await api.send("A: start a job for alice (A -> B -> Redis -> A -> alice)")
    const { cid } = started.json()
    expect(started.json()).toEqual({ accepted: true, cid: expect.stringMatching(/^cid_[0-9a-f-]{36}$/) })
    await waitEvents(alice, 1, "the job result through Redis")
    const direct = await api.send("B: process a job directly (B publishes through Redis)")
    expect(direct.json()).toEqual({ processing: true, cid: "cid_direct" })
    await waitEvents(alice, 2, "the direct job's result through Redis")
    expect(events(alice)).toEqual([
      ["job:done", stamped({ cid, ok: true, echo: { msg: "work please" }, at: expect.any(Number) })],
      ["job:done", stamped({ cid: "cid_direct", ok: true, echo: { msg: "straight to B" }, at: expect.any(Number) })]
    ])
    expect((await api.send("A: stats (received counts messages from other instances)")).json())
      .toMatchObject({ connections: 1, received: 2, published: 0, errorCount: 0 })
    expect((await api.send("B: stats (published counts messages put on the bus)")).json())
      .toMatchObject({ connections: 0, published: 2, errorCount: 0 })
    expect(api.unused()).toEqual([])
    alice.close()
    // shutdown() closes the Redis connections too: both exit by themselves on SIGTERM
    expect(await Promise.all([a.stop(), b.stop()])).toEqual([{ code: 0, signal: null }, { code: 0, signal: null }])
  })

  it("multitenant on two instances: a tenant's publish crosses instances on its own channel only", async () => {
    const env = { REDIS_URL: redis.url }
    const [a, b] = await Promise.all([
      startExample("examples/express/multitenant.cjs", { env }),
      startExample("examples/express/multitenant.cjs", { env })
    ])
    await subscribed([redis.port], ["ssekify:bus:tenant:t1", "ssekify:bus:tenant:t2"], 2)
    // the connections on A, every send on B
    const atA = loadApi("examples/express/multitenant.api.http", { host: a.url })
    const atB = loadApi("examples/express/multitenant.api.http", { host: b.url })

    const t1 = await atA.open("t1: open an SSE connection as alice")
    const t2 = await atA.open("t2: open an SSE connection as alice")
    await opened(t1)
    await opened(t2)
    // sendTo* is local: B holds no connection
    expect((await atB.send("t1: notify alice (t2's alice gets nothing)")).json()).toEqual({ delivered: 0 })
    expect((await atB.send("t2: notify alice")).json()).toEqual({ delivered: 0 })
    expect((await atB.send("t2: send to room global (this instance)")).json()).toEqual({ delivered: 0 })
    // publish* crosses instances, each tenant on its channel
    expect((await atB.send("t1: broadcast (t1 only)")).json()).toEqual({ ok: true })
    expect((await atB.send("t1: publish to room global (t1 on every instance)")).json()).toEqual({ ok: true })
    expect((await atB.send("t2: broadcast (t2 only)")).json()).toEqual({ ok: true })
    await waitEvents(t1, 2)
    await waitEvents(t2, 1)
    expect(events(t1)).toEqual([
      ["broadcast", stamped({ msg: "broadcast from t1" })],
      ["room", stamped({ msg: "published room message in t1" })]
    ])
    expect(events(t2)).toEqual([["broadcast", stamped({ msg: "broadcast from t2" })]])
    // what each tenant's instance on A took off the bus
    expect((await atA.send("t1: stats")).json()).toMatchObject({ connections: 1, received: 2 })
    expect((await fetch(`${a.url}/t2/stats`).then((r) => r.json()))).toMatchObject({ connections: 1, received: 1 })
    expect((await atB.send("An unknown tenant (404)")).status).toBe(404)
    expect((await atA.send("t1: close alice's connections")).json()).toEqual({ closed: true })
    await t1.ended()
    expect(unusedByAll(atA, atB)).toEqual([])
    t2.close()
    expect(await Promise.all([a.stop(), b.stop()])).toEqual([{ code: 0, signal: null }, { code: 0, signal: null }])
  })

  const highAvailability = (
    name: string,
    script: string,
    env: () => Record<string, string>,
    ports: () => Array<number>
  ) =>
    it(`${name}: two instances; B's publish, broadcast and room reach alice on A`, async () => {
      const channel = `ssekify:bus:examples:${randomUUID()}`
      const [a, b] = await Promise.all([
        startExample(script, { env: { ...env(), SSE_CHANNEL: channel } }),
        startExample(script, { env: { ...env(), SSE_CHANNEL: channel } })
      ])
      await subscribed(ports(), [channel], 2)
      const api = loadApi("examples/express/redis-ha.api.http", { a: a.url, b: b.url })

      const alice = await api.open("A: open an SSE connection as alice")
      await opened(alice)
      expect((await api.send("B: notify alice locally (B has no connection of hers: delivered 0)")).json()).toEqual({ delivered: 0 })
      expect((await api.send("B: publish to alice (reaches A through Redis)")).json()).toEqual({ ok: true })
      expect((await api.send("B: broadcast (every instance)")).json()).toEqual({ ok: true })
      expect((await api.send("B: publish to room global (every instance)")).json()).toEqual({ ok: true })
      await waitEvents(alice, 3, `3 events through ${name}`)
      // one publisher: they arrive in the order they were published
      expect(events(alice)).toEqual([
        ["notify", stamped({ msg: "hi alice, from B" })],
        ["broadcast", stamped({ msg: "hello everyone, from B" })],
        ["room", stamped({ msg: "hello room, from B" })]
      ])
      expect((await api.send("A: stats")).json()).toMatchObject({ connections: 1, received: 3, errorCount: 0 })
      expect(a.output() + b.output()).not.toMatch(/\[ssekify\]/)
      expect(api.unused()).toEqual([])
      alice.close()
      expect(await Promise.all([a.stop(), b.stop()])).toEqual([{ code: 0, signal: null }, { code: 0, signal: null }])
    })

  highAvailability(
    "Redis Cluster (3 masters)",
    "examples/express/redis-cluster.cjs",
    () => ({ REDIS_CLUSTER_NODES: cluster.startupNodes.map((n) => `${n.host}:${n.port}`).join(",") }),
    () => cluster.nodes.map((n) => n.port)
  )

  highAvailability(
    "Redis Sentinel",
    "examples/express/redis-sentinel.cjs",
    () => ({
      REDIS_SENTINELS: sentinel.sentinelAddresses.map((s) => `${s.host}:${s.port}`).join(","),
      REDIS_SENTINEL_MASTER: sentinel.name
    }),
    () => [sentinel.master.port]
  )
})
