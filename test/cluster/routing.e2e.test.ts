/**
 * Routed mode end to end on a real 3-master Redis Cluster: two instances (`SseKify.layer`
 * over `RedisTransport.layer({ cluster, routing: "user" })`, replay in Redis) on real
 * node:http servers. Users whose channels are on each of the three masters get what the
 * other instance publishes, once and in order, through SPUBLISH on the owning shard
 * (`PUBSUB SHARDNUMSUB` there is 1, elsewhere 0); a reconnect with `Last-Event-ID` gets what
 * was published while it was away; the last connection leaving unsubscribes the shard channel.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Scope from "effect/Scope"
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest"
import { SseKify, Transport } from "../../src/index.js"
import { RedisTransport } from "../../src/redis.js"
import { slotOf } from "../../src/internal/redis/slot.js"
import { type RedisCluster, redisAvailable, redisCli, startCluster, stopAll, waitUntil } from "../support/redisServer.js"
import { connect, type RawClient, startServer } from "../support/sse.js"
import { dataFrames, Fixture, unique, until } from "./support.js"

const fx = new Fixture()
afterEach(() => fx.dispose())

const quiet = { keepAliveMs: 0, autoFields: { timestamp: false }, shutdown: { announce: false, graceMs: 0 } } as const

const numbers = (c: RawClient): Array<number> =>
  dataFrames(c).map((f) => JSON.parse(f.data) as { i?: number }).filter((d) => typeof d.i === "number").map((d) => d.i!)

/** The masters and their slot ranges (`CLUSTER NODES` of the node on `port`). */
const masters = async (port: number): Promise<Array<{ port: number; slots: Array<readonly [number, number]> }>> => {
  const out = await redisCli(port, ["cluster", "nodes"])
  return out.split("\n").filter((l) => l.includes("master") && !l.includes("fail")).map((line) => {
    const f = line.trim().split(" ")
    return {
      port: Number(/:(\d+)@/.exec(f[1]!)?.[1]),
      slots: f.slice(8).filter((s) => /^\d/.test(s)).map((s) => {
        const [a, b] = s.split("-")
        return [Number(a), Number(b ?? a)] as const
      })
    }
  })
}

const shardNumsub = async (port: number, channel: string): Promise<number> =>
  Number((await redisCli(port, ["pubsub", "shardnumsub", channel])).trim().split(/\s+/)[1] ?? 0)

const calls = async (port: number, command: string): Promise<number> => {
  const out = await redisCli(port, ["info", "commandstats"])
  return Number(new RegExp(`cmdstat_${command}:calls=(\\d+)`).exec(out)?.[1] ?? 0)
}

describe.skipIf(!redisAvailable())("routed mode end to end on a 3-master Redis Cluster", () => {
  let cluster: RedisCluster
  beforeAll(async () => {
    cluster = await startCluster()
  }, 60_000)
  afterAll(stopAll)

  const instance = async (name: string, channel: string) => {
    const scope = Effect.runSync(Scope.make())
    fx.defer(() => Effect.runPromise(Scope.close(scope, Exit.void)))
    const layer = SseKify.layer({ ...quiet, channel, instanceId: name, replay: "redis" }).pipe(
      Layer.provide(RedisTransport.layer({ cluster: cluster.startupNodes, routing: "user", connectionName: unique(name) }))
    )
    const sse = await Effect.runPromise(Effect.map(Layer.buildWithScope(layer, scope), Context.get(SseKify.SseKify)))
    await Effect.runPromise(sse.ready)
    const http = await startServer((req, res) => {
      const url = new URL(req.url ?? "/", "http://x")
      sse.unsafeRegisterConnection(url.searchParams.get("u") ?? "guest", res)
    })
    fx.defer(() => http.close())
    const open = async (user: string, lastEventId?: string) => {
      const c = await connect(`${http.url}/?u=${encodeURIComponent(user)}`, lastEventId === undefined ? undefined : { headers: { "last-event-id": lastEventId } })
      fx.defer(() => c.close())
      await c.waitFor((x) => x.text().includes("retry:"))
      return c
    }
    return { sse, open, stats: () => Effect.runSync(sse.stats) }
  }

  it("users on each master get B's messages through SPUBLISH on the owning shard, once, in order; a reconnect is replayed; the last disconnect unsubscribes", async () => {
    const channel = unique("e2e-cl")
    const a = await instance("a", channel)
    const b = await instance("b", channel)
    const nodes = await masters(cluster.nodes[0]!.port)
    expect(nodes.length).toBe(3)
    const ownerOf = (ch: string) => nodes.find((n) => n.slots.some(([lo, hi]) => slotOf(ch) >= lo && slotOf(ch) <= hi))!.port
    // one user per master
    const users: Array<{ user: string; owner: number }> = []
    for (let k = 0; users.length < 3 && k < 1000; k++) {
      const owner = ownerOf(Transport.userChannel(channel, `user${k}`))
      if (!users.some((u) => u.owner === owner)) users.push({ user: `user${k}`, owner })
    }
    expect(users.length).toBe(3)

    const clients = await Promise.all(users.map(({ user }) => a.open(user)))
    for (const { user, owner } of users) {
      const ch = Transport.userChannel(channel, user)
      await waitUntil(`${ch} on its shard`, async () => (await shardNumsub(owner, ch)) === 1, 5_000)
      for (const other of nodes.filter((n) => n.port !== owner)) expect(await shardNumsub(other.port, ch)).toBe(0)
    }
    const spublishBefore = await Promise.all(nodes.map((n) => calls(n.port, "spublish")))
    for (let i = 0; i < 10; i++) {
      for (const { user } of users) await Effect.runPromise(b.sse.publish({ i }, user, { id: `${user}-${i}` }))
    }
    for (const c of clients) await until(() => numbers(c).length === 10, 5_000, "10 frames")
    for (const c of clients) expect(numbers(c)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    const spublishAfter = await Promise.all(nodes.map((n) => calls(n.port, "spublish")))
    // each master got its user's 10 SPUBLISHes
    for (const { owner } of users) {
      const k = nodes.findIndex((n) => n.port === owner)
      expect(spublishAfter[k]! - spublishBefore[k]!).toBe(10)
    }
    expect(a.stats().received).toBe(30)
    expect(b.stats().received).toBe(0)

    // a reconnect (Last-Event-ID) of the first user: what B published meanwhile, then live
    const { user, owner } = users[0]!
    const ch = Transport.userChannel(channel, user)
    clients[0]!.close()
    await waitUntil(`${ch} unsubscribed on its shard`, async () => (await shardNumsub(owner, ch)) === 0, 5_000)
    for (let i = 10; i < 15; i++) await Effect.runPromise(b.sse.publish({ i }, user, { id: `${user}-${i}` }))
    const again = await a.open(user, `${user}-9`)
    await Effect.runPromise(b.sse.publish({ i: 15 }, user, { id: `${user}-15` }))
    await until(() => numbers(again).includes(15), 5_000, "the reconnect's frames")
    expect(numbers(again)).toEqual([10, 11, 12, 13, 14, 15])
    again.close()
    await waitUntil(`${ch} unsubscribed again`, async () => (await shardNumsub(owner, ch)) === 0, 5_000)
  })
})
