/**
 * The Effect API: layers, Connection as a scoped resource, typed errors, the events
 * stream, and time-driven behaviour under TestClock (heartbeats, shutdown grace).
 */
import { describe, expect, it } from "@effect/vitest"
import { Chunk, Context, Effect, Exit, Fiber, Layer, Scope, Stream, TestClock } from "effect"
import { Connection, SseKify, Transport } from "../src/index.js"
import { connect, type RawClient, startServer } from "./support/sse.js"

/** A real server whose requests are handed to `onRequest` (to register inside an Effect). */
const serverWith = Effect.acquireRelease(
  Effect.promise(async () => {
    const pending: Array<[import("node:http").IncomingMessage, import("node:http").ServerResponse]> = []
    const waiters: Array<() => void> = []
    const server = await startServer((req, res) => {
      pending.push([req, res])
      waiters.splice(0).forEach((w) => w())
    })
    const next = () =>
      new Promise<[import("node:http").IncomingMessage, import("node:http").ServerResponse]>((resolve) => {
        const take = () => resolve(pending.shift()!)
        if (pending.length > 0) take()
        else waiters.push(take)
      })
    return { server, next }
  }),
  ({ server }) => Effect.promise(() => server.close())
)

/**
 * Opens a client; returns the server side of its request (to register) and the client,
 * whose response starts once the connection is registered.
 */
const open = (s: Effect.Effect.Success<typeof serverWith>, query = "") =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      const client = connect(s.server.url + "/" + query)
      const [req, res] = await s.next()
      return { client, req, res }
    }),
    ({ client }) => Effect.promise(() => client.then((c) => c.close(), () => {}))
  )

const waitFor = (client: RawClient, predicate: (c: RawClient) => boolean, what?: string) =>
  Effect.promise(() => client.waitFor(predicate, 5_000, what))

const single = (options?: SseKify.LayerOptions) =>
  SseKify.layer({ shutdown: { announce: false, graceMs: 0 }, ...options }).pipe(Layer.provide(Transport.layerNone))

describe("SseKify (Effect API)", () => {
  it.scoped("delivers through the service and returns counts", () =>
    Effect.gen(function*() {
      const sse = yield* SseKify.SseKify
      const s = yield* serverWith
      const opened = yield* open(s)
      const handle = yield* sse.registerConnection("alice", opened.res, { rooms: ["r"] })
      const client = yield* Effect.promise(() => opened.client)
      expect(handle.connId).not.toBe("")
      expect(yield* sse.sendToUser("alice", { a: 1 }, { event: "e" })).toBe(1)
      expect(yield* sse.sendToRoom("r", { a: 2 })).toBe(1)
      expect(yield* sse.sendToAll({ a: 3 })).toBe(1)
      yield* waitFor(client, (c) => c.messages().length === 3)
      expect((yield* sse.stats)).toMatchObject({ connections: 1, sent: 3 })
      expect(yield* sse.getAllUsersConnectionStats).toEqual({ alice: 1 })
    }).pipe(Effect.provide(single({ keepAliveMs: 0 }))))

  it.scoped("fails with typed errors", () =>
    Effect.gen(function*() {
      const sse = yield* SseKify.SseKify
      const circular: Record<string, unknown> = {}
      circular.me = circular
      const err = yield* Effect.flip(sse.sendToAll(circular))
      expect(err._tag).toBe("SerializeFailed")
      const big = yield* Effect.flip(sse.sendToAll("x".repeat(200)))
      expect(big).toMatchObject({ _tag: "PayloadTooLarge", size: 202, limit: 100 })
      const bad = yield* Effect.flip(sse.sendToUser("", 1))
      expect(bad).toMatchObject({ _tag: "InvalidInput", field: "userId" })
      const caught = yield* sse.sendToAll(circular).pipe(Effect.catchTag("SerializeFailed", () => Effect.succeed(-1)))
      expect(caught).toBe(-1)
      expect((yield* sse.stats).errorCount).toBe(4)
    }).pipe(Effect.provide(single({ maxPayloadBytes: 100 }))))

  it.scoped("a layer with invalid options fails with InvalidInput", () =>
    Effect.gen(function*() {
      const exit = yield* Effect.exit(Effect.scoped(Layer.build(single({ retryMs: -5 }))))
      expect(Exit.isFailure(exit)).toBe(true)
      if (Exit.isFailure(exit)) expect(JSON.stringify(exit.cause)).toContain("retryMs")
    }))

  it.scoped("Connection.scoped closes the connection with its scope", () =>
    Effect.gen(function*() {
      const sse = yield* SseKify.SseKify
      const s = yield* serverWith
      const opened = yield* open(s)
      const scope = yield* Scope.make()
      const handle = yield* Connection.scoped("bob", opened.res).pipe(Scope.extend(scope))
      const client = yield* Effect.promise(() => opened.client)
      expect(yield* sse.getUserConnectionIds("bob")).toEqual([handle.connId])
      yield* Scope.close(scope, Exit.void)
      yield* Effect.promise(() => client.ended())
      expect(yield* sse.isUserOnline("bob")).toBe(false)
    }).pipe(Effect.provide(single())))

  it.scoped("the events stream carries connect, message-sent, error and disconnect", () =>
    Effect.gen(function*() {
      const sse = yield* SseKify.SseKify
      const collected = yield* sse.events.pipe(Stream.take(4), Stream.runCollect, Effect.fork)
      yield* Effect.yieldNow()
      const s = yield* serverWith
      const opened = yield* open(s)
      const handle = yield* sse.registerConnection("carol", opened.res)
      yield* sse.sendToUser("carol", 1)
      yield* Effect.flip(sse.sendToUser("carol", 1n))
      handle.close()
      const events = Chunk.toReadonlyArray(yield* Fiber.join(collected))
      expect(events.map((e) => e.type)).toEqual(["connect", "message-sent", "error", "disconnect"])
      expect(events[1]!.payload).toEqual({ scope: "user", userId: "carol", count: 1 })
    }).pipe(Effect.provide(single())))

  it.scoped("eventsOf takes only the events asked for", () =>
    Effect.gen(function*() {
      const sse = yield* SseKify.SseKify
      const collected = yield* sse.eventsOf(["error"]).pipe(Stream.take(2), Stream.runCollect, Effect.fork)
      yield* Effect.yieldNow()
      const s = yield* serverWith
      const opened = yield* open(s)
      yield* sse.registerConnection("frank", opened.res)
      yield* sse.sendToUser("frank", 1)
      yield* Effect.flip(sse.sendToUser("frank", 1n))
      yield* Effect.flip(sse.sendToAll(2n))
      const events = Chunk.toReadonlyArray(yield* Fiber.join(collected))
      expect(events.map((e) => [e.type, (e.payload as { _tag?: string })._tag])).toEqual([["error", "SerializeFailed"], ["error", "SerializeFailed"]])
    }).pipe(Effect.provide(single())))

  it.scoped("heartbeats follow the Clock (TestClock)", () =>
    Effect.gen(function*() {
      const sse = yield* SseKify.SseKify
      const s = yield* serverWith
      const opened = yield* open(s)
      yield* sse.registerConnection("dave", opened.res)
      const client = yield* Effect.promise(() => opened.client)
      yield* waitFor(client, (c) => c.text().includes("retry:"))
      expect(client.text()).not.toContain(": ping")
      yield* TestClock.adjust("14 seconds")
      expect(client.text()).not.toContain(": ping")
      yield* TestClock.adjust("1 second")
      yield* waitFor(client, (c) => (c.text().match(/: ping /g) ?? []).length === 1, "first ping")
      yield* TestClock.adjust("30 seconds")
      yield* waitFor(client, (c) => (c.text().match(/: ping /g) ?? []).length === 3, "three pings")
    }).pipe(Effect.provide(single())))

  it.scoped("closing the layer's scope announces, waits the grace period and ends connections", () =>
    Effect.gen(function*() {
      const s = yield* serverWith
      const opened = yield* open(s)
      const scope = yield* Scope.make()
      const context = yield* Layer.buildWithScope(
        SseKify.layer({ shutdown: { graceMs: 2_000 } }).pipe(Layer.provide(Transport.layerNone)),
        scope
      )
      const sse = Context.get(context, SseKify.SseKify)
      yield* sse.registerConnection("erin", opened.res)
      const client = yield* Effect.promise(() => opened.client)
      const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
      yield* waitFor(client, (c) => c.messages().some((m) => m.event === "server:shutdown"), "announcement")
      expect(client.isEnded()).toBe(false)
      yield* TestClock.adjust("2 seconds")
      yield* Fiber.join(closing)
      yield* Effect.promise(() => client.ended())
    }))
})
