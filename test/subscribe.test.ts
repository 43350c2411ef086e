/**
 * Issue 14 item 3, the rest: `SseKifyService.subscribe(types, { capacity })` is a
 * bounded, sliding queue (a new event replaces the oldest waiting one, counted in
 * `dropped`), tested at and one past the capacity; and the error conditions that exist
 * only as events — BackpressureDisconnect, BusMessageInvalid, SeqKvFallback,
 * LastEventIdTooLong — are each found, typed, by a subscription acquired before the
 * condition is provoked over real sockets (an HTTP client, a Redis server).
 */
import { describe, expect, it } from "@effect/vitest"
import { Cause, Chunk, Context, Effect, Exit, Layer, Queue } from "effect"
import { execFile } from "node:child_process"
import { afterAll, beforeAll } from "vitest"
import { InvalidInput, type SseKifyError, SseKify, Transport } from "../src/index.js"
import { RedisTransport } from "../src/redis.js"
import { serverWith } from "./support/effectServer.js"
import { redisAvailable, type RedisServer, startRedis, stopAll } from "./support/redisServer.js"
import { connect } from "./support/sse.js"

const quiet = { shutdown: { announce: false, graceMs: 0 } } as const
const report = (field: string) => new InvalidInput({ field, reason: "test" })
const fieldOf = (event: { readonly payload: SseKifyError }) => (event.payload._tag === "InvalidInput" ? event.payload.field : "?")

describe("subscribe with a capacity", () => {
  it.scoped("at the capacity nothing is dropped; one past it the oldest waiting event is, and counted", () =>
    Effect.gen(function*() {
      const sse = yield* SseKify.SseKify
      const atCapacity = yield* sse.subscribe(["error"], { capacity: 3 })
      const pastCapacity = yield* sse.subscribe(["error"], { capacity: 3 })
      const unbounded = yield* sse.subscribe(["error"])
      for (const f of ["a", "b", "c"]) sse.unsafeReport(report(f))
      expect(Chunk.toArray(yield* Queue.takeAll(atCapacity)).map(fieldOf)).toEqual(["a", "b", "c"])
      expect(yield* atCapacity.dropped).toBe(0)

      sse.unsafeReport(report("d"))
      expect(Chunk.toArray(yield* Queue.takeAll(pastCapacity)).map(fieldOf)).toEqual(["b", "c", "d"])
      expect(yield* pastCapacity.dropped).toBe(1)
      // taking made room again: the next one is not a drop
      sse.unsafeReport(report("e"))
      expect(yield* pastCapacity.dropped).toBe(1)
      expect(fieldOf(yield* Queue.take(pastCapacity))).toBe("e")

      expect(Chunk.toArray(yield* Queue.takeAll(unbounded)).map(fieldOf)).toEqual(["a", "b", "c", "d", "e"])
      expect(yield* unbounded.dropped).toBe(0)
    }).pipe(Effect.provide(SseKify.layerTest(quiet))))

  it.scoped("capacity 1 keeps the newest; all types with a capacity; the queue is shut down with the scope", () =>
    Effect.gen(function*() {
      const sse = yield* SseKify.SseKify
      const { dropped, last, queue } = yield* Effect.scoped(Effect.gen(function*() {
        const q = yield* sse.subscribe(undefined, { capacity: 1 })
        for (const f of ["a", "b", "c"]) sse.unsafeReport(report(f))
        const taken = yield* Queue.take(q)
        return { queue: q, last: taken.type === "error" ? fieldOf(taken) : taken.type, dropped: yield* q.dropped }
      }))
      expect(last).toBe("c")
      expect(dropped).toBe(2)
      expect(yield* Queue.isShutdown(queue)).toBe(true)
    }).pipe(Effect.provide(SseKify.layerTest(quiet))))

  it.scoped("a capacity that is not a positive integer is a defect with InvalidInput", () =>
    Effect.gen(function*() {
      const sse = yield* SseKify.SseKify
      for (const capacity of [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
        const exit = yield* Effect.exit(Effect.scoped(sse.subscribe(["error"], { capacity })))
        expect(Exit.isFailure(exit)).toBe(true)
        const defect = Exit.isFailure(exit) ? Cause.squash(exit.cause) : undefined
        expect(defect).toBeInstanceOf(InvalidInput)
        expect((defect as InvalidInput).field).toBe("subscribe.capacity")
      }
    }).pipe(Effect.provide(SseKify.layerTest(quiet))))
})

// ---------------------------------------------------------------------------
// the conditions that are events only, subscribed before they happen
// ---------------------------------------------------------------------------

/** The first 'error' event of `code` in the queue (every other one is taken too). */
const findError = <C extends SseKifyError["code"]>(
  queue: Queue.Dequeue<{ readonly type: "error"; readonly payload: SseKifyError }>,
  code: C
) =>
  Effect.gen(function*() {
    for (let i = 0; i < 100; i++) {
      const event = yield* Queue.take(queue)
      if (event.payload.code === code) return event.payload as Extract<SseKifyError, { readonly code: C }>
    }
    return yield* Effect.die(`no ${code} among 100 events`)
  }).pipe(Effect.timeoutFail({ duration: "5 seconds", onTimeout: () => new Error(`no ${code} within 5 s`) }), Effect.orDie)

describe("the event-only conditions are subscribable before they happen", () => {
  it.scoped("BackpressureDisconnect: a client that does not read, under dropPolicy 'disconnect'", () =>
    Effect.gen(function*() {
      const sse = yield* SseKify.SseKify
      const errors = yield* sse.subscribe(["error"], { capacity: 16 })
      const s = yield* serverWith
      const pending = connect(s.server.url + "/", { highWaterMark: 16 })
      const [, res] = yield* Effect.promise(() => s.next())
      const handle = yield* sse.connect("slow", res, { maxQueueItems: 1, dropPolicy: "disconnect" })
      yield* Effect.promise(() => pending)
      const big = "y".repeat(256 * 1024)
      for (let i = 0; i < 64 && (yield* sse.stats).disconnectedByBackpressure === 0; i++) yield* sse.sendToUser("slow", big)
      const error = yield* findError(errors, "BACKPRESSURE_DISCONNECT")
      expect(error._tag).toBe("BackpressureDisconnect")
      expect(error.connId).toBe(handle.connId)
      expect(error.userId).toBe("slow")
    }).pipe(Effect.provide(SseKify.layerTest(quiet))))

  it.scoped("LastEventIdTooLong: a reconnect whose Last-Event-ID header is over the limit", () =>
    Effect.gen(function*() {
      const sse = yield* SseKify.SseKify
      const errors = yield* sse.subscribe(["error"])
      const s = yield* serverWith
      const pending = connect(s.server.url + "/", { headers: { "Last-Event-ID": "z".repeat(65) } })
      const [, res] = yield* Effect.promise(() => s.next())
      yield* sse.connect("carol", res)
      const client = yield* Effect.promise(() => pending)
      expect(client.status).toBe(200)
      const error = yield* findError(errors, "LAST_EVENT_ID_TOO_LONG")
      expect({ length: error.length, limit: error.limit }).toEqual({ length: 65, limit: 64 })
    }).pipe(Effect.provide(SseKify.layerTest({ ...quiet, maxLastEventIdLength: 64 }))))

  it.scoped("SeqKvFallback: a publish with a seq key on a bus that offers no key/value store", () => {
    const bus = Transport.createMemoryBus()
    return Effect.gen(function*() {
      const sse = yield* SseKify.SseKify
      const errors = yield* sse.subscribe(["error"])
      const s = yield* serverWith
      const pending = connect(s.server.url + "/")
      const [, res] = yield* Effect.promise(() => s.next())
      yield* sse.connect("dave", res)
      const client = yield* Effect.promise(() => pending)
      yield* sse.publish({ requestId: "r1", text: "hi" }, "dave")
      const error = yield* findError(errors, "SEQ_KV_FALLBACK")
      expect(error._tag).toBe("SeqKvFallback")
      // the frame still went out, numbered from memory
      yield* Effect.promise(() => client.waitFor((c) => c.messages().length === 1))
      expect(JSON.parse(client.messages()[0]!.data).seq).toBe(0)
    }).pipe(
      Effect.provide(SseKify.layer(quiet).pipe(Layer.provide(Layer.succeed(Transport.Transport, Transport.memory(bus)))))
    )
  })

  describe.skipIf(!redisAvailable())("over Redis", () => {
    let redis: RedisServer
    beforeAll(async () => {
      redis = await startRedis()
    })
    afterAll(stopAll)

    it.scopedLive("BusMessageInvalid: an unsigned message published on the channel of a signed bus", () =>
      Effect.gen(function*() {
        const channel = `obs:${process.pid}:${Date.now()}`
        const context = yield* Layer.build(
          SseKify.layer({ ...quiet, channel, busSecret: "s3cret-s3cret-s3cret" }).pipe(
            Layer.provide(RedisTransport.layer({ url: redis.url }))
          )
        )
        const sse = Context.get(context, SseKify.SseKify)
        yield* sse.ready
        const errors = yield* sse.subscribe(["error"])
        const published = yield* Effect.async<string>((resume) => {
          execFile("redis-cli", ["-h", "127.0.0.1", "-p", String(redis.port), "PUBLISH", channel, "{\"type\":\"all\",\"data\":1}"], { timeout: 5_000 }, (error, stdout) =>
            resume(error === null ? Effect.succeed(stdout.trim()) : Effect.die(error)))
        })
        expect(published).toBe("1") // one subscriber: this instance
        const error = yield* findError(errors, "BUS_MESSAGE_INVALID")
        expect(error._tag).toBe("BusMessageInvalid")
        expect((yield* sse.stats).busRejected).toBe(1)
      }))
  })
})
