/**
 * Last-Event-ID replay over real sockets: header and query, frames after the id only,
 * before live frames, recorded for user / room / broadcast deliveries, bounded id
 * length, the gap signal, clearRecent, TTL and LRU.
 */
import { describe as describeEffect, expect as expectEffect, it as itEffect } from "@effect/vitest"
import { Effect, Layer, TestClock } from "effect"
import { afterEach, describe, expect, it } from "vitest"
import { SseKify, SSEKify, type SSEKifyOptions, Transport } from "../src/index.js"
import { connect, type RawClient, startServer } from "./support/sse.js"

let cleanup: Array<() => Promise<void> | void> = []
afterEach(async () => {
  for (const f of cleanup.reverse()) await f()
  cleanup = []
})

const setup = async (options?: SSEKifyOptions) => {
  const sse = new SSEKify({ keepAliveMs: 0, autoFields: { timestamp: false }, ...options })
  const server = await startServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://x")
    sse.registerConnection(url.searchParams.get("u") ?? "guest", res, { rooms: url.searchParams.getAll("room") })
  })
  cleanup.push(() => server.close(), () => sse.shutdown({ announce: false, graceMs: 0 }))
  const open = async (query: string, headers?: Record<string, string>): Promise<RawClient> => {
    const c = await connect(`${server.url}/${query}`, headers ? { headers } : undefined)
    cleanup.push(() => c.close())
    await c.waitFor((x) => x.text().includes("retry:"))
    return c
  }
  return { sse, open }
}

const data = (c: RawClient) => c.messages().map((m) => m.data)

describe("replay", () => {
  it("replays the frames after Last-Event-ID (header), before live frames", async () => {
    const { open, sse } = await setup()
    const first = await open("?u=alice")
    for (let i = 1; i <= 5; i++) sse.sendToUser("alice", `m${i}`, { id: String(i) })
    await first.waitFor((c) => c.messages().length === 5)
    first.close()
    const again = await open("?u=alice", { "Last-Event-ID": "2" })
    sse.sendToUser("alice", "live", { id: "6" })
    await again.waitFor((c) => c.messages().length === 4)
    expect(again.messages().map((m) => [m.id, m.data])).toEqual([["3", '"m3"'], ["4", '"m4"'], ["5", '"m5"'], ["6", '"live"']])
    expect(sse.stats()).toMatchObject({ replayed: 3, replayMisses: 0 })
  })

  it("takes ?lastEventId= and ?last-event-id= when there is no header", async () => {
    const { open, sse } = await setup()
    const a = await open("?u=bob")
    for (let i = 1; i <= 3; i++) sse.sendToUser("bob", i, { id: `e${i}` })
    await a.waitFor((c) => c.messages().length === 3)
    const q1 = await open("?u=bob&lastEventId=e1")
    const q2 = await open("?u=bob&last-event-id=e2")
    await q1.waitFor((c) => c.messages().length === 2)
    await q2.waitFor((c) => c.messages().length === 1)
    expect(data(q1)).toEqual(["2", "3"])
    expect(data(q2)).toEqual(["3"])
  })

  it("records room and broadcast frames for every user they reached, once", async () => {
    const { open, sse } = await setup()
    await open("?u=alice&room=r")
    await open("?u=alice&room=r")
    await open("?u=bob")
    sse.sendToRoom("r", "room-1", { id: "r1" })
    sse.sendToAll("all-1", { id: "a1" })
    sse.sendToRoom("r", "room-2", { id: "r2" })
    const alice = await open("?u=alice", { "last-event-id": "r1" })
    const bob = await open("?u=bob", { "last-event-id": "a1" })
    await alice.waitFor((c) => c.messages().length === 2)
    expect(data(alice)).toEqual(['"all-1"', '"room-2"'])
    expect(bob.messages()).toEqual([])
  })

  it("does not record frames without an id, nor for users without a connection", async () => {
    const { open, sse } = await setup()
    const a = await open("?u=carol")
    sse.sendToUser("carol", "with id", { id: "1" })
    sse.sendToUser("carol", "no id")
    await a.waitFor((c) => c.messages().length === 2)
    a.close()
    await new Promise<void>((resolve) => {
      const t = setInterval(() => {
        if (!sse.isUserOnline("carol")) {
          clearInterval(t)
          resolve()
        }
      }, 5)
    })
    expect(sse.sendToUser("carol", "while away", { id: "2" })).toBe(0)
    const b = await open("?u=carol", { "last-event-id": "1" })
    sse.sendToUser("carol", "back", { id: "3" })
    await b.waitFor((c) => c.messages().length === 1)
    expect(data(b)).toEqual(['"back"'])
  })

  it("an unknown id replays nothing unless replayGapEvent is set", async () => {
    const { open, sse } = await setup()
    const a = await open("?u=dan")
    sse.sendToUser("dan", 1, { id: "1" })
    await a.waitFor((c) => c.messages().length === 1)
    const b = await open("?u=dan", { "last-event-id": "nope" })
    sse.sendToUser("dan", 2, { id: "2" })
    await b.waitFor((c) => c.messages().length === 1)
    expect(data(b)).toEqual(["2"])
    expect(sse.stats().replayMisses).toBe(1)
  })

  it("the gap event tells why: unknown, after clearRecent, evicted by the user limit", async () => {
    const { open, sse } = await setup({ replayGapEvent: "gap", recentMaxUsers: 2, recentBufferSize: 3 })
    const a = await open("?u=u1")
    sse.sendToUser("u1", 1, { id: "1" })
    await a.waitFor((c) => c.messages().length === 1)
    const unknown = await open("?u=u1", { "last-event-id": "zzz" })
    await unknown.waitFor((c) => c.messages().length === 1)
    expect(unknown.messages()[0]).toMatchObject({ event: "gap" })
    expect(JSON.parse(unknown.messages()[0]!.data)).toEqual({ lastEventId: "zzz", reason: "unknown" })

    // ids pushed out of the ring (more than recentBufferSize frames since)
    for (let i = 2; i <= 6; i++) sse.sendToUser("u1", i, { id: String(i) })
    const rolled = await open("?u=u1", { "last-event-id": "1" })
    await rolled.waitFor((c) => c.messages().length === 1)
    expect(JSON.parse(rolled.messages()[0]!.data)).toEqual({ lastEventId: "1", reason: "evicted" })

    sse.clearRecent("u1")
    const cleared = await open("?u=u1", { "last-event-id": "6" })
    await cleared.waitFor((c) => c.messages().length === 1)
    expect(JSON.parse(cleared.messages()[0]!.data).reason).toBe("unknown")

    // recentMaxUsers = 2: a third active user evicts the least recently active one
    sse.sendToUser("u1", 7, { id: "7" })
    await open("?u=u2")
    await open("?u=u3")
    sse.sendToUser("u2", 1, { id: "x" })
    sse.sendToUser("u3", 1, { id: "y" })
    const evicted = await open("?u=u1", { "last-event-id": "7" })
    await evicted.waitFor((c) => c.messages().length === 1)
    expect(JSON.parse(evicted.messages()[0]!.data)).toEqual({ lastEventId: "7", reason: "evicted" })
  })

  it("frames sent while the user was offline: a gap event says so; replayOffline keeps them", async () => {
    const gone = async (sse: SSEKify, c: RawClient) => {
      c.close()
      await new Promise<void>((resolve) => {
        const t = setInterval(() => {
          if (!sse.isUserOnline("g")) {
            clearInterval(t)
            resolve()
          }
        }, 5)
      })
    }
    // default: not recorded (as 0.1.6), but the reconnect is told
    const told = await setup({ replayGapEvent: "gap" })
    const a = await told.open("?u=g")
    told.sse.sendToUser("g", 1, { id: "1" })
    await a.waitFor((c) => c.messages().length === 1)
    await gone(told.sse, a)
    expect(told.sse.sendToUser("g", 2, { id: "2" })).toBe(0)
    const b = await told.open("?u=g", { "last-event-id": "1" })
    await b.waitFor((c) => c.messages().length === 1)
    expect(b.messages()[0]).toMatchObject({ event: "gap" })
    expect(JSON.parse(b.messages()[0]!.data)).toEqual({ lastEventId: "1", reason: "offline" })
    expect(told.sse.stats().replayMisses).toBe(1)

    // replayOffline: kept and replayed, nothing lost
    const kept = await setup({ replayGapEvent: "gap", replayOffline: true })
    const c1 = await kept.open("?u=g")
    kept.sse.sendToUser("g", 1, { id: "1" })
    await c1.waitFor((c) => c.messages().length === 1)
    await gone(kept.sse, c1)
    expect(kept.sse.sendToUser("g", 2, { id: "2" })).toBe(0)
    expect(kept.sse.sendToUser("g", 3, { id: "3" })).toBe(0)
    expect(kept.sse.sendToUser("never-seen", 3, { id: "3" })).toBe(0)
    const c2 = await kept.open("?u=g", { "last-event-id": "1" })
    await c2.waitFor((c) => c.messages().length === 2)
    expect(data(c2)).toEqual(["2", "3"])
    expect(kept.sse.stats()).toMatchObject({ replayed: 2, replayMisses: 0 })
  })

  it("an over-long Last-Event-ID is ignored with an 'error' event; the connection works", async () => {
    const { open, sse } = await setup({ maxLastEventIdLength: 64 })
    const errors: Array<Error & { code?: string }> = []
    sse.on("error", (e) => errors.push(e as never))
    const a = await open("?u=eve", { "last-event-id": "x".repeat(100) })
    expect(errors.map((e) => e.code)).toEqual(["LAST_EVENT_ID_TOO_LONG"])
    sse.sendToUser("eve", "ok")
    await a.waitFor((c) => c.messages().length === 1)
  })

  it("recentBufferSize: 0 turns replay off", async () => {
    const { open, sse } = await setup({ recentBufferSize: 0, replayGapEvent: "gap" })
    const a = await open("?u=f")
    sse.sendToUser("f", 1, { id: "1" })
    sse.sendToUser("f", 2, { id: "2" })
    await a.waitFor((c) => c.messages().length === 2)
    const b = await open("?u=f", { "last-event-id": "1" })
    sse.sendToUser("f", 3)
    await b.waitFor((c) => c.messages().length === 1)
    expect(data(b)).toEqual(["3"])
  })
})

const layer = (options: SseKify.LayerOptions) =>
  SseKify.layer({ keepAliveMs: 0, shutdown: { announce: false, graceMs: 0 }, ...options }).pipe(Layer.provide(Transport.layerNone))

describeEffect("replay TTL (TestClock)", () => {
  itEffect.scoped("users inactive for recentTTLMs are swept by one scheduled sweep", () =>
    Effect.gen(function*() {
      const sse = yield* SseKify.SseKify
      const server = yield* Effect.acquireRelease(
        Effect.promise(() => startServer((req, res) => {
          const url = new URL(req.url ?? "/", "http://x")
          Effect.runSync(sse.registerConnection(url.searchParams.get("u")!, res).pipe(Effect.orDie))
        })),
        (s) => Effect.promise(() => s.close())
      )
      const open = (q: string, headers?: Record<string, string>) =>
        Effect.acquireRelease(
          Effect.promise(async () => {
            const c = await connect(server.url + "/" + q, headers ? { headers } : undefined)
            await c.waitFor((x) => x.text().includes("retry:"))
            return c
          }),
          (c) => Effect.sync(() => c.close())
        )
      yield* open("?u=old")
      yield* open("?u=fresh")
      yield* sse.sendToUser("old", 1, { id: "o1" })
      yield* sse.sendToUser("fresh", 1, { id: "f1" })
      yield* TestClock.adjust("50 seconds")
      yield* sse.sendToUser("fresh", 2, { id: "f2" })
      yield* sse.sendToUser("fresh", 3, { id: "f3" })
      yield* TestClock.adjust("70 seconds") // old: 120 s idle > 60 s; fresh: 70 s idle > 60 s too
      const old = yield* open("?u=old", { "last-event-id": "o1" })
      yield* Effect.promise(() => old.waitFor((c) => c.messages().length === 1))
      expectEffect(JSON.parse(old.messages()[0]!.data)).toEqual({ lastEventId: "o1", reason: "expired" })
      yield* sse.sendToUser("fresh", 4, { id: "f4" })
      yield* TestClock.adjust("30 seconds")
      const fresh = yield* open("?u=fresh", { "last-event-id": "f1" })
      yield* Effect.promise(() => fresh.waitFor((c) => c.messages().length === 1))
      // f1..f3 expired with the user's ring; f4 came after: the ring restarted then
      expectEffect(JSON.parse(fresh.messages()[0]!.data).reason).toBe("unknown")
    }).pipe(Effect.provide(layer({ recentTTLMs: 60_000, replayGapEvent: "gap", autoFields: { timestamp: false } }))))
})
