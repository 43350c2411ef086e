/**
 * Several `SSEKify` instances on one real `redis-server` (the facade, end to end):
 *
 * - raw messages published with `redis-cli PUBLISH`: malformed ones are reported as
 *   `BUS_MESSAGE_INVALID` and dropped, the subscription goes on; messages in the 0.1.6
 *   wire format are delivered (rolling upgrade), and what we publish is that format;
 * - cross-instance replay (`replay: 'redis'`): a connection to A dies with frames in
 *   flight, the browser reconnects to B with `Last-Event-ID` and gets exactly what it
 *   missed, once, in order, before live frames; the gap signal on B;
 * - `shutdown()` closes the three Redis connections; a child process that used Redis
 *   exits by itself after `shutdown()`.
 */
import { spawn } from "node:child_process"
import * as path from "node:path"
import { Redis } from "ioredis"
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest"
import { createIORedisAdapter, ShuttingDown, SSEKify, type SSEKifyOptions } from "../../src/index.js"
import { redisAvailable, redisCli, type RedisServer, startRedis, stopAll, waitUntil } from "../support/redisServer.js"
import { connect, startServer } from "../support/sse.js"
import { clientList, codes, dataFrames, Fixture, frames, type Node, scanKeys, step, unique, until, waitFrames } from "./support.js"

describe.skipIf(!redisAvailable())("SSEKify instances on one Redis", () => {
  let server: RedisServer
  const fx = new Fixture()
  beforeAll(async () => {
    server = await startRedis()
  })
  afterEach(async () => {
    await fx.dispose()
    await redisCli(server.port, ["flushall"])
  })
  afterAll(stopAll)

  const nodes = async (names: ReadonlyArray<string>, options: SSEKifyOptions): Promise<Array<Node>> => {
    const made: Array<Node> = []
    for (const name of names) made.push(await fx.node(name, { redis: server.url, ...options }))
    await Promise.all(made.map((n) => n.sse.ready()))
    return made
  }

  const cli = (...args: Array<string>) => redisCli(server.port, args)

  describe("raw bus messages (redis-cli PUBLISH)", () => {
    it("malformed messages: a BUS_MESSAGE_INVALID 'error' each, dropped, and the subscription goes on", async () => {
      const channel = unique("ssekify:bus:raw")
      const [a, b] = await nodes(["A", "B"], { channel, autoFields: { timestamp: false } }) as [Node, Node]
      const alice = await a.open("alice")
      const bad = [
        "not json at all",
        "{\"type\":\"user\",\"target\":\"alice\"", // truncated JSON
        JSON.stringify({ type: "user", data: { x: 1 }, at: 1, origin: "x" }), // no target
        JSON.stringify({ type: "room", target: "", data: 1, at: 1 }), // empty target
        JSON.stringify({ type: "everyone", data: 1, at: 1 }), // wrong type
        JSON.stringify({ type: "all", at: 1 }), // no data
        JSON.stringify({ type: "all", data: 1 }), // no at
        JSON.stringify([1, 2, 3]),
        "42"
      ]
      for (const message of bad) {
        expect((await cli("publish", channel, message)).trim()).toBe("2") // both instances subscribed
      }
      await until(() => a.events.error.length === bad.length && b.events.error.length === bad.length, 5_000, "one error per bad message")
      expect(codes(a)).toEqual(Array(bad.length).fill("BUS_MESSAGE_INVALID"))
      expect(codes(b)).toEqual(Array(bad.length).fill("BUS_MESSAGE_INVALID"))
      const messages = a.events.error.map((e: Error) => e.message)
      expect(messages[0]).toMatch(/^bus_message_invalid: not JSON/)
      expect(messages[2]).toContain("non-empty target")
      expect(a.events.error[0].sample).toBe("not json at all")
      expect(a.events.publish).toEqual([])
      expect(a.sse.stats()).toMatchObject({ errorCount: bad.length, received: 0 })
      // the subscription is alive: a raw valid message and another instance's publish arrive
      await cli("publish", channel, JSON.stringify({ type: "user", target: "alice", data: "raw ok", at: Date.now(), origin: "cli" }))
      await step(() => b.sse.publish("from B", "alice"), [alice, 2])
      expect(frames(alice)).toEqual([[undefined, '"raw ok"'], [undefined, '"from B"']])
      expect(alice.isEnded()).toBe(false)
    })

    it("rolling upgrade: messages of a 0.1.6 instance are delivered, and ours are in its wire format", async () => {
      const channel = unique("ssekify:bus:upgrade")
      const [a] = await nodes(["A"], { channel, autoFields: { timestamp: false } }) as [Node]
      const alice = await a.open("alice", { rooms: ["lobby"] })
      const bob = await a.open("bob")
      const at = Date.now()
      // exactly what ssekify 0.1.6 puts on the channel: { type, target, data, event, id, at, origin }
      const old = [
        { type: "user", target: "alice", data: { hello: "alice" }, event: "notify", id: "41", at, origin: "old-instance-1" },
        { type: "room", target: "lobby", data: { hello: "lobby" }, event: "room", at, origin: "old-instance-1" },
        { type: "all", data: "to everyone", at, origin: "old-instance-1" },
        { type: "user", target: "bob", data: 42, id: 43, at, origin: "old-instance-1" } // a numeric id
      ]
      for (const message of old) await cli("publish", channel, JSON.stringify(message))
      await waitFrames(alice, 3, "alice's three")
      await waitFrames(bob, 2, "bob's two")
      expect(alice.messages().map((m) => [m.id, m.event, m.data])).toEqual([
        ["41", "notify", '{"hello":"alice"}'],
        [undefined, "room", '{"hello":"lobby"}'],
        [undefined, undefined, '"to everyone"']
      ])
      expect(bob.messages().map((m) => [m.id, m.event, m.data])).toEqual([[undefined, undefined, '"to everyone"'], ["43", undefined, "42"]])
      expect(a.events.error).toEqual([])
      expect(a.events.publish.map((e: { origin: string }) => e.origin)).toEqual(Array(4).fill("old-instance-1"))

      // the other way: a raw subscriber (an old instance) sees that shape, in that key order,
      // plus `n` (the publisher's counter, ordering the shared replay store), which 0.1.6 ignores
      const raw = new Redis(server.url, { lazyConnect: true })
      fx.defer(() => raw.quit().catch(() => raw.disconnect()))
      await raw.connect()
      const seen: Array<string> = []
      raw.on("message", (_channel: string, message: string) => seen.push(message))
      await raw.subscribe(channel)
      await a.sse.publish({ n: 1 }, "alice", { event: "notify", id: "m1" })
      await a.sse.publishToRoom("lobby", "r")
      await a.sse.publish(["all"])
      await until(() => seen.length === 3, 5_000, "three messages at the raw subscriber")
      const parsed = seen.map((m) => JSON.parse(m) as Record<string, unknown>)
      expect(parsed.map((m) => Object.keys(m))).toEqual([
        ["type", "target", "data", "event", "id", "at", "origin", "n"],
        ["type", "target", "data", "at", "origin", "n"],
        ["type", "data", "at", "origin", "n"]
      ])
      const n = expect.any(Number)
      expect(parsed).toEqual([
        { type: "user", target: "alice", data: { n: 1 }, event: "notify", id: "m1", at: expect.any(Number), origin: a.sse.instanceId, n },
        { type: "room", target: "lobby", data: "r", at: expect.any(Number), origin: a.sse.instanceId, n },
        { type: "all", data: ["all"], at: expect.any(Number), origin: a.sse.instanceId, n }
      ])
    })
  })

  describe("cross-instance replay (replay: 'redis')", () => {
    const replayOptions = (channel: string, size: number): SSEKifyOptions => ({
      channel,
      replay: "redis",
      recentBufferSize: size,
      replayGapEvent: "replay-gap",
      autoFields: { timestamp: false }
    })
    const ids = (client: Parameters<typeof dataFrames>[0]) => dataFrames(client).map((f) => f.id)
    const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => `f${from + i}`)
    const llen = async (key: string) => Number((await cli("zcard", key)).trim())
    const sentTo = (node: Node, userId: string) =>
      node.events["message-sent"].filter((e: { scope: string; userId?: string }) => e.scope === "user" && e.userId === userId).length

    /**
     * alice reads `total` frames' worth from A, but stops reading after the first five:
     * A goes on writing the rest into the socket (frames in flight), then the socket is
     * destroyed. She reconnects to B with the `Last-Event-ID` of the last frame she got;
     * five live frames are published the moment B registers her (while B is still
     * reading the replay from Redis); a fence after them.
     */
    const moveToB = async (size: number, total: number) => {
      const channel = unique("ssekify:bus:replay")
      const key = `${channel}:replay:{alice}`
      const [a, b, p] = await nodes(["A", "B", "P"], replayOptions(channel, size)) as [Node, Node, Node]
      const pad = "x".repeat(200)
      const publish = (i: number) => p.sse.publish({ i, pad }, "alice", { event: "job", id: `f${i}` })

      const first = await a.open("alice")
      for (let i = 1; i <= 5; i++) await publish(i)
      await waitFrames(first, 5, "the first five at A")
      first.response.pause()
      for (let i = 6; i <= total; i++) await publish(i)
      await until(() => sentTo(a, "alice") === total, 10_000, `A wrote all ${total} frames to alice's connection`)
      await waitUntil(`A's ${total} frames in Redis`, async () => (await llen(key)) === total, 5_000)
      const got = ids(first)
      const last = got[got.length - 1]!
      const k = Number(last.slice(1))
      expect(got).toEqual(range(1, k))
      expect(k).toBeLessThan(total) // frames were in flight when the connection died
      first.close()
      await until(() => a.events.disconnect.length === 1, 5_000, "A noticed the connection is gone")

      let live: Promise<unknown> | undefined
      b.sse.once("connect", () => {
        live = (async () => {
          for (let i = total + 1; i <= total + 5; i++) await publish(i)
          await p.sse.publish("fence", "alice", { event: "fence" })
        })()
      })
      const again = await b.open("alice", { lastEventId: last })
      await until(() => live !== undefined, 5_000, "the live publishes to start")
      await live
      await again.waitFor((c) => c.messages().some((m) => m.event === "fence"), 10_000, "the fence at B")
      return { a, b, key, k, again, pad }
    }

    it("a connection to A dies with frames in flight; reconnecting to B with Last-Event-ID gets exactly the missing frames, once, in order, before live frames", async () => {
      const { a, b, key, k, again, pad } = await moveToB(100, 95)
      const events = frames(again).map(([event]) => event)
      expect(events).toEqual([...Array(100 - k).fill("job"), "fence"])
      expect(ids(again).slice(0, -1)).toEqual(range(k + 1, 100))
      const data = dataFrames(again).slice(0, -1).map((f) => JSON.parse(f.data) as { i: number; pad: string })
      expect(data.map((d) => d.i)).toEqual(Array.from({ length: 100 - k }, (_, i) => k + 1 + i))
      expect(data.every((d) => d.pad === pad)).toBe(true)
      expect(b.sse.stats()).toMatchObject({ replayed: 95 - k, replayMisses: 0, droppedOldest: 0 })
      expect(a.events.error).toEqual([])
      expect(b.events.error).toEqual([])
      // the list: capped per user, with the TTL of recentTTLMs (default 30 min)
      expect(await llen(key)).toBe(100)
      const pttl = Number((await cli("pttl", key)).trim())
      expect(pttl).toBeGreaterThan(30 * 60_000 - 60_000)
      expect(pttl).toBeLessThanOrEqual(30 * 60_000)
    })

    it("a replay longer than the connection's queue (maxQueueItems 100) reaches the client whole, or the gap signal says it did not", async () => {
      const { b, k, again } = await moveToB(500, 300)
      const gap = again.messages().some((m) => m.event === "replay-gap")
      const got = ids(again).slice(0, -1)
      console.log(`[cluster] replay of ${300 - k} frames at B: ${got.length - 5} written, droppedOldest ${b.sse.stats().droppedOldest}, gap event: ${gap}`)
      // no silent hole in the middle of a replay
      if (!gap) expect(got).toEqual(range(k + 1, 305))
      // and what arrived came once, in order
      const numbers = got.map((id) => Number(id!.slice(1)))
      for (let i = 1; i < numbers.length; i++) expect(numbers[i]!).toBeGreaterThan(numbers[i - 1]!)
    })

    it("a user with two tabs on two instances: a reconnect still gets each missed frame once (the replay list holds each frame once)", async () => {
      const channel = unique("ssekify:bus:tabs")
      const key = `${channel}:replay:{alice}`
      const [a, b, c, p] = await nodes(["A", "B", "C", "P"], replayOptions(channel, 50)) as [Node, Node, Node, Node]
      const tabA = await a.open("alice", { rooms: ["r"] })
      const tabC = await c.open("alice", { rooms: ["r"] })
      await step(() => p.sse.publish("one", "alice", { id: "f1" }), [tabA, 1], [tabC, 1])
      await step(() => p.sse.publishToRoom("r", "two", { id: "f2" }), [tabA, 2], [tabC, 2])
      await step(() => p.sse.publish("three", undefined, { id: "f3" }), [tabA, 3], [tabC, 3])
      tabA.response.pause()
      await step(() => p.sse.publish("four", "alice", { id: "f4" }), [tabC, 4])
      await step(() => p.sse.publishToRoom("r", "five", { id: "f5" }), [tabC, 5])
      await step(() => p.sse.publish("six", undefined, { id: "f6" }), [tabC, 6])
      await until(() => sentTo(a, "alice") === 2, 5_000, "A wrote f4 to its tab")
      tabA.close()
      await until(() => a.events.disconnect.length === 1, 5_000, "A noticed tab A is gone")
      const again = await b.open("alice", { lastEventId: "f3" })
      await waitFrames(again, 3, "f4..f6 at B")
      await p.sse.publish("fence", "alice", { event: "fence" })
      await waitFrames(again, 4, "the fence")
      expect(frames(again)).toEqual([[undefined, '"four"'], [undefined, '"five"'], [undefined, '"six"'], ["fence", '"fence"']])
      expect(ids(again)).toEqual(["f4", "f5", "f6", undefined])
      // six messages with an id, six items
      expect(await llen(key)).toBe(6)
    })

    it("frames published while the browser is between instances: replayed on B, or the gap signal says they were missed", async () => {
      const channel = unique("ssekify:bus:between")
      const [a, b, p] = await nodes(["A", "B", "P"], replayOptions(channel, 20)) as [Node, Node, Node]
      const first = await a.open("alice")
      await step(() => p.sse.publish("one", "alice", { id: "f1" }), [first, 1])
      first.close()
      await until(() => a.events.disconnect.length === 1, 5_000, "A noticed alice is gone")
      // alice is connected nowhere (her browser waits `retry` ms): two frames for her
      await p.sse.publish("two", "alice", { id: "f2" })
      await p.sse.publish("three", "alice", { id: "f3" })
      await until(() => a.sse.stats().received === 3 && b.sse.stats().received === 3, 5_000, "both instances saw them")
      const again = await b.open("alice", { lastEventId: "f1" })
      await p.sse.publish("fence", "alice", { event: "fence" })
      await again.waitFor((c) => c.messages().some((m) => m.event === "fence"), 5_000, "the fence")
      const got = again.messages().map((m) => [m.event, m.id, m.data])
      const replayed = got.filter(([event]) => event === undefined)
      const gap = got.find(([event]) => event === "replay-gap")
      // what the memory replay does on one instance: the frames, or the gap event 'offline' first
      if (replayed.length > 0) expect(replayed).toEqual([[undefined, "f2", '"two"'], [undefined, "f3", '"three"']])
      else expect(gap).toEqual(["replay-gap", undefined, JSON.stringify({ lastEventId: "f1", reason: "offline" })])
    })

    it("the gap signal on B: evicted, unknown, and none when up to date", async () => {
      const channel = unique("ssekify:bus:gap")
      const [a, b, p] = await nodes(["A", "B", "P"], replayOptions(channel, 5)) as [Node, Node, Node]
      const first = await a.open("alice")
      for (let i = 1; i <= 12; i++) await p.sse.publish({ i }, "alice", { id: `f${i}` })
      await waitFrames(first, 12, "twelve at A")
      await waitUntil("the capped list", async () => (await llen(`${channel}:replay:{alice}`)) === 5 && (await cli("zrange", `${channel}:replay:{alice}`, "-1", "-1")).includes("f12"), 5_000)
      first.close()
      await until(() => a.events.disconnect.length === 1)

      // f2 was pushed out of the 5 kept: the gap event first, no replay, then live frames
      const evicted = await b.open("alice", { lastEventId: "f2" })
      await waitFrames(evicted, 1, "the gap event")
      await step(() => p.sse.publish({ i: 13 }, "alice", { id: "f13" }), [evicted, 2])
      expect(evicted.messages().map((m) => [m.event, m.id, m.data])).toEqual([
        ["replay-gap", undefined, JSON.stringify({ lastEventId: "f2", reason: "evicted" })],
        [undefined, "f13", '{"i":13}']
      ])
      // an id B has never heard of, for a user without frames in Redis
      const unknown = await b.open("nobody", { lastEventId: "zzz" })
      await waitFrames(unknown, 1, "the gap event")
      expect(unknown.messages().map((m) => [m.event, m.data])).toEqual([["replay-gap", JSON.stringify({ lastEventId: "zzz", reason: "unknown" })]])
      // up to date: nothing to replay, no gap
      const upToDate = await b.open("alice", { lastEventId: "f13" })
      await step(() => p.sse.publish({ i: 14 }, "alice", { id: "f14" }), [upToDate, 1], [evicted, 3])
      expect(upToDate.messages().map((m) => [m.event, m.id])).toEqual([[undefined, "f14"]])
      expect(b.sse.stats()).toMatchObject({ replayMisses: 2, replayed: 0 })
      expect(b.events.error).toEqual([])
    })
  })

  describe("shutdown", () => {
    const waitGone = (ids: ReadonlyArray<string>) =>
      waitUntil("the connections to leave the server", async () => {
        const now = new Set((await clientList(server.port)).map((c) => c.id))
        return ids.every((id) => !now.has(id))
      }, 3_000)

    it("closes the three Redis connections (URL and createIORedisAdapter), ends the SSE connections, refuses publish after", async () => {
      for (const kind of ["url", "adapter"] as const) {
        const channel = unique("ssekify:bus:down")
        const name = unique("conn")
        const before = new Set((await clientList(server.port)).map((c) => c.id))
        const sse = new SSEKify({
          redis: kind === "url" ? server.url : createIORedisAdapter(server.url, { connectionName: name }),
          channel,
          replay: "redis",
          keepAliveMs: 0
        })
        let shut = false
        fx.defer(() => (shut ? undefined : sse.shutdown({ announce: false, graceMs: 0 })))
        await sse.ready()
        await sse.publish({ requestId: "r" }, "u", { id: "1" }) // pub and kv in use
        // (redis-cli itself is the client running CLIENT LIST)
        const mine = (await clientList(server.port)).filter((c) => !before.has(c.id) && c.cmd !== "client|list")
        expect(mine.map((c) => c.name).sort()).toEqual(
          kind === "url" ? ["ssekify:kv", "ssekify:pub", "ssekify:sub"] : [`${name}:kv`, `${name}:pub`, `${name}:sub`]
        )
        const srv = await startServer((_req, res) => sse.registerConnection("u", res))
        fx.defer(() => srv.close())
        const client = await connect(`${srv.url}/`)
        fx.defer(() => client.close())
        await client.waitFor((c) => c.text().includes("retry:"))

        await sse.shutdown({ graceMs: 50 })
        shut = true
        await client.ended(2_000)
        expect(client.messages().map((m) => m.event)).toEqual(["server:shutdown"])
        await waitGone(mine.map((c) => c.id))
        await expect(sse.publish("late")).rejects.toBeInstanceOf(ShuttingDown)
      }
    })

    it("a child process that used Redis exits by itself after shutdown()", async () => {
      const channel = unique("ssekify:bus:child")
      const [parent] = await nodes(["parent"], { channel, autoFields: { timestamp: false } }) as [Node]
      const parentUser = await parent.open("parent-user")
      const child = spawn(process.execPath, ["--import", "tsx", path.join(import.meta.dirname, "fixtures", "child.ts"), server.url, channel], {
        cwd: path.join(import.meta.dirname, "..", ".."),
        stdio: ["ignore", "pipe", "pipe"]
      })
      const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>((resolve) =>
        child.once("exit", (code, signal) => resolve({ code, signal, at: Date.now() }))
      )
      fx.defer(async () => {
        if (child.exitCode === null && child.signalCode === null) {
          child.kill("SIGKILL")
          await exited
        }
      })
      const lines: Array<Record<string, unknown>> = []
      let stderr = ""
      let buffer = ""
      child.stdout.on("data", (chunk: Buffer) => {
        buffer += chunk.toString("utf8")
        let nl: number
        while ((nl = buffer.indexOf("\n")) >= 0) {
          lines.push(JSON.parse(buffer.slice(0, nl)) as Record<string, unknown>)
          buffer = buffer.slice(nl + 1)
        }
      })
      child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString("utf8")))
      const line = (key: string) => lines.find((l) => key in l)
      await until(() => line("ready") !== undefined || child.exitCode !== null, 20_000, "the child to be ready")
      expect(line("ready"), stderr).toBeDefined()
      const { port } = line("ready") as { port: number }
      const childSse = await connect(`http://127.0.0.1:${port}/`)
      fx.defer(() => childSse.close())
      await childSse.waitFor((c) => c.text().includes("retry:"))

      await parent.sse.publish("hello child", "child-user")
      await waitFrames(parentUser, 1, "the child's answer", 10_000)
      expect(parentUser.messages().map((m) => [m.event, m.id, JSON.parse(m.data)])).toEqual([
        ["echo", "e1", { requestId: "child-req", echo: "hello child", seq: 0, timestamp: expect.any(String) }]
      ])
      await until(() => line("shutdown") !== undefined, 10_000, "the child's shutdown")
      const shutdownAt = Date.now()
      await childSse.ended(2_000)
      let timer: ReturnType<typeof setTimeout> | undefined
      const outcome = await Promise.race([exited, new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), 5_000)))])
      clearTimeout(timer)
      expect(outcome, `the child did not exit within 5 s of shutdown(); stderr: ${stderr}`).toBeDefined()
      console.log(`[cluster] child exited ${outcome!.at - shutdownAt} ms after its shutdown() resolved`)
      expect(outcome).toMatchObject({ code: 0, signal: null })
      expect(line("error")).toBeUndefined()
      expect((line("answered") as { stats: { seqIncrsRedis: number } }).stats.seqIncrsRedis).toBe(1)
      // the publisher keeps what it published to a user for replay, wherever the user is
      expect(await scanKeys(server.port, `${channel}:replay:*`)).toEqual([`${channel}:replay:{parent-user}`])
      expect((await scanKeys(server.port, "*seq:child-req")).length).toBe(1)
    })
  })
})
