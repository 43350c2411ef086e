/**
 * Issue 14 item 3 and the refusal messages of item 5: the `'error'` event typed as the
 * library's errors (each with `code`, `e.code` compiles), an adapter's own error
 * re-emitted by the facade only when it is what the type says, a subscription to the
 * events acquired before anything happens (no event emitted after it is lost, types not
 * asked for are not built), and a 400 that says the user id is too long, on the Node
 * path and on the `ssekify/platform` endpoint (real sockets).
 */
import { HttpRouter, HttpServer } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Context, Effect, Fiber, Layer, Option, Queue, Stream } from "effect"
import { EventEmitter } from "node:events"
import * as http from "node:http"
import { afterEach, expectTypeOf, it as itVitest } from "vitest"
import * as HttpSse from "../src/HttpSse.js"
import {
  type AdapterError,
  createMemoryBus,
  isSseKifyError,
  SSEKify,
  type SSEKifyEventMap,
  SseKify,
  type SseKifyError,
  TransportError,
  Transport
} from "../src/index.js"
import { EngineKey } from "../src/internal/service.js"
import type { Engine } from "../src/internal/engine.js"
import { request, startServer, until } from "./support/sse.js"

const quiet = { shutdown: { announce: false, graceMs: 0 } } as const
const instance = SseKify.layer(quiet).pipe(Layer.provide(Transport.layerNone))

// ---------------------------------------------------------------------------
// the 'error' event's type
// ---------------------------------------------------------------------------

describe("the 'error' event is typed as the library's errors", () => {
  const cleanups: Array<() => Promise<unknown> | void> = []
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c()
  })

  itVitest("facade: e.code compiles and is the code of the typed error", async () => {
    const sse = new SSEKify()
    cleanups.push(() => sse.shutdown(quiet.shutdown))
    const codes: Array<string | undefined> = []
    sse.on("error", (e) => {
      // the documented "an Error with a code": compiles without a cast
      codes.push(e.code)
      expectTypeOf(e).toEqualTypeOf<SseKifyError | AdapterError>()
    })
    expectTypeOf<SSEKifyEventMap["error"]["code"]>().toEqualTypeOf<SseKifyError["code"] | string | undefined>()
    expect(sse.sendToUser("", "x")).toBe(0)
    expect(codes).toEqual(["INVALID_INPUT"])
  })

  it.scoped("Effect API: an 'error' event's payload is the union, narrowed by code", () =>
    Effect.gen(function*() {
      const service = yield* SseKify.SseKify
      const errors = yield* service.subscribe(["error"])
      yield* Effect.ignore(service.sendToUser("", "x"))
      const event = yield* Queue.take(errors)
      expectTypeOf(event.payload).toEqualTypeOf<SseKifyError>()
      expect(event.payload.code).toBe("INVALID_INPUT")
      if (event.payload.code === "INVALID_INPUT") expect(event.payload.field).toBe("userId")
      expect(isSseKifyError(event.payload)).toBe(true)
    }).pipe(Effect.provide(instance)))

  itVitest("facade: an adapter's Error is re-emitted as is, anything else it reports as the TransportError", async () => {
    // the README's "your own adapter" pattern over the in-process bus, whose 'error'
    // the application relays
    const bus = createMemoryBus()
    const inner = bus.adapter()
    const relay = new EventEmitter()
    const adapter = {
      publish: (channel: string, message: string) => inner.publish(channel, message),
      subscribe: (channel: string) => inner.subscribe(channel),
      on: (event: string, listener: (...args: Array<any>) => void) =>
        event === "error" ? relay.on("error", listener) : inner.on(event as "message", listener)
    }
    const sse = new SSEKify({ redis: adapter })
    cleanups.push(() => sse.shutdown(quiet.shutdown))
    await sse.ready()
    const seen: Array<SSEKifyEventMap["error"]> = []
    sse.on("error", (e) => void seen.push(e))
    const own = Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" })
    relay.emit("error", own)
    relay.emit("error", "a string, not an Error")
    const numbered = Object.assign(new Error("numbered"), { code: 42 })
    relay.emit("error", numbered)
    await until(() => seen.length === 3, 2_000, "three adapter errors")
    expect(seen[0]).toBe(own)
    expect(seen[0]!.code).toBe("ECONNREFUSED")
    expect(isSseKifyError(seen[0])).toBe(false)
    // what the type does not cover goes out wrapped, with a string code
    for (const [e, cause] of [[seen[1], "a string, not an Error"], [seen[2], numbered]] as const) {
      expect(e).toBeInstanceOf(TransportError)
      expect(isSseKifyError(e)).toBe(true)
      expect(e!.code).toBe("TRANSPORT_ERROR")
      expect((e as TransportError).cause).toBe(cause)
    }
  })
})

// ---------------------------------------------------------------------------
// a subscription acquired before anything happens
// ---------------------------------------------------------------------------

const engineOf = (service: SseKify.SseKifyService): Engine => (service as unknown as { readonly [EngineKey]: Engine })[EngineKey]

describe("SseKifyService.subscribe", () => {
  it.scoped("an event emitted right after the subscription is acquired is received", () =>
    Effect.gen(function*() {
      const service = yield* SseKify.SseKify
      const events = yield* service.subscribe()
      // no yield between: the failing send is reported synchronously
      const exit = yield* Effect.exit(service.sendToUser("x".repeat(300), "hi"))
      expect(exit._tag).toBe("Failure")
      const event = yield* Queue.take(events)
      expect(event.type).toBe("error")
      expect(event.type === "error" && event.payload.code).toBe("INVALID_INPUT")
    }).pipe(Effect.provide(instance)))

  it.scoped("events / eventsOf (built on it) still deliver once running", () =>
    Effect.gen(function*() {
      const service = yield* SseKify.SseKify
      const engine = engineOf(service)
      const before = engine.events.listenerCount()
      const first = yield* Effect.fork(Stream.runHead(service.eventsOf(["error"])))
      const all = yield* Effect.fork(Stream.runHead(service.events))
      // the streams subscribe when they start running: bounded wait for both listeners
      for (let i = 0; i < 1_000 && engine.events.listenerCount() < before + 2; i++) yield* Effect.yieldNow()
      expect(engine.events.listenerCount()).toBe(before + 2)
      yield* Effect.ignore(service.sendToUser("", "x"))
      const [a, b] = yield* Effect.all([Fiber.join(first), Fiber.join(all)])
      expect(Option.map(a, (e) => e.payload.code)).toEqual(Option.some("INVALID_INPUT"))
      expect(Option.map(b, (e) => e.type)).toEqual(Option.some("error"))
      // the streams ended: their subscriptions are gone
      expect(engine.events.listenerCount()).toBe(before)
    }).pipe(Effect.provide(instance)))

  it.scoped("types not asked for are wanted by no listener; the scope's end unsubscribes", () =>
    Effect.gen(function*() {
      const service = yield* SseKify.SseKify
      const engine = engineOf(service)
      expect(engine.events.wants("message-sent")).toBe(false)
      const inner = yield* Effect.scoped(Effect.gen(function*() {
        const errors = yield* service.subscribe(["error", "connect"])
        expect(engine.events.wants("error")).toBe(true)
        expect(engine.events.wants("connect")).toBe(true)
        expect(engine.events.wants("message-sent")).toBe(false)
        expect(engine.events.wants("drop")).toBe(false)
        // frequent events are not queued for it either
        yield* service.sendToAll("hi")
        return yield* Queue.size(errors)
      }))
      expect(inner).toBe(0)
      expect(engine.events.wants("error")).toBe(false)
      expect(engine.events.wants("connect")).toBe(false)
    }).pipe(Effect.provide(instance)))
})

// ---------------------------------------------------------------------------
// refusal messages
// ---------------------------------------------------------------------------

describe("a user id over maxUserIdLength is refused with a 400 that says so", () => {
  const longId = "u".repeat(300)

  itVitest("the Node path (registerConnection)", async () => {
    const sse = new SSEKify()
    sse.on("error", () => {})
    const server = await startServer((req, res) => {
      const userId = new URL(req.url ?? "/", "http://x").searchParams.get("userId") ?? ""
      sse.registerConnection(userId, res)
    })
    try {
      const tooLong = await request(`${server.url}/sse?userId=${longId}`)
      expect([tooLong.status, tooLong.body]).toEqual([400, "userId longer than maxUserIdLength (256)"])
      const atLimit = await request(`${server.url}/sse?userId=${"u".repeat(257)}`)
      expect(atLimit.body).toBe("userId longer than maxUserIdLength (256)")
      const missing = await request(`${server.url}/sse`)
      expect([missing.status, missing.body]).toEqual([400, "userId required"])
    } finally {
      await sse.shutdown(quiet.shutdown)
      await server.close()
    }
  })

  it.scopedLive("the ssekify/platform endpoint", () =>
    Effect.gen(function*() {
      const app = HttpRouter.empty.pipe(HttpRouter.get("/sse", HttpSse.handler()))
      const layer = HttpServer.serve(app).pipe(
        Layer.provideMerge(SseKify.layer({ ...quiet, maxUserIdLength: 16 }).pipe(Layer.provide(Transport.layerNone))),
        Layer.provideMerge(NodeHttpServer.layer(() => http.createServer(), { port: 0, host: "127.0.0.1" }))
      )
      const context = yield* Layer.build(layer)
      const address = Context.get(context, HttpServer.HttpServer).address
      if (address._tag !== "TcpAddress") throw new Error("expected a TCP address")
      const url = `http://127.0.0.1:${address.port}/sse`
      const tooLong = yield* Effect.promise(() => request(`${url}?userId=${"u".repeat(17)}`))
      expect([tooLong.status, tooLong.body]).toEqual([400, "userId longer than maxUserIdLength (16)"])
      const missing = yield* Effect.promise(() => request(url))
      expect([missing.status, missing.body]).toEqual([400, "userId required"])
    }))
})
