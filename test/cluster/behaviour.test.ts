/**
 * One behavioural suite, written once, run against every transport of the facade:
 *
 * - the in-process bus (`createMemoryBus().adapter()`),
 * - a real single-node `redis-server` given as a URL string (`redis: url`),
 * - the same Redis through `createIORedisAdapter(url)`.
 *
 * Several `SSEKify` instances, each on its own `node:http` server with real SSE clients,
 * exchange user / room / broadcast messages; each frame reaches each connection exactly
 * once (exact frame lists, after a fence); `sendTo*` stay local; the `'publish'` and
 * `'message-sent'` events; one global `seq` under concurrent publishers; tenants on two
 * channels of one Redis stay apart (messages, seq keys, replay keys).
 *
 * One Redis for the whole file (keys flushed after each test). Without redis-server the
 * Redis cases skip with one loud line; under CI=true they fail.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest"
import { createIORedisAdapter, createMemoryBus, type SSEKifyOptions } from "../../src/index.js"
import { redisAvailable, redisCli, type RedisServer, startRedis, stopAll } from "../support/redisServer.js"
import { fence, fencesOf, Fixture, frames, type Node, scanKeys, step, unique, waitFrames, withoutFences } from "./support.js"

interface TransportCase {
  readonly name: string
  readonly needsRedis: boolean
  /** The `redis` option of one instance (a fresh adapter each time). */
  readonly redis: () => SSEKifyOptions["redis"]
  /** The Redis port, for key checks (undefined on the memory bus). */
  readonly port: () => number | undefined
}

let server: RedisServer | undefined
let bus = createMemoryBus()

const cases: ReadonlyArray<TransportCase> = [
  { name: "memory bus", needsRedis: false, redis: () => bus.adapter(), port: () => undefined },
  { name: "Redis (URL)", needsRedis: true, redis: () => server!.url, port: () => server!.port },
  { name: "Redis (createIORedisAdapter)", needsRedis: true, redis: () => createIORedisAdapter(server!.url), port: () => server!.port }
]

const available = redisAvailable()

afterAll(stopAll)

for (const tc of cases) {
  describe.skipIf(tc.needsRedis && !available)(`multi-instance behaviour over the ${tc.name}`, () => {
    const fx = new Fixture()
    beforeAll(async () => {
      if (tc.needsRedis && server === undefined) server = await startRedis()
    })
    afterEach(async () => {
      await fx.dispose()
      bus = createMemoryBus()
      if (tc.needsRedis) await redisCli(server!.port, ["flushall"])
    })

    /** `n` instances on one channel, subscribed (`ready()`). */
    const nodes = async (names: ReadonlyArray<string>, options: SSEKifyOptions = {}): Promise<Array<Node>> => {
      const channel = options.channel ?? unique("ssekify:bus:test")
      const made: Array<Node> = []
      for (const name of names) made.push(await fx.node(name, { redis: tc.redis(), channel, ...options }))
      await Promise.all(made.map((n) => n.sse.ready()))
      return made
    }

    it("two instances: user, room and broadcast messages cross; each connection gets each frame exactly once", async () => {
      const [a, b] = await nodes(["A", "B"]) as [Node, Node]
      const aliceA = await a.open("alice")
      const aliceB = await b.open("alice")
      const bobB = await b.open("bob", { rooms: ["r"] })
      const carolA = await a.open("carol", { rooms: ["r"] })
      const all = [aliceA, aliceB, bobB, carolA]

      await step(() => a.sse.publish({ n: 1 }, "alice", { event: "notify", id: "m1" }), [aliceA, 1], [aliceB, 1])
      await step(() => b.sse.publish({ n: 2 }, "bob"), [bobB, 1])
      await step(() => b.sse.publishToRoom("r", { n: 3 }, { event: "room" }), [bobB, 2], [carolA, 1])
      await a.sse.publish({ n: 4 })
      await fence([a, b], all)

      // The publisher stamps the data once (autoFields.timestamp); the receiver writes what
      // it got: the same frame text on both instances.
      const text = (f: [string | undefined, string]) => [f[0], JSON.parse(f[1]).n]
      expect(withoutFences(aliceA).map(text)).toEqual([["notify", 1], [undefined, 4]])
      expect(withoutFences(aliceB)).toEqual(withoutFences(aliceA))
      expect(withoutFences(bobB).map(text)).toEqual([[undefined, 2], ["room", 3], [undefined, 4]])
      expect(withoutFences(carolA).map(text)).toEqual([["room", 3], [undefined, 4]])
      expect(withoutFences(carolA)[1]).toEqual(withoutFences(bobB)[2])
      expect(aliceA.messages()[0]!.id).toBe("m1")
      expect(aliceB.messages()[0]!.id).toBe("m1")
      // every fence once per connection too
      for (const c of all) expect(fencesOf(c)).toEqual(["A", "B"])
      expect(a.events.error).toEqual([])
      expect(b.events.error).toEqual([])
    })

    it("three instances: exact frames everywhere, 'publish' with the envelope on receivers only, 'message-sent' per delivery", async () => {
      const plain = { autoFields: { timestamp: false as const } }
      const [a, b, c] = await nodes(["A", "B", "C"], plain) as [Node, Node, Node]
      const aliceA = await a.open("alice", { rooms: ["r"] })
      const aliceB = await b.open("alice")
      const aliceC = await c.open("alice")
      const daveC = await c.open("dave", { rooms: ["r"] })
      const all = [aliceA, aliceB, aliceC, daveC]

      await step(() => b.sse.publish({ to: "alice" }, "alice", { event: "notify", id: "7" }), [aliceA, 1], [aliceB, 1], [aliceC, 1])
      await step(() => a.sse.publishToRoom("r", { to: "r" }, { event: "room" }), [aliceA, 2], [daveC, 1])
      await step(() => c.sse.publish("everyone", undefined, { event: "bc" }), [aliceA, 3], [aliceB, 2], [aliceC, 2], [daveC, 2])
      await b.sse.publish("nobody-here", "zed") // a user connected nowhere
      await fence([a, b, c], all)

      const alice = [["notify", '{"to":"alice"}'], ["bc", '"everyone"']]
      expect(withoutFences(aliceA)).toEqual([["notify", '{"to":"alice"}'], ["room", '{"to":"r"}'], ["bc", '"everyone"']])
      expect(withoutFences(aliceB)).toEqual(alice)
      expect(withoutFences(aliceC)).toEqual(alice)
      expect(withoutFences(daveC)).toEqual([["room", '{"to":"r"}'], ["bc", '"everyone"']])

      const notFence = (env: { event?: string }) => env.event !== "fence"
      const envelope = (fields: object, origin: Node) => ({ ...fields, at: expect.any(Number), origin: origin.sse.instanceId })
      const fromB = envelope({ type: "user", target: "alice", data: { to: "alice" }, event: "notify", id: "7" }, b)
      const fromA = envelope({ type: "room", target: "r", data: { to: "r" }, event: "room" }, a)
      const fromC = envelope({ type: "all", data: "everyone", event: "bc" }, c)
      const toZed = envelope({ type: "user", target: "zed", data: "nobody-here" }, b)
      expect(a.events.publish.filter(notFence)).toEqual([fromB, fromC, toZed])
      expect(b.events.publish.filter(notFence)).toEqual([fromA, fromC])
      expect(c.events.publish.filter(notFence)).toEqual([fromB, fromA, toZed])
      // the wire format of 0.1.6: exactly these keys, nothing else
      expect(Object.keys(a.events.publish[0]).sort()).toEqual(["at", "data", "event", "id", "origin", "target", "type"])

      // 'message-sent': once per delivery call that found connections, on whichever
      // instance delivered (fences are broadcasts: one 'all' per instance per fence)
      const sent = (n: Node) => n.events["message-sent"].slice(0, n.events["message-sent"].length - 3)
      expect(sent(a)).toEqual([
        { scope: "user", userId: "alice", count: 1 },
        { scope: "room", room: "r", count: 1 },
        { scope: "all", count: 1 }
      ])
      expect(sent(b)).toEqual([
        { scope: "user", userId: "alice", count: 1 },
        { scope: "all", count: 1 }
      ])
      expect(sent(c)).toEqual([
        { scope: "user", userId: "alice", count: 1 },
        { scope: "room", room: "r", count: 1 },
        { scope: "all", count: 2 }
      ])
      for (const n of [a, b, c]) expect(n.events["message-sent"].slice(-3)).toEqual(Array(3).fill({ scope: "all", count: n === c ? 2 : 1 }))
      // fences included: each instance published one and received the others'
      expect(a.sse.stats()).toMatchObject({ published: 2, received: 5, errorCount: 0 })
      expect(b.sse.stats()).toMatchObject({ published: 3, received: 4, errorCount: 0 })
      expect(c.sse.stats()).toMatchObject({ published: 2, received: 5, errorCount: 0 })
    })

    it("sendToUser / sendToRoom / sendToAll stay on their instance", async () => {
      const [a, b] = await nodes(["A", "B"], { autoFields: { timestamp: false } }) as [Node, Node]
      const aliceA = await a.open("alice", { rooms: ["r"] })
      const aliceB = await b.open("alice", { rooms: ["r"] })
      const bobB = await b.open("bob")
      expect(a.sse.sendToUser("alice", "u", { event: "local" })).toBe(1)
      expect(a.sse.sendToRoom("r", "room", { event: "local" })).toBe(1)
      expect(a.sse.sendToAll("all", { event: "local" })).toBe(1)
      expect(b.sse.sendToUser("bob", "b-only", { event: "local" })).toBe(1)
      await fence([a, b], [aliceA, aliceB, bobB])
      expect(withoutFences(aliceA)).toEqual([["local", '"u"'], ["local", '"room"'], ["local", '"all"']])
      expect(withoutFences(aliceB)).toEqual([])
      expect(withoutFences(bobB)).toEqual([["local", '"b-only"']])
      // nothing but the fences went on the bus
      expect(a.sse.stats().published).toBe(1)
      expect(b.sse.stats().published).toBe(1)
      expect(b.events.publish.map((e: { event?: string }) => e.event)).toEqual(["fence"])
    })

    it("global seq: two instances publishing concurrently for one requestId make one sequence; seqIncrsRedis counts them", async () => {
      // the documented default prefix, given explicitly: the default may follow the channel
      const seq = { redisKeyPrefix: "ssekify:seq:" }
      const [a, b, c] = await nodes(["A", "B", "C"], { autoFields: { timestamp: false }, seq }) as [Node, Node, Node]
      const aliceC = await c.open("alice")
      const n = 25
      const requestId = unique("req")
      const publish = (node: Node, i: number) =>
        node.sse.publish({ requestId, phase: "progress", from: node.name, i }, "alice", { event: "notify" })
      // every publish starts in the same tick, A and B alternating: the increments of the
      // two instances race on the shared counter
      await Promise.all(Array.from({ length: n }, (_, i) => [publish(a, i), publish(b, i)]).flat())
      await waitFrames(aliceC, 2 * n, "every frame at C", 10_000)

      const got = aliceC.messages().map((m) => JSON.parse(m.data) as { seq: number; from: string; i: number })
      expect(got.length).toBe(2 * n)
      // one sequence: every value 0..2n-1 exactly once
      expect(got.map((m) => m.seq).sort((x, y) => x - y)).toEqual(Array.from({ length: 2 * n }, (_, i) => i))
      // each publisher's frames carry increasing values in the order it published them
      for (const from of ["A", "B"]) {
        const mine = got.filter((m) => m.from === from)
        expect(mine.map((m) => m.i)).toEqual(Array.from({ length: n }, (_, i) => i))
        for (let i = 1; i < mine.length; i++) expect(mine[i]!.seq).toBeGreaterThan(mine[i - 1]!.seq)
      }
      expect(a.sse.stats()).toMatchObject({ seqIncrsRedis: n, seqIncrsLocal: 0, lastSeqKvFallbackAt: 0 })
      expect(b.sse.stats()).toMatchObject({ seqIncrsRedis: n, seqIncrsLocal: 0, lastSeqKvFallbackAt: 0 })
      expect(c.sse.stats()).toMatchObject({ seqIncrsRedis: 0, seqIncrsLocal: 0 })
      expect(codes([a, b, c])).toEqual([])
      const port = tc.port()
      if (port !== undefined) {
        expect(await scanKeys(port, "*")).toEqual([`ssekify:seq:${requestId}`])
        expect((await redisCli(port, ["get", `ssekify:seq:${requestId}`])).trim()).toBe(String(2 * n))
        const ttl = Number((await redisCli(port, ["ttl", `ssekify:seq:${requestId}`])).trim())
        expect(ttl).toBeGreaterThan(86_400 - 30)
        expect(ttl).toBeLessThanOrEqual(86_400)
      }
    })

    /**
     * Two tenants as the README shows them: one instance per tenant, channel
     * `ssekify:bus:tenant:<id>`, nothing else configured. The same user id, room and
     * requestId in both.
     */
    const tenants = async (extra: (tenant: string) => SSEKifyOptions) => {
      const t1 = unique("ssekify:bus:tenant:t1")
      const t2 = unique("ssekify:bus:tenant:t2")
      const redisReplay = tc.needsRedis ? { replay: "redis" as const } : {}
      const opts = (channel: string): SSEKifyOptions => ({ channel, autoFields: { timestamp: false }, ...redisReplay, ...extra(channel) })
      const [a1, b1] = await nodes(["A1", "B1"], opts(t1)) as [Node, Node]
      const [a2, b2] = await nodes(["A2", "B2"], opts(t2)) as [Node, Node]
      const alice1 = await b1.open("alice", { rooms: ["r"] })
      const alice2 = await b2.open("alice", { rooms: ["r"] })
      const send = async (node: Node, tenant: string) => {
        await node.sse.publish({ requestId: "same-req", tenant, what: "user" }, "alice", { id: `${tenant}-1` })
        await node.sse.publishToRoom("r", { requestId: "same-req", tenant, what: "room" }, { id: `${tenant}-2` })
        await node.sse.publish({ requestId: "same-req", tenant, what: "all" }, undefined, { id: `${tenant}-3` })
      }
      await send(a1, "t1")
      await send(a2, "t2")
      await send(a1, "t1")
      await fence([a1, b1], [alice1])
      await fence([a2, b2], [alice2])
      return { t1, t2, a1, b1, a2, b2, alice1, alice2 }
    }

    const parsed = (client: ReturnType<typeof frames>) => client.map(([, d]) => JSON.parse(d) as { tenant: string; what: string; seq: number })

    it("tenants on two channels: no message of the other tenant; seq and replay keys apart (README setup: only the channel differs)", async () => {
      const { t1, t2, b1, b2, alice1, alice2 } = await tenants(() => ({}))
      const got1 = parsed(withoutFences(alice1))
      const got2 = parsed(withoutFences(alice2))
      expect(got1.map((m) => [m.tenant, m.what])).toEqual([["t1", "user"], ["t1", "room"], ["t1", "all"], ["t1", "user"], ["t1", "room"], ["t1", "all"]])
      expect(got2.map((m) => [m.tenant, m.what])).toEqual([["t2", "user"], ["t2", "room"], ["t2", "all"]])
      expect(b1.events.publish.every((e: { data: { tenant?: string; fence?: string } }) => e.data.tenant === "t1" || e.data.fence !== undefined)).toBe(true)
      expect(b2.events.publish.every((e: { data: { tenant?: string; fence?: string } }) => e.data.tenant === "t2" || e.data.fence !== undefined)).toBe(true)
      // each tenant's stream 'same-req' is numbered on its own: 0, 1, 2, …
      expect(got1.map((m) => m.seq)).toEqual([0, 1, 2, 3, 4, 5])
      expect(got2.map((m) => m.seq)).toEqual([0, 1, 2])
      const port = tc.port()
      if (port !== undefined) {
        // every key in Redis belongs to one tenant (its channel is its prefix)
        const keys = await scanKeys(port)
        const owner = (key: string) => (key.startsWith(`${t1}:`) ? "t1" : key.startsWith(`${t2}:`) ? "t2" : "none")
        expect(keys.filter((k) => owner(k) === "none")).toEqual([])
        expect(keys.filter((k) => owner(k) === "t1").length).toBeGreaterThan(0)
        expect(keys.filter((k) => owner(k) === "t2").length).toBeGreaterThan(0)
      }
    })

    it("tenants on two channels, each with its own seq.redisKeyPrefix: nothing shared at all", async () => {
      const { t1, t2, alice1, alice2 } = await tenants((channel) => ({ seq: { redisKeyPrefix: `${channel}:seq:` } }))
      const got1 = parsed(withoutFences(alice1))
      const got2 = parsed(withoutFences(alice2))
      expect(got1.map((m) => [m.tenant, m.what, m.seq])).toEqual([
        ["t1", "user", 0], ["t1", "room", 1], ["t1", "all", 2], ["t1", "user", 3], ["t1", "room", 4], ["t1", "all", 5]
      ])
      expect(got2.map((m) => [m.tenant, m.what, m.seq])).toEqual([["t2", "user", 0], ["t2", "room", 1], ["t2", "all", 2]])
      const port = tc.port()
      if (port !== undefined) {
        expect(await scanKeys(port)).toEqual([`${t1}:replay:{alice}`, `${t1}:seq:same-req`, `${t2}:replay:{alice}`, `${t2}:seq:same-req`].sort())
        // an item is `<id length>:<id><frame>`; the frame's data line names the tenant
        const replayed = async (key: string) =>
          (await redisCli(port, ["zrange", key, "0", "-1"])).split("\n").map((l) => /"tenant":"(t\d)"/.exec(l)?.[1]).filter((t) => t !== undefined)
        // the fences carry no id: only the tenant's own six / three frames are kept
        expect(await replayed(`${t1}:replay:{alice}`)).toEqual(Array(6).fill("t1"))
        expect(await replayed(`${t2}:replay:{alice}`)).toEqual(Array(3).fill("t2"))
        expect((await redisCli(port, ["get", `${t1}:seq:same-req`])).trim()).toBe("6")
        expect((await redisCli(port, ["get", `${t2}:seq:same-req`])).trim()).toBe("3")
      }
    })
  })
}

const codes = (nodes: ReadonlyArray<Node>): Array<unknown> => nodes.flatMap((n) => n.events.error.map((e: { code?: string }) => e.code ?? e))
