/**
 * Cluster-wide presence and the cluster-wide `maxConnectionsPerUser`, on a real
 * redis-server: three ssekify instances in three child processes, real SSE clients,
 * one instance SIGKILLed. Plus the in-process checks (options, errors, Redis away).
 */
import { type ChildProcess, spawn } from "node:child_process"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, afterEach, describe, expect, it } from "vitest"
import { Cluster } from "ioredis"
import { createIORedisAdapter, createMemoryBus, Presence, SSEKify } from "../src/index.js"
import { redisAvailable, redisCli, type RedisServer, startCluster, startRedis, stopAll, waitUntil } from "./support/redisServer.js"
import { connect, type RawClient, request, startServer } from "./support/sse.js"

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..")
const HEARTBEAT_MS = 200
const TTL_MS = 1000

interface Instance {
  readonly child: ChildProcess
  readonly url: string
  readonly instanceId: string
  count(user: string): Promise<{ cluster: number; local: number }>
  stats(): Promise<{ stats: { connections: number }; errors: Array<string> }>
  kill(): Promise<void>
}

let children: Array<ChildProcess> = []
let clients: Array<RawClient> = []
afterEach(() => {
  for (const c of clients) c.close()
  clients = []
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL")
  children = []
})
afterAll(stopAll)

const startInstance = (env: Record<string, string>): Promise<Instance> =>
  new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", "test/support/presenceInstance.ts"], {
      cwd: REPO,
      env: { ...process.env, HEARTBEAT_MS: String(HEARTBEAT_MS), TTL_MS: String(TTL_MS), ...env },
      stdio: ["pipe", "pipe", "pipe"]
    })
    children.push(child)
    let out = ""
    let err = ""
    const timer = setTimeout(() => reject(new Error(`instance did not start within 20 s: ${err}`)), 20_000)
    child.stderr!.on("data", (d: Buffer) => (err += d.toString()))
    child.once("exit", (code, signal) => {
      clearTimeout(timer)
      reject(new Error(`instance exited (${code ?? signal}) before listening: ${err}`))
    })
    child.stdout!.on("data", (d: Buffer) => {
      out += d.toString()
      const line = out.split("\n")[0]
      if (!out.includes("\n") || line === undefined) return
      clearTimeout(timer)
      const { instanceId, port } = JSON.parse(line) as { port: number; instanceId: string }
      const url = `http://127.0.0.1:${port}`
      resolve({
        child,
        url,
        instanceId,
        count: async (user) => {
          const r = await request(`${url}/count?u=${encodeURIComponent(user)}`)
          if (r.status !== 200) throw new Error(`count failed: ${r.body}`)
          return JSON.parse(r.body)
        },
        stats: async () => JSON.parse((await request(`${url}/stats`)).body),
        kill: () =>
          new Promise<void>((done) => {
            child.once("exit", () => done())
            child.kill("SIGKILL")
          })
      })
    })
  })

const open = async (instance: Instance, user: string): Promise<RawClient> => {
  const c = await connect(`${instance.url}/sse?u=${encodeURIComponent(user)}`)
  clients.push(c)
  if (c.status === 200) await c.waitFor((x) => x.text().includes("retry:"), 5_000, "retry: line")
  return c
}

/** Polls until `user`'s cluster-wide count seen from `from` is `n`; returns the ms it took. */
const clusterCountIs = async (from: Instance, user: string, n: number, timeoutMs = 5_000): Promise<number> => {
  const start = Date.now()
  let last = -1
  await waitUntil(`cluster count of ${user} = ${n} (last ${last})`, async () => (last = (await from.count(user)).cluster) === n, timeoutMs, 25)
  return Date.now() - start
}

const three = async (redis: RedisServer, channel: string, env: Record<string, string> = {}) =>
  Promise.all([1, 2, 3].map((i) => startInstance({ REDIS_URL: redis.url, CHANNEL: channel, INSTANCE_ID: `i${i}-${channel}`, ...env })))

describe.skipIf(!redisAvailable())("cluster-wide presence (three processes, one redis-server)", () => {
  it("counts every instance's connections; a SIGKILLed instance's connections vanish within ttlMs", async () => {
    const redis = await startRedis()
    const [a, b, c] = await three(redis, "p1")
    await open(a!, "alice")
    await open(a!, "alice")
    const onB = await open(b!, "alice")
    await open(c!, "alice")
    await open(c!, "bob")
    await clusterCountIs(a!, "alice", 4)
    expect(await b!.count("alice")).toEqual({ cluster: 4, local: 1 })
    expect(await c!.count("bob")).toEqual({ cluster: 1, local: 1 })
    expect(await a!.count("nobody")).toEqual({ cluster: 0, local: 0 })

    // an orderly disconnect is removed at once (one round trip), not after the TTL
    onB.close()
    const removedMs = await clusterCountIs(a!, "alice", 3, 2_000)
    expect(removedMs).toBeLessThan(TTL_MS)

    // entries are refreshed: still there after several TTLs
    await new Promise((r) => setTimeout(r, 3 * TTL_MS))
    expect((await a!.count("alice")).cluster).toBe(3)

    const killedAt = Date.now()
    await c!.kill()
    await clusterCountIs(a!, "bob", 0, TTL_MS + 2_000)
    await clusterCountIs(a!, "alice", 2, 1_000)
    const vanishedMs = Date.now() - killedAt
    // bound: the last heartbeat was at most heartbeatMs before the kill, its entries live ttlMs
    expect(vanishedMs).toBeLessThanOrEqual(TTL_MS + 300)
    expect((await b!.count("alice")).cluster).toBe(2)
    // the key of a user with no live connection is gone (PEXPIRE), nothing left behind
    await waitUntil("bob's presence key to expire", async () => (await redisCli(redis.port, ["exists", "p1:presence:bob"])).trim() === "0", 3 * TTL_MS, 50)
    console.log(`[presence] orderly removal ${removedMs} ms; SIGKILLed instance gone from presence after ${vanishedMs} ms (ttlMs ${TTL_MS}, heartbeatMs ${HEARTBEAT_MS})`)
  }, 40_000)

  it("maxConnectionsPerUser holds across instances ('reject': 429 before any SSE header), also under a burst", async () => {
    const redis = await startRedis()
    const [a, b, c] = await three(redis, "p2", { MAX_PER_USER: "2" })
    const first = await open(a!, "alice")
    await open(b!, "alice")
    const third = await open(c!, "alice")
    expect(third.status).toBe(429)
    expect(String(third.headers["content-type"])).not.toContain("text/event-stream")
    await third.ended()
    expect(third.text()).not.toContain("retry:")
    expect((await c!.count("alice"))).toEqual({ cluster: 2, local: 0 })
    expect((await c!.stats()).errors).toEqual(["LIMIT_EXCEEDED"])

    first.close()
    await clusterCountIs(c!, "alice", 1)
    const again = await open(c!, "alice")
    expect(again.status).toBe(200)

    // 9 simultaneous connects of one user on three instances: exactly 2 admitted
    const burst = await Promise.all([a, b, c, a, b, c, a, b, c].map((i) => open(i!, "carol")))
    expect(burst.filter((x) => x.status === 200)).toHaveLength(2)
    expect(burst.filter((x) => x.status === 429)).toHaveLength(7)
    expect((await a!.count("carol")).cluster).toBe(2)
  }, 40_000)

  it("'closeOldest' closes the user's oldest connection on another instance within heartbeatMs", async () => {
    const redis = await startRedis()
    const [a, b, c] = await three(redis, "p3", { MAX_PER_USER: "2", POLICY: "closeOldest" })
    const oldest = await open(a!, "alice")
    await new Promise((r) => setTimeout(r, 5)) // distinct creation times
    const middle = await open(b!, "alice")
    const newest = await open(c!, "alice")
    const at = Date.now()
    expect(newest.status).toBe(200)
    await oldest.ended(HEARTBEAT_MS + 2_000)
    const closedMs = Date.now() - at
    expect(closedMs).toBeLessThanOrEqual(HEARTBEAT_MS + 500)
    expect(middle.isEnded()).toBe(false)
    expect(newest.isEnded()).toBe(false)
    await clusterCountIs(b!, "alice", 2)
    expect((await a!.count("alice")).local).toBe(0)
    expect((await a!.stats()).errors).toEqual(["LIMIT_EXCEEDED"])
    expect((await c!.stats()).errors).toEqual(["LIMIT_EXCEEDED"])

    // the local closeOldest and the cluster's do not both evict: dave's 3rd connection on A
    // closes A's oldest at once, and nothing on B
    const d1 = await open(a!, "dave")
    const d2 = await open(b!, "dave")
    const d3 = await open(b!, "dave")
    await d1.ended(2_000)
    await new Promise((r) => setTimeout(r, 3 * HEARTBEAT_MS)) // heartbeats that could carry a second eviction
    expect(d2.isEnded() || d3.isEnded()).toBe(false)
    expect((await a!.count("dave")).cluster).toBe(2)
    const e1 = await open(b!, "erin")
    const e2 = await open(b!, "erin")
    const e3 = await open(b!, "erin") // local eviction on B (e1); the cluster count is then 1 + this one
    await e1.ended(2_000)
    await new Promise((r) => setTimeout(r, 3 * HEARTBEAT_MS))
    expect(e2.isEnded() || e3.isEnded()).toBe(false)
    expect((await c!.count("erin")).cluster).toBe(2)
  }, 40_000)

  it("a crashed instance's slots under the cap free up within ttlMs", async () => {
    const redis = await startRedis()
    const [a, b, c] = await three(redis, "p4", { MAX_PER_USER: "2" })
    await open(a!, "alice")
    await open(b!, "alice")
    expect((await open(c!, "alice")).status).toBe(429)
    const killedAt = Date.now()
    await b!.kill()
    let admitted: RawClient | undefined
    await waitUntil("a connection to be admitted after the crash", async () => {
      const x = await open(c!, "alice")
      if (x.status === 200) admitted = x
      return admitted !== undefined
    }, TTL_MS + 2_000, 50)
    expect(Date.now() - killedAt).toBeLessThanOrEqual(TTL_MS + 300)
    expect((await a!.count("alice")).cluster).toBe(2)
  }, 40_000)
})

describe.skipIf(!redisAvailable())("presence in one process", () => {
  let sses: Array<SSEKify> = []
  afterEach(async () => {
    for (const c of clients) c.close()
    clients = []
    for (const s of sses) await s.shutdown({ announce: false, graceMs: 0 })
    sses = []
  })

  it("needs the Redis transport; bad options and cluster queries without presence are typed errors", async () => {
    expect(() => new SSEKify({ presence: true })).toThrow(/presence needs the Redis transport/)
    expect(() => new SSEKify({ connectionLimitScope: "cluster", maxConnectionsPerUser: 1, redis: createMemoryBus().adapter() }))
      .toThrow(/needs the Redis transport/)
    // regression: a layer failing after its (async-closing) bus was opened threw Effect's
    // "cannot be resolved synchronously" instead of the InvalidInput (replay: 'redis' too)
    expect(() => new SSEKify({ replay: "redis", redis: createMemoryBus().adapter() })).toThrow(/replay 'redis' needs the Redis transport/)
    expect(() => new SSEKify({ presence: { heartbeatMs: 1000, ttlMs: 1500 } })).toThrow(/presence.ttlMs must be at least 2/)
    expect(() => new SSEKify({ connectionLimitScope: "everywhere" as never })).toThrow(/connectionLimitScope/)
    const plain = new SSEKify()
    sses.push(plain)
    expect(plain.getUserConnectionCount("alice")).toBe(0)
    expect(plain.isUserOnline("alice")).toBe(false)
    const rejected = await plain.getUserConnectionCount("alice", { scope: "cluster" }).then(() => undefined, (e: unknown) => e)
    expect(rejected).toBeInstanceOf(Presence.PresenceDisabled)
    expect((rejected as Presence.PresenceDisabled).code).toBe("PRESENCE_DISABLED")
  })

  it("on a 3-master Redis Cluster: counts and the cluster-wide cap, users on many slots", async () => {
    const cluster = await startCluster()
    const seeds: Array<Cluster> = []
    const servers: Array<Awaited<ReturnType<typeof startServer>>> = []
    try {
      const instance = async () => {
        const seed = new Cluster(cluster.startupNodes.map((n) => ({ ...n })))
        seeds.push(seed)
        const sse = new SSEKify({
          redis: createIORedisAdapter(seed),
          channel: "p6",
          keepAliveMs: 0,
          presence: { heartbeatMs: HEARTBEAT_MS, ttlMs: TTL_MS },
          maxConnectionsPerUser: 2,
          connectionLimitScope: "cluster"
        })
        sses.push(sse)
        const server = await startServer((req, res) => {
          sse.registerConnection(new URL(req.url ?? "/", "http://x").searchParams.get("u") ?? "guest", res)
        })
        servers.push(server)
        return { sse, server }
      }
      const a = await instance()
      const b = await instance()
      // users whose keys land on all three masters
      const users = Array.from({ length: 12 }, (_, i) => `user-${i}`)
      const slots = new Set(await Promise.all(users.map(async (u) => Number(await redisCli(cluster.nodes[0]!.port, ["cluster", "keyslot", `p6:presence:${u}`])))))
      expect(slots.size).toBeGreaterThan(3)
      for (const u of users) {
        for (const x of [a, b, b]) {
          const c = await connect(`${x.server.url}/?u=${u}`)
          clients.push(c)
        }
      }
      const statuses = clients.map((c) => c.status)
      expect(statuses.filter((s) => s === 200)).toHaveLength(2 * users.length)
      expect(statuses.filter((s) => s === 429)).toHaveLength(users.length)
      for (const u of users) {
        expect(await a.sse.getUserConnectionCount(u, { scope: "cluster" })).toBe(2)
        expect(await b.sse.isUserOnline(u, { scope: "cluster" })).toBe(true)
      }
    } finally {
      for (const s of servers) await s.close()
      for (const seed of seeds) seed.disconnect()
    }
  }, 60_000)

  it("Redis away: queries reject with TransportError, capped registrations fail open; the heartbeat restores presence after a restart", async () => {
    const redis = await startRedis()
    const sse = new SSEKify({
      redis: redis.url,
      channel: "p5",
      keepAliveMs: 0,
      presence: { heartbeatMs: HEARTBEAT_MS, ttlMs: TTL_MS },
      maxConnectionsPerUser: 5,
      connectionLimitScope: "cluster"
    })
    sses.push(sse)
    const errors: Array<string> = []
    sse.on("error", (e) => errors.push(String((e as { code?: string }).code)))
    const server = await startServer((req, res) => {
      sse.registerConnection(new URL(req.url ?? "/", "http://x").searchParams.get("u") ?? "guest", res)
    })
    try {
      const first = await connect(`${server.url}/?u=alice`)
      clients.push(first)
      expect(first.status).toBe(200)
      expect(await sse.getUserConnectionCount("alice", { scope: "cluster" })).toBe(1)
      expect(await sse.isUserOnline("alice", { scope: "cluster" })).toBe(true)

      await redis.kill()
      const query = await sse.isUserOnline("alice", { scope: "cluster" }).then(() => undefined, (e: unknown) => e)
      expect((query as { code?: string }).code).toBe("TRANSPORT_ERROR")
      const t0 = Date.now()
      const second = await connect(`${server.url}/?u=alice`)
      clients.push(second)
      expect(second.status).toBe(200) // admitted without Redis: fail open
      expect(Date.now() - t0).toBeLessThan(4_000)
      expect(errors).toContain("TRANSPORT_ERROR")
      expect(sse.getUserConnectionCount("alice")).toBe(2)

      await redis.restart() // empty: no persistence
      await waitUntil("the heartbeat to restore both connections", async () =>
        (await sse.getUserConnectionCount("alice", { scope: "cluster" }).catch(() => -1)) === 2, 5_000, 50)
    } finally {
      await server.close()
    }
  }, 30_000)
})
