/**
 * Auto fields (timestamp, traceId, requestId), the per-key seq and frame id policies,
 * observed on the wire.
 */
import { Effect, Layer, TestClock } from "effect"
import { describe as describeEffect, expect as expectEffect, it as itEffect } from "@effect/vitest"
import { afterEach, describe, expect, it } from "vitest"
import { SseKify, SSEKify, type SSEKifyOptions, Transport } from "../src/index.js"
import { decodeSnowflake, Snowflake } from "../src/internal/frameId.js"
import { connect, type RawClient, startServer } from "./support/sse.js"

let cleanup: Array<() => Promise<void> | void> = []
afterEach(async () => {
  for (const f of cleanup.reverse()) await f()
  cleanup = []
})

const setup = async (options?: SSEKifyOptions) => {
  const sse = new SSEKify({ keepAliveMs: 0, ...options })
  const server = await startServer((_req, res) => sse.registerConnection("u", res))
  cleanup.push(() => server.close(), () => sse.shutdown({ announce: false, graceMs: 0 }))
  const client = await connect(server.url)
  cleanup.push(() => client.close())
  await client.waitFor((x) => x.text().includes("retry:"))
  const received = async (n: number) => {
    await client.waitFor((c) => c.messages().length >= n)
    return client.messages().slice(0, n)
  }
  return { sse, client, received }
}

const parsed = (c: RawClient) => c.messages().map((m) => JSON.parse(m.data))

describe("autoFields.timestamp", () => {
  it("adds an ISO timestamp to plain objects that lack one, on a copy", async () => {
    const { received, sse } = await setup()
    const mine = { a: 1 }
    sse.sendToUser("u", mine)
    sse.sendToUser("u", { a: 2, timestamp: "kept" })
    sse.sendToUser("u", [1, 2])
    sse.sendToUser("u", "text")
    class Point {
      constructor(readonly x: number) {}
    }
    sse.sendToUser("u", new Point(3))
    const frames = await received(5)
    const [a, b, arr, text, point] = frames.map((m) => JSON.parse(m.data))
    expect(a.timestamp).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/)
    expect(mine).toEqual({ a: 1 })
    expect(b.timestamp).toBe("kept")
    expect(arr).toEqual([1, 2])
    expect(text).toBe("text")
    expect(point).toEqual({ x: 3 })
  })

  it("'epochMs' and false", async () => {
    const one = await setup({ autoFields: { timestamp: "epochMs" } })
    one.sse.sendToUser("u", { a: 1 })
    const [f] = await one.received(1)
    expect(typeof JSON.parse(f!.data).timestamp).toBe("number")
    const two = await setup({ autoFields: { timestamp: false } })
    two.sse.sendToUser("u", { a: 1 })
    const [g] = await two.received(1)
    expect(JSON.parse(g!.data)).toEqual({ a: 1 })
  })
})

describe("autoFields.traceId and requestId", () => {
  it("ifMissing fills with the getter; a custom field name is honoured", async () => {
    let n = 0
    const { client, received, sse } = await setup({
      autoFields: {
        timestamp: false,
        traceId: { mode: "ifMissing", getter: () => `t${++n}`, fieldName: "trace" },
        requestId: { mode: "ifMissing", getter: () => "generated" }
      }
    })
    sse.sendToUser("u", { x: 1 })
    sse.sendToUser("u", { x: 2, trace: "given", requestId: "mine" })
    await received(2)
    expect(parsed(client)).toEqual([
      { x: 1, trace: "t1", requestId: "generated", seq: 0 },
      { x: 2, trace: "given", requestId: "mine", seq: 0 }
    ])
  })

  it("requestId 'require': sendTo* throws and publish rejects, nothing is sent", async () => {
    const { client, sse } = await setup({ autoFields: { requestId: { mode: "require" } } })
    const errors: Array<Error & { code?: string }> = []
    sse.on("error", (e) => errors.push(e as never))
    expect(() => sse.sendToUser("u", { no: "id" })).toThrow("requestId is required but missing")
    await expect(sse.publish({ no: "id" })).rejects.toMatchObject({ _tag: "RequestIdRequired", code: "REQUEST_ID_REQUIRED" })
    expect(sse.sendToUser("u", { requestId: "r" })).toBe(1)
    await client.waitFor((c) => c.messages().length === 1)
    expect(sse.stats().sent).toBe(1)
    expect(errors.map((e) => e.code)).toEqual(["REQUEST_ID_REQUIRED", "REQUEST_ID_REQUIRED"])
  })
})

describe("seq", () => {
  it("numbers the frames of one requestId / streamId from 0; keeps an existing seq", async () => {
    const { client, received, sse } = await setup({ autoFields: { timestamp: false } })
    sse.sendToUser("u", { requestId: "a" })
    sse.sendToUser("u", { requestId: "a" })
    sse.sendToUser("u", { streamId: "s" })
    sse.sendToUser("u", { requestId: "a", seq: 99 })
    sse.sendToUser("u", { requestId: "a" })
    sse.sendToUser("u", { other: 1 })
    await received(6)
    expect(parsed(client).map((d) => d.seq)).toEqual([0, 1, 0, 99, 2, undefined])
    expect(sse.stats().seqIncrsLocal).toBe(4)
  })

  it("a final frame drops the key: the next stream with that id restarts", async () => {
    const { client, received, sse } = await setup({ autoFields: { timestamp: false }, seq: { startAt: 1 } })
    sse.sendToUser("u", { requestId: "r", phase: "progress" })
    sse.sendToUser("u", { requestId: "r", phase: "done" })
    sse.sendToUser("u", { requestId: "r", phase: "progress" })
    sse.sendToUser("u", { requestId: "r", final: true })
    sse.sendToUser("u", { requestId: "r", phase: "error" })
    await received(5)
    expect(parsed(client).map((d) => d.seq)).toEqual([1, 2, 1, 2, 1])
  })

  it("keyExtractor, finalPredicate, fieldName and enableSeq: false", async () => {
    const custom = await setup({
      autoFields: { timestamp: false },
      seq: { keyExtractor: (d) => d.topic, finalPredicate: (d) => d.last === true, fieldName: "n" }
    })
    custom.sse.sendToUser("u", { topic: "t" })
    custom.sse.sendToUser("u", { topic: "t", last: true })
    custom.sse.sendToUser("u", { topic: "t" })
    await custom.received(3)
    expect(parsed(custom.client).map((d) => d.n)).toEqual([0, 1, 0])
    const off = await setup({ autoFields: { timestamp: false }, enableSeq: false })
    off.sse.sendToUser("u", { requestId: "a" })
    await off.received(1)
    expect(parsed(off.client)).toEqual([{ requestId: "a" }])
  })
})

describe("frame ids", () => {
  it("'timestamp' is <epochMs>-<instanceId>-<seq>; an explicit id wins", async () => {
    const { client, received, sse } = await setup({ seq: { frameIdPolicy: "timestamp" } })
    sse.sendToUser("u", { requestId: "r" })
    sse.sendToUser("u", { requestId: "r" }, { id: "explicit" })
    sse.sendToUser("u", "plain")
    await received(3)
    const ids = client.messages().map((m) => m.id)
    expect(ids[0]).toMatch(new RegExp(`^\\d{13}-${sse.instanceId}-0$`))
    expect(ids[1]).toBe("explicit")
    expect(ids[2]).toMatch(new RegExp(`^\\d{13}-${sse.instanceId}-0$`))
  })

  it("'timestamp' ids stay unique within a millisecond; replay after one loses nothing", async () => {
    const { client, sse } = await setup({ autoFields: { timestamp: false }, seq: { frameIdPolicy: "timestamp" } })
    for (let n = 0; n < 50; n++) sse.sendToUser("u", { n })
    for (let n = 0; n < 20; n++) sse.sendToUser("u", { requestId: n % 2 === 0 ? "a" : "b" })
    await client.waitFor((c) => c.messages().length === 70)
    const ids = client.messages().map((m) => m.id!)
    expect(new Set(ids).size).toBe(70)
    const ms = ids.map((id) => Number(id.split("-")[0]))
    for (let i = 1; i < ms.length; i++) expect(ms[i]!).toBeGreaterThanOrEqual(ms[i - 1]!)
    expect(ids[0]).toMatch(new RegExp(`-${sse.instanceId}-0$`))
    expect(ids.slice(50, 54).map((id) => id.split("-").at(-1))).toEqual(["0", "0", "1", "1"])
  })

  it("a function policy gets the data and the seq", async () => {
    const { client, received, sse } = await setup({
      autoFields: { timestamp: false },
      seq: { frameIdPolicy: (d, n) => `${(d as { requestId: string }).requestId}:${n}` }
    })
    sse.sendToUser("u", { requestId: "job" })
    sse.sendToUser("u", { requestId: "job" })
    await received(2)
    expect(client.messages().map((m) => m.id)).toEqual(["job:0", "job:1"])
  })

  it("'snowflake' ids are decimal, increasing, and decode to this instance", async () => {
    const { client, received, sse } = await setup({ seq: { frameIdPolicy: "snowflake" } })
    for (let i = 0; i < 20; i++) sse.sendToUser("u", i)
    await received(20)
    const ids = client.messages().map((m) => BigInt(m.id!))
    for (let i = 1; i < ids.length; i++) expect(ids[i]! > ids[i - 1]!).toBe(true)
    const first = decodeSnowflake(String(ids[0]))
    expect(Math.abs(first.ms - Date.now())).toBeLessThan(60_000)
  })

  it("snowflake stays monotonic when the clock steps back and when a millisecond overflows", () => {
    let now = 1_800_000_000_000
    const gen = new Snowflake(5, () => now)
    const ids: Array<bigint> = []
    for (let i = 0; i < 5000; i++) ids.push(BigInt(gen.next())) // > 4096 in one ms
    now -= 10_000 // the wall clock steps back 10 s
    for (let i = 0; i < 100; i++) ids.push(BigInt(gen.next()))
    now += 20_000
    ids.push(BigInt(gen.next()))
    for (let i = 1; i < ids.length; i++) expect(ids[i]! > ids[i - 1]!).toBe(true)
    expect(decodeSnowflake(String(ids.at(-1))).ms).toBe(now)
    expect(decodeSnowflake(String(ids[0])).instance).toBe(5)
  })
})

describeEffect("seq keys (TestClock)", () => {
  itEffect.scoped("idle keys expire after redisTTLSeconds", () =>
    Effect.gen(function*() {
      const sse = yield* SseKify.SseKify
      const server = yield* Effect.acquireRelease(
        Effect.promise(() => startServer((_req, res) => void Effect.runSync(Effect.either(sse.registerConnection("u", res))))),
        (s) => Effect.promise(() => s.close())
      )
      const client = yield* Effect.acquireRelease(
        Effect.promise(async () => {
          const c = await connect(server.url)
          await c.waitFor((x) => x.text().includes("retry:"))
          return c
        }),
        (c) => Effect.sync(() => c.close())
      )
      yield* sse.sendToUser("u", { requestId: "idle" })
      yield* sse.sendToUser("u", { requestId: "busy" })
      yield* TestClock.adjust("40 seconds")
      yield* sse.sendToUser("u", { requestId: "busy" })
      yield* TestClock.adjust("40 seconds") // idle: 80 s > 60 s; busy: 40 s
      yield* sse.sendToUser("u", { requestId: "idle" })
      yield* sse.sendToUser("u", { requestId: "busy" })
      yield* Effect.promise(() => client.waitFor((c) => c.messages().length === 5))
      expectEffect(client.messages().map((m) => JSON.parse(m.data).seq)).toEqual([0, 0, 1, 0, 2])
    }).pipe(Effect.provide(
      SseKify.layer({ keepAliveMs: 0, autoFields: { timestamp: false }, seq: { redisTTLSeconds: 60 }, shutdown: { graceMs: 0, announce: false } })
        .pipe(Layer.provide(Transport.layerNone))
    )))
})
