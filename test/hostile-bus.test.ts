/**
 * A hostile bus: what someone who can `PUBLISH` on the Redis channel (but has not the
 * `busSecret`) can do with captured signed messages — replay them, move them to another
 * tenant's channel, replay them late — and messages whose fields break the limits.
 * Real `redis-server`, real `SSEKify` instances on real HTTP servers, captured bytes
 * re-published by `redis-cli` (a foreign client).
 *
 * The replay window itself is tested against a reference model in `bus-window.test.ts`.
 */
import * as Redacted from "effect/Redacted"
import { Redis } from "ioredis"
import { createHmac } from "node:crypto"
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest"
import * as Envelope from "../src/Envelope.js"
import { MAX_STREAMS } from "../src/internal/replayGuard.js"
import type { SSEKifyOptions } from "../src/index.js"
import { Fixture, frames, type Node, unique, until, waitFrames } from "./cluster/support.js"
import { redisAvailable, redisCli, type RedisServer, startRedis, stopAll } from "./support/redisServer.js"

const secret = "0123456789abcdef-hostile-bus"

describe.skipIf(!redisAvailable())("a hostile publisher on the Redis channel", () => {
  let server: RedisServer
  const fx = new Fixture()
  beforeAll(async () => {
    server = await startRedis()
  })
  afterEach(() => fx.dispose())
  afterAll(stopAll)

  const node = async (name: string, options: SSEKifyOptions): Promise<Node> => {
    const n = await fx.node(name, { redis: server.url, autoFields: { timestamp: false }, ...options })
    await n.sse.ready()
    return n
  }

  /** A raw subscriber that records every message on `channel`, as bytes on the wire. */
  const tap = async (channel: string): Promise<Array<string>> => {
    const client = new Redis(server.url, { lazyConnect: true, maxRetriesPerRequest: 1 })
    fx.defer(() => client.quit())
    await client.connect()
    const captured: Array<string> = []
    client.on("message", (ch: string, message: string) => {
      if (ch === channel) captured.push(message)
    })
    await client.subscribe(channel)
    return captured
  }

  /** `redis-cli PUBLISH`: the number of subscribers that got it. */
  const cliPublish = async (channel: string, message: string): Promise<number> =>
    Number((await redisCli(server.port, ["publish", channel, message])).trim())

  /** What a holder of the key could sign: an envelope of its own, fresh unless `at` says otherwise. */
  const craft = (channel: string, fields: Partial<Parameters<typeof Envelope.make>[0]> & { readonly c: number }): string =>
    Envelope.sign(
      Envelope.encode(Envelope.make({ type: "user", target: "alice", data: "crafted", at: Date.now(), origin: "foreign", b: "boot-1", ...fields })),
      Redacted.make(secret),
      channel
    )

  const messagesOf = (n: Node): Array<string> => n.events.error.map((e: Error) => e.message)
  const codesOf = (n: Node): Array<string> => n.events.error.map((e: { code: string }) => e.code)

  it("a captured signed message re-published by a foreign client is not delivered again; reported and counted", async () => {
    const channel = unique("ssekify:bus:replay")
    const captured = await tap(channel)
    const a = await node("A", { channel, busSecret: secret })
    const r = await node("R", { channel, busSecret: secret })
    const alice = await r.open("alice")
    await a.sse.publish("pay 1", "alice")
    await waitFrames(alice, 1, "the original")
    await until(() => captured.length === 1, 5_000, "the capture")
    for (let i = 0; i < 3; i++) expect(await cliPublish(channel, captured[0]!)).toBe(3) // A, R and the tap
    await until(() => r.events.error.length === 3, 5_000, "one error per replay")
    expect(codesOf(r)).toEqual(Array(3).fill("BUS_MESSAGE_INVALID"))
    expect(messagesOf(r)[0]).toMatch(/^bus_message_invalid: replayed/)
    expect(r.events.error[0].sample).toBe(captured[0]!.slice(0, 200) + (captured[0]!.length > 200 ? "…" : ""))
    // a later message proves the bus is alive and that nothing else arrived in between
    await a.sse.publish("after", "alice")
    await waitFrames(alice, 2, "the later message")
    expect(frames(alice)).toEqual([[undefined, '"pay 1"'], [undefined, '"after"']])
    expect(r.sse.stats()).toMatchObject({ received: 2, busRejected: 3, errorCount: 3 })
    expect(r.events.publish).toHaveLength(2)
    expect(a.events.error).toEqual([]) // its own messages, replayed, are ignored as before
  })

  it("a message signed for channel A, re-published on channel B (same key), is refused", async () => {
    const channelA = unique("ssekify:bus:tenant-a")
    const channelB = unique("ssekify:bus:tenant-b")
    const captured = await tap(channelA)
    const a = await node("A", { channel: channelA, busSecret: secret })
    const b = await node("B", { channel: channelB, busSecret: secret })
    const b2 = await node("B2", { channel: channelB, busSecret: secret })
    const alice = await b.open("alice")
    await a.sse.publish("tenant A's secret", "alice")
    await until(() => captured.length === 1, 5_000, "the capture")
    expect(await cliPublish(channelB, captured[0]!)).toBe(2) // B and B2
    await until(() => b.events.error.length === 1 && b2.events.error.length === 1, 5_000, "the refusal")
    expect(messagesOf(b)).toEqual(["bus_message_invalid: bad signature (busSecret)"])
    await b2.sse.publish("tenant B's own", "alice")
    await waitFrames(alice, 1, "B2's message")
    expect(frames(alice)).toEqual([[undefined, '"tenant B\'s own"']])
    expect(b.sse.stats()).toMatchObject({ received: 1, busRejected: 1 })
  })

  it("a signed message older (or newer) than 60 s is refused; one in the first 0.2.0 signed format too", async () => {
    const channel = unique("ssekify:bus:age")
    const r = await node("R", { channel, busSecret: secret })
    const alice = await r.open("alice")
    const now = Date.now()
    await cliPublish(channel, craft(channel, { data: "too old", at: now - 61_000, c: 1 }))
    await cliPublish(channel, craft(channel, { data: "from the future", at: now + 120_000, c: 2 }))
    // the signed format of the first 0.2.0 builds: HMAC of the text alone, no boot nonce or counter
    const old = Envelope.encode(Envelope.make({ type: "user", target: "alice", data: "old format", at: now, origin: "foreign" }))
    const oldSig = createHmac("sha256", secret).update(old, "utf8").digest("hex")
    await cliPublish(channel, old.slice(0, -1) + ',"sig":"' + oldSig + '"}')
    // the same key holder's fresh message is delivered: the crafting is sound
    await cliPublish(channel, craft(channel, { data: "fresh", c: 3 }))
    await waitFrames(alice, 1, "the fresh message")
    await until(() => r.events.error.length === 3, 5_000, "three refusals")
    expect(messagesOf(r)[0]).toMatch(/^bus_message_invalid: too old \(sent \d+ ms ago, more than 60000 ms\)$/)
    expect(messagesOf(r)[1]).toMatch(/^bus_message_invalid: sent in the future/)
    expect(messagesOf(r)[2]).toBe("bus_message_invalid: bad signature (busSecret)")
    expect(frames(alice)).toEqual([[undefined, '"fresh"']])
    expect(r.sse.stats()).toMatchObject({ received: 1, busRejected: 3 })
    expect(Envelope.MAX_AGE_MS).toBe(60_000)
  })

  it("messages of one publisher arriving out of order are each delivered once; their replays are refused", async () => {
    const channel = unique("ssekify:bus:reorder")
    const captured = await tap(channel)
    const a = await node("A", { channel, busSecret: secret })
    for (const m of ["m1", "m2", "m3"]) await a.sse.publish(m, "alice")
    await until(() => captured.length === 3, 5_000, "the captures")
    // R starts later: it never saw them; they arrive reordered (3, 1, 2)
    const r = await node("R", { channel, busSecret: secret })
    const alice = await r.open("alice")
    for (const i of [2, 0, 1]) await cliPublish(channel, captured[i]!)
    await waitFrames(alice, 3, "the reordered messages")
    expect(frames(alice).map(([, d]) => d)).toEqual(['"m3"', '"m1"', '"m2"'])
    for (const i of [0, 1, 2, 2]) await cliPublish(channel, captured[i]!)
    await until(() => r.events.error.length === 4, 5_000, "four refusals")
    expect(messagesOf(r).every((m) => /^bus_message_invalid: replayed/.test(m))).toBe(true)
    await a.sse.publish("m4", "alice")
    await waitFrames(alice, 4, "the next message")
    expect(frames(alice).map(([, d]) => d)).toEqual(['"m3"', '"m1"', '"m2"', '"m4"'])
    expect(r.sse.stats()).toMatchObject({ received: 4, busRejected: 4 })
  })

  it("over-long event names, ids, user ids and room names from the bus are refused; at the limit they pass", async () => {
    const channel = unique("ssekify:bus:limits")
    const limits = { maxEventNameLength: 8, maxIdLength: 8, maxUserIdLength: 8, maxRoomNameLength: 8 }
    const r = await node("R", { channel, ...limits })
    const user = "u".repeat(8)
    const room = "r".repeat(8)
    const client = await r.open(user, { rooms: [room] })
    const raw = (fields: Record<string, unknown>) => JSON.stringify({ type: "user", target: user, data: "x", at: Date.now(), origin: "cli", ...fields })
    const over = [
      raw({ event: "e".repeat(9) }),
      raw({ id: "1".repeat(9) }),
      raw({ target: "u".repeat(9) }),
      raw({ type: "room", target: "r".repeat(9) })
    ]
    for (const m of over) await cliPublish(channel, m)
    await until(() => r.events.error.length === 4, 5_000, "four refusals")
    expect(codesOf(r)).toEqual(Array(4).fill("BUS_MESSAGE_INVALID"))
    expect(messagesOf(r)).toEqual([
      "bus_message_invalid: event name longer than maxEventNameLength (9 > 8)",
      "bus_message_invalid: id longer than maxIdLength (9 > 8)",
      "bus_message_invalid: target user id longer than maxUserIdLength (9 > 8)",
      "bus_message_invalid: target room name longer than maxRoomNameLength (9 > 8)"
    ])
    await cliPublish(channel, raw({ event: "e".repeat(8), id: "1".repeat(8), data: "at the limit" }))
    await cliPublish(channel, raw({ type: "room", target: room, data: "room at the limit" }))
    await waitFrames(client, 2, "the messages at the limit")
    expect(frames(client)).toEqual([["e".repeat(8), '"at the limit"'], [undefined, '"room at the limit"']])
    expect(client.messages()[0]!.id).toBe("1".repeat(8))
    expect(r.events.publish).toHaveLength(2)
    expect(r.sse.stats()).toMatchObject({ received: 2, busRejected: 4 })
  })

  it("the default event-name limit (256) applies on a signed bus too", async () => {
    const channel = unique("ssekify:bus:limits-signed")
    const r = await node("R", { channel, busSecret: secret })
    const alice = await r.open("alice")
    await cliPublish(channel, craft(channel, { event: "e".repeat(257), data: "long", c: 1 }))
    await cliPublish(channel, craft(channel, { event: "e".repeat(256), data: "ok", c: 2 }))
    await waitFrames(alice, 1, "the message at the limit")
    await until(() => r.events.error.length === 1, 5_000, "the refusal")
    expect(messagesOf(r)).toEqual(["bus_message_invalid: event name longer than maxEventNameLength (257 > 256)"])
    expect(frames(alice)).toEqual([["e".repeat(256), '"ok"']])
  })

  it("two instances' streams are delivered exactly once, also after more publishers than the window remembers", async () => {
    const channel = unique("ssekify:bus:stream")
    const captured = await tap(channel)
    const a = await node("A", { channel, busSecret: secret })
    const b = await node("B", { channel, busSecret: secret })
    const r = await node("R", { channel, busSecret: secret })
    const alice = await r.open("alice")
    const N = 150
    const burst = async (round: number) => {
      const sends: Array<Promise<void>> = []
      for (let i = 0; i < N; i++) {
        sends.push(a.sse.publish({ from: "A", round, i }, "alice"), b.sse.publish({ from: "B", round, i }, "alice"))
      }
      await Promise.all(sends)
    }
    await burst(1)
    await waitFrames(alice, 2 * N, "round 1", 10_000)
    // more key holders than R remembers publish within the minute (to a user nobody is)
    const flood = new Redis(server.url, { lazyConnect: true, maxRetriesPerRequest: 1 })
    fx.defer(() => flood.quit())
    await flood.connect()
    const pipeline = flood.pipeline()
    for (let i = 0; i <= MAX_STREAMS; i++) {
      pipeline.publish(channel, craft(channel, { target: "nobody", origin: `key-holder-${i}`, c: 1 }))
    }
    await pipeline.exec()
    await until(() => r.sse.stats().received === 2 * N + MAX_STREAMS + 1, 20_000, "the flood")
    await burst(2)
    await waitFrames(alice, 4 * N, "round 2", 10_000)
    // A's and B's recent messages are still remembered: their replays are refused
    const lastOfA = captured.filter((m) => m.includes('"from":"A","round":2')).at(-1)!
    await cliPublish(channel, lastOfA)
    await until(() => r.events.error.length === 1, 5_000, "the refusal")
    expect(messagesOf(r)).toEqual([expect.stringMatching(/^bus_message_invalid: replayed/)])
    await a.sse.publish({ from: "A", round: 3, i: 0 }, "alice")
    await waitFrames(alice, 4 * N + 1, "the fence")
    const got = frames(alice).map(([, d]) => d)
    expect(new Set(got).size).toBe(got.length) // no duplicate
    for (const from of ["A", "B"]) {
      for (const round of [1, 2]) {
        for (let i = 0; i < N; i++) expect(got).toContain(JSON.stringify({ from, round, i }))
      }
    }
    expect(r.sse.stats()).toMatchObject({ received: 4 * N + 1 + MAX_STREAMS + 1, busRejected: 1 })
  }, 60_000)

  it("a publisher restarted with the same instanceId opens a new window; the old boot's captures stay refused", async () => {
    const channel = unique("ssekify:bus:restart")
    const captured = await tap(channel)
    const r = await node("R", { channel, busSecret: secret })
    const alice = await r.open("alice")
    const first = await node("A", { channel, busSecret: secret, instanceId: "fixed-id" })
    await first.sse.publish("boot 1 #1", "alice")
    await first.sse.publish("boot 1 #2", "alice")
    await waitFrames(alice, 2, "boot 1")
    await first.sse.shutdown({ announce: false, graceMs: 0 })
    const second = await node("A2", { channel, busSecret: secret, instanceId: "fixed-id" })
    await second.sse.publish("boot 2 #1", "alice") // counter 1 again, new boot nonce
    await waitFrames(alice, 3, "boot 2")
    await until(() => captured.length === 3, 5_000, "the captures")
    await cliPublish(channel, captured[0]!)
    await until(() => r.events.error.length === 1, 5_000, "the refusal")
    await second.sse.publish("boot 2 #2", "alice")
    await waitFrames(alice, 4, "the fence")
    expect(frames(alice).map(([, d]) => d)).toEqual(['"boot 1 #1"', '"boot 1 #2"', '"boot 2 #1"', '"boot 2 #2"'])
    expect(messagesOf(r)).toEqual([expect.stringMatching(/^bus_message_invalid: replayed/)])
  })
})
