/**
 * The stores are layers taken from the context: two instances on one in-memory bus
 * sharing one in-memory replay store, a store written here provided instead of the
 * default (and seen to be used, its reports reaching the instance's 'error' events),
 * and the time-driven store behaviour (replay TTL, seq key TTL) under TestClock.
 * Real node:http sockets and a raw client.
 */
import { describe, expect, it } from "@effect/vitest"
import { Chunk, Context, Effect, Fiber, Layer, Stream, TestClock } from "effect"
import { Presence, ReplayBuffer, Sequencer, SseKify, Transport, TransportError } from "../src/index.js"
import { type Server, serverWith } from "./support/effectServer.js"
import { connect, type RawClient, until } from "./support/sse.js"


/** Opens a client (optionally with Last-Event-ID); returns the request's response and the client. */
const open = (s: Server, headers?: Record<string, string>) =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      const client = connect(s.server.url + "/", headers === undefined ? undefined : { headers })
      const [, res] = await s.next()
      return { client, res }
    }),
    ({ client }) => Effect.promise(() => client.then((c) => c.close(), () => {}))
  )

const waitFor = (client: RawClient, predicate: (c: RawClient) => boolean, what?: string) =>
  Effect.promise(() => client.waitFor(predicate, 5_000, what))

const quiet = { keepAliveMs: 0, shutdown: { announce: false, graceMs: 0 } } as const

describe("stores as layers", () => {
  it.scopedLive(
    "two instances on Transport.layerMemory share one in-memory replay store: a reconnect to the other instance replays, each frame once",
    () =>
      Effect.gen(function*() {
        const bus = Transport.createMemoryBus()
        // One built context: one bus, one replay store, given to both instances.
        const shared = yield* Layer.build(
          Layer.merge(Transport.layerMemory(bus), ReplayBuffer.layerMemory({ size: 10, shared: true }))
        )
        const instance = (instanceId: string) =>
          SseKify.make({ ...quiet, instanceId }).pipe(
            Effect.provide(SseKify.layerStores({ instanceId })),
            Effect.provide(shared)
          )
        const a = yield* instance("a")
        const b = yield* instance("b")
        const s = yield* serverWith

        const first = yield* open(s)
        yield* a.registerConnection("alice", first.res)
        const atA = yield* Effect.promise(() => first.client)
        // from A (delivered at A, received off the bus by B) and from B (the same)
        yield* a.publish({ n: 1 }, "alice", { id: "1" })
        yield* b.publish({ n: 2 }, "alice", { id: "2" })
        yield* waitFor(atA, (c) => c.messages().length === 2, "two frames at A")
        atA.close()
        yield* Effect.promise(() => atA.ended())
        // while alice has no connection anywhere: kept by the publishing instance only
        yield* a.publish({ n: 3 }, "alice", { id: "3" })
        yield* b.publish({ n: 4 }, "alice", { id: "4" })

        const again = yield* open(s, { "last-event-id": "1" })
        yield* b.registerConnection("alice", again.res)
        const atB = yield* Effect.promise(() => again.client)
        yield* waitFor(atB, (c) => c.messages().length === 3, "the replay at B")
        expect(atB.messages().map((m) => m.id)).toEqual(["2", "3", "4"])
        expect(atB.messages().map((m) => JSON.parse(m.data).n)).toEqual([2, 3, 4])
        // nothing more arrives: one more live frame is the fourth message, no duplicate before it
        yield* a.publish({ n: 5 }, "alice", { id: "5" })
        yield* waitFor(atB, (c) => c.messages().length === 4, "the live frame")
        expect(atB.messages().map((m) => m.id)).toEqual(["2", "3", "4", "5"])
        expect((yield* b.stats).replayed).toBe(3)
        // seq and the bus are the memory bus's: both instances' counters went through it
        expect(bus.published).toBeGreaterThanOrEqual(5)
      })
  )

  it.scopedLive(
    "two instances share Presence.layerMemory: the cluster-wide cap applies across them, counts are cluster-wide, closeOldest reaches the other instance",
    () =>
      Effect.gen(function*() {
        const bus = Transport.createMemoryBus()
        const shared = yield* Layer.build(Layer.merge(Transport.layerMemory(bus), Presence.layerMemory))
        const instance = (instanceId: string, policy: "reject" | "closeOldest") =>
          SseKify.make({
            ...quiet,
            instanceId,
            presence: { heartbeatMs: 50, ttlMs: 2_000 },
            connectionLimitScope: "cluster",
            maxConnectionsPerUser: 1,
            connectionLimitPolicy: policy
          }).pipe(Effect.provide(SseKify.layerStores({ instanceId })), Effect.provide(shared))
        const a = yield* instance("a", "reject")
        const b = yield* instance("b", "reject")
        const s = yield* serverWith

        const first = yield* open(s)
        yield* a.registerConnection("alice", first.res)
        const atA = yield* Effect.promise(() => first.client)
        expect(atA.status).toBe(200)
        expect(yield* b.getUserConnectionCount("alice", { scope: "cluster" })).toBe(1)
        expect(yield* b.getUserConnectionCount("alice")).toBe(0)

        // a second connection on the other instance: over the cluster-wide cap, refused
        const second = yield* open(s)
        yield* b.registerConnection("alice", second.res).pipe(Effect.ignore)
        const refused = yield* Effect.promise(() => second.client)
        expect(refused.status).toBe(429)
        expect((yield* b.stats).connections).toBe(0)

        // once alice left instance a, instance b admits her
        atA.close()
        yield* Effect.promise(() => atA.ended())
        yield* Effect.promise(() => until(() => Effect.runSync(a.stats).connections === 0, 5_000, "alice gone from a"))
        const third = yield* open(s)
        yield* b.registerConnection("alice", third.res)
        const atB = yield* Effect.promise(() => third.client)
        expect(atB.status).toBe(200)
        expect(yield* a.getUserConnectionCount("alice", { scope: "cluster" })).toBe(1)

        // closeOldest on a third instance: its new connection evicts the one on b at b's next beat
        const c = yield* instance("c", "closeOldest")
        const fourth = yield* open(s)
        yield* c.registerConnection("alice", fourth.res)
        const atC = yield* Effect.promise(() => fourth.client)
        expect(atC.status).toBe(200)
        yield* Effect.promise(() => atB.ended())
        expect(yield* c.getUserConnectionCount("alice", { scope: "cluster" })).toBe(1)
      })
  )

  it.effect("Presence.makeMemoryStore under TestClock: entries live ttlMs after their last beat; an evicted member learns it at its beat", () =>
    Effect.gen(function*() {
      const store = yield* Presence.makeMemoryStore
      expect(yield* store.admit("u", "0001|a|1", 1_000, 2, false)).toEqual({ admitted: true, count: 1, evicted: [] })
      expect(yield* store.admit("u", "0002|b|1", 1_000, 2, false)).toEqual({ admitted: true, count: 2, evicted: [] })
      // at the cap: refused, or the oldest marked evicted
      expect(yield* store.admit("u", "0003|c|1", 1_000, 2, false)).toEqual({ admitted: false, count: 2, evicted: [] })
      expect(yield* store.admit("u", "0003|c|1", 1_000, 2, true)).toEqual({ admitted: true, count: 2, evicted: ["0001|a|1"] })
      // the evicted member's instance hears of it at its beat; the others are refreshed
      expect(yield* store.beat([["u", ["0001|a|1", "0002|b|1"]]], 1_000)).toEqual(["0001|a|1"])
      yield* TestClock.adjust(999)
      expect(yield* store.count("u")).toBe(2)
      yield* store.beat([["u", ["0002|b|1"]]], 1_000)
      yield* TestClock.adjust(1)
      // 0003 was last admitted 1000 ms ago: gone; 0002 beat 1 ms ago: live
      expect(yield* store.count("u")).toBe(1)
      yield* store.remove([["u", ["0002|b|1"]]])
      expect(yield* store.count("u")).toBe(0)
      expect(yield* store.admit("u", "0004|d|1", 1_000, 1, false)).toEqual({ admitted: true, count: 1, evicted: [] })
    }))

  it.scoped("a Sequencer written here is used instead of the memory one, and what it reports is an 'error' event", () =>
    Effect.gen(function*() {
      const listeners = new Set<(e: TransportError) => void>()
      const asked: Array<string> = []
      const counters = { seqIncrsLocal: 0, seqIncrsRedis: 0, lastSeqKvFallbackAt: 0 }
      const mine: Sequencer.SequencerService = {
        nextLocal: (key) => {
          asked.push(key)
          return 100 + asked.length
        },
        next: (key) => Effect.sync(() => (asked.push(key), 100 + asked.length)),
        sweep: Effect.void,
        counters,
        size: () => 0,
        subscribeErrors: (listener) =>
          Effect.acquireRelease(Effect.sync(() => listeners.add(listener)), () => Effect.sync(() => listeners.delete(listener)))
            .pipe(Effect.asVoid)
      }
      const built = yield* Layer.build(
        SseKify.layer(quiet).pipe(
          Layer.provide(Layer.merge(Transport.layerNone, Layer.succeed(Sequencer.Sequencer, mine)))
        )
      )
      const sse = Context.get(built, SseKify.SseKify)
      const errors = yield* sse.eventsOf(["error"]).pipe(Stream.take(1), Stream.runCollect, Effect.fork)
      const s = yield* serverWith
      const opened = yield* open(s)
      yield* sse.registerConnection("alice", opened.res)
      const client = yield* Effect.promise(() => opened.client)
      yield* sse.sendToUser("alice", { requestId: "job-1" })
      yield* sse.sendToUser("alice", { requestId: "job-1" })
      yield* waitFor(client, (c) => c.messages().length === 2)
      expect(client.messages().map((m) => JSON.parse(m.data).seq)).toEqual([101, 102])
      expect(asked).toEqual(["job-1", "job-1"])
      // the instance subscribed to the store's reports: one listener, and it reaches 'error'
      expect(listeners.size).toBe(1)
      const failure = new TransportError({ operation: "incrExpire", cause: new Error("store down") })
      for (const listener of listeners) listener(failure)
      const got = Chunk.toReadonlyArray(yield* Fiber.join(errors))
      expect(got).toHaveLength(1)
      expect(got[0]!.payload).toBe(failure)
    }))

  it.scoped("a ReplayBuffer.layerMemory provided with SseKify.layer is the one used; its TTL follows the Clock (TestClock)", () =>
    Effect.gen(function*() {
      const sse = yield* SseKify.SseKify
      const s = yield* serverWith
      const first = yield* open(s)
      yield* sse.registerConnection("alice", first.res)
      const client = yield* Effect.promise(() => first.client)
      yield* sse.sendToUser("alice", "one", { id: "1" })
      yield* sse.sendToUser("alice", "two", { id: "2" })
      yield* waitFor(client, (c) => c.messages().length === 2)
      client.close()
      yield* Effect.promise(() => client.ended())

      // at the TTL exactly: still there
      yield* TestClock.adjust("60 seconds")
      const within = yield* open(s, { "last-event-id": "1" })
      yield* sse.registerConnection("alice", within.res)
      const c1 = yield* Effect.promise(() => within.client)
      yield* waitFor(c1, (c) => c.messages().length === 1)
      expect(c1.messages()[0]).toMatchObject({ id: "2", data: JSON.stringify("two") })
      c1.close()
      yield* Effect.promise(() => c1.ended())

      // one past the TTL since the last activity (the reconnect above): expired
      yield* TestClock.adjust("60001 millis")
      const after = yield* open(s, { "last-event-id": "1" })
      yield* sse.registerConnection("alice", after.res)
      const c2 = yield* Effect.promise(() => after.client)
      yield* waitFor(c2, (c) => c.messages().length === 1)
      expect(c2.messages()[0]).toMatchObject({ event: "gap" })
      expect(JSON.parse(c2.messages()[0]!.data)).toEqual({ lastEventId: "1", reason: "expired" })
    }).pipe(
      Effect.provide(
        // the options would keep frames 30 minutes: the layer given here says 60 s
        SseKify.layer({ ...quiet, replayGapEvent: "gap" }).pipe(
          Layer.provide(Layer.merge(Transport.layerNone, ReplayBuffer.layerMemory({ ttlMs: 60_000 })))
        )
      )
    ))

  it.scoped("a Sequencer.layerMemory provided with SseKify.layer is the one used: an idle key expires after its TTL (TestClock)", () =>
    Effect.gen(function*() {
      const sse = yield* SseKify.SseKify
      const seqOf = (data: { readonly streamId: string }) =>
        Effect.map(Effect.flatMap(SseKify.SseKify, (s) => s.sendToAll(data)), () => undefined)
      const s = yield* serverWith
      const opened = yield* open(s)
      yield* sse.registerConnection("alice", opened.res)
      const client = yield* Effect.promise(() => opened.client)
      yield* seqOf({ streamId: "t" })
      yield* seqOf({ streamId: "t" })
      yield* TestClock.adjust("10 seconds") // at the TTL: kept
      yield* seqOf({ streamId: "t" })
      yield* TestClock.adjust("10001 millis") // one past it: a new stream
      yield* seqOf({ streamId: "t" })
      yield* waitFor(client, (c) => c.messages().length === 4)
      expect(client.messages().map((m) => JSON.parse(m.data).seq)).toEqual([0, 1, 2, 0])
    }).pipe(
      // the options would keep keys a day: the layer given here says 10 s
      Effect.provide(
        SseKify.layer(quiet).pipe(
          Layer.provide(Layer.merge(Transport.layerNone, Sequencer.layerMemory({ ttlSeconds: 10 })))
        )
      )
    ))
})
