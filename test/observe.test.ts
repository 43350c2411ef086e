/**
 * Issue 14 item 4, logs and spans, over real `node:http` servers and raw clients:
 * - the four operations run in spans of the application's tracer (a test tracer given
 *   with `Layer.setTracer`): `ssekify.publish` (the service's send and publish effects),
 *   `ssekify.register`, `ssekify.replay` (a child of the registration) and
 *   `ssekify.deliver` (a message from the bus), with their parents and attributes;
 * - `autoFields.traceId` takes the current span's trace id (`getter: 'span'`, or a getter
 *   that receives the span), and is left out on the facade's synchronous path;
 * - every reported error is logged through the Logger the application provided
 *   (`Logger.replace`), at the level of its code, annotated with `code`, `userId` and
 *   `connId`; the facade logs nothing (its 'error' event and SsekifyWarning say it);
 * - with Effect's default tracer the synchronous paths make no span.
 */
import { HttpRouter, HttpServer } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Context, Effect, HashMap, Layer, List, Logger, LogLevel, Option, Queue, Tracer } from "effect"
import { afterAll, afterEach, beforeAll, it as itVitest } from "vitest"
import * as http from "node:http"
import * as HttpSse from "../src/HttpSse.js"
import { SSEKify, SseKify, Transport } from "../src/index.js"
import { RedisTransport } from "../src/redis.js"
import type { Engine } from "../src/internal/engine.js"
import { EngineKey } from "../src/internal/service.js"
import { serverWith } from "./support/effectServer.js"
import { redisAvailable, type RedisServer, startRedis, stopAll } from "./support/redisServer.js"
import { connect, type RawClient, startServer } from "./support/sse.js"

// ---------------------------------------------------------------------------
// a test tracer and a test logger
// ---------------------------------------------------------------------------

/** Effect's own spans (they keep name, parent, attributes, status), collected. */
const testTracer = () => {
  const native = Effect.runSync(Effect.tracer)
  const spans: Array<Tracer.Span> = []
  const tracer = Tracer.make({
    span: (name, parent, context, links, startTime, kind, options) => {
      const span = native.span(name, parent, context, links, startTime, kind, options)
      spans.push(span)
      return span
    },
    context: native.context
  })
  const named = (name: string) => spans.filter((s) => s.name === name)
  const one = (name: string) => {
    const found = named(name)
    expect(found.map((s) => s.name)).toEqual([name])
    return found[0]!
  }
  const parentOf = (span: Tracer.Span) => Option.getOrUndefined(span.parent)
  return { tracer, spans, named, one, parentOf, layer: Layer.setTracer(tracer) }
}

interface Entry {
  readonly level: string
  readonly message: string
  readonly annotations: Record<string, unknown>
}

const testLogger = () => {
  const entries: Array<Entry> = []
  const logger = Logger.make<unknown, void>(({ annotations, logLevel, message }) => {
    entries.push({
      level: logLevel.label,
      message: List.isList(message) ? List.toArray(message).join(" ") : Array.isArray(message) ? message.join(" ") : String(message),
      annotations: Object.fromEntries(HashMap.toEntries(annotations))
    })
  })
  return { entries, layer: Logger.replace(Logger.defaultLogger, logger) }
}

const quiet = { shutdown: { announce: false, graceMs: 0 } } as const

/** A registered connection with its raw client, on the test's server. */
const open = (userId: string, headers?: Record<string, string>) =>
  Effect.gen(function*() {
    const sse = yield* SseKify.SseKify
    const s = yield* serverWith
    const pending = connect(s.server.url + "/", headers === undefined ? undefined : { headers })
    const [, res] = yield* Effect.promise(() => s.next())
    const handle = yield* sse.connect(userId, res)
    const client = yield* Effect.promise(() => pending)
    return { handle, client }
  })

const frames = (client: RawClient, n: number) =>
  Effect.promise(() => client.waitFor((c) => c.messages().length >= n, 5_000, `${n} frames`)).pipe(
    Effect.map(() => client.messages())
  )

// ---------------------------------------------------------------------------
// spans
// ---------------------------------------------------------------------------

describe("spans of the application's tracer", () => {
  it.scoped("publish: the service's sends and publishes, children of the caller's span, with their attributes", () => {
    const t = testTracer()
    return Effect.gen(function*() {
      const sse = yield* SseKify.SseKify
      const { client } = yield* open("alice")
      yield* Effect.gen(function*() {
        expect(yield* sse.sendToUser("alice", { n: 1 })).toBe(1)
        expect(yield* sse.sendToRoom("nobody-here", { n: 2 })).toBe(0)
        yield* sse.publish({ n: 3 }, "alice")
      }).pipe(Effect.withSpan("app.request"))
      yield* frames(client, 2)

      const app = t.one("app.request")
      const published = t.named("ssekify.publish")
      expect(published.map((s) => s.attributes.get("ssekify.operation"))).toEqual(["sendToUser", "sendToRoom", "publish"])
      for (const span of published) {
        expect(t.parentOf(span)).toBe(app)
        expect(span.traceId).toBe(app.traceId)
        expect(span.status._tag).toBe("Ended")
      }
      const [toUser, toRoom, publish] = published
      expect(Object.fromEntries(toUser!.attributes)).toEqual({
        "ssekify.operation": "sendToUser",
        "ssekify.target_type": "user",
        "ssekify.user_id": "alice",
        "ssekify.delivered": 1
      })
      expect(toRoom!.attributes.get("ssekify.room")).toBe("nobody-here")
      expect(toRoom!.attributes.get("ssekify.delivered")).toBe(0)
      expect(publish!.attributes.get("ssekify.user_id")).toBe("alice")
      expect(publish!.attributes.get("ssekify.target_type")).toBe("user")
    }).pipe(Effect.provide(SseKify.layerTest(quiet)), Effect.provide(t.layer))
  })

  it.scoped("a failed send ends its span with the failure", () => {
    const t = testTracer()
    return Effect.gen(function*() {
      const sse = yield* SseKify.SseKify
      yield* Effect.ignore(sse.sendToUser("", "x"))
      const span = t.one("ssekify.publish")
      expect(span.status._tag === "Ended" && span.status.exit._tag).toBe("Failure")
    }).pipe(Effect.provide(SseKify.layerTest(quiet)), Effect.provide(t.layer))
  })

  it.scoped("register and replay: the replay is a child of the registration, with the frames it wrote", () => {
    const t = testTracer()
    return Effect.gen(function*() {
      const sse = yield* SseKify.SseKify
      const first = yield* open("alice")
      for (const id of ["1", "2", "3"]) yield* sse.sendToUser("alice", { id }, { id })
      yield* frames(first.client, 3)
      const again = yield* open("alice", { "Last-Event-ID": "1" }).pipe(Effect.withSpan("app.reconnect"))
      const replayedFrames = yield* frames(again.client, 2)
      expect(replayedFrames.map((f) => f.id)).toEqual(["2", "3"])

      const registers = t.named("ssekify.register")
      expect(registers.map((s) => s.attributes.get("ssekify.conn_id"))).toEqual([first.handle.connId, again.handle.connId])
      expect(registers.map((s) => s.attributes.get("ssekify.user_id"))).toEqual(["alice", "alice"])
      const register = registers[1]!
      expect(t.parentOf(register)).toBe(t.one("app.reconnect"))
      // the first connection had no Last-Event-ID: no replay
      const replay = t.one("ssekify.replay")
      expect(t.parentOf(replay)).toBe(register)
      expect(replay.traceId).toBe(register.traceId)
      expect(Object.fromEntries(replay.attributes)).toEqual({
        "ssekify.user_id": "alice",
        "ssekify.conn_id": again.handle.connId,
        "ssekify.last_event_id_length": 1,
        "ssekify.replayed": 2
      })
      expect(replay.status._tag).toBe("Ended")
    }).pipe(Effect.provide(SseKify.layerTest(quiet)), Effect.provide(t.layer))
  })

  it.scoped("deliver: a message from another instance, with its target and the connections it reached; no span for an echo or a refused one", () => {
    const t = testTracer()
    const bus = Transport.createMemoryBus()
    return Effect.gen(function*() {
      const a = yield* Layer.build(SseKify.layerTest({ ...quiet, channel: "obs" }, bus))
      const b = yield* Layer.build(SseKify.layerTest({ ...quiet, channel: "obs" }, bus))
      const sseA = Context.get(a, SseKify.SseKify)
      const sseB = Context.get(b, SseKify.SseKify)
      const s = yield* serverWith
      const pending = connect(s.server.url + "/")
      const [, res] = yield* Effect.promise(() => s.next())
      const handle = yield* sseA.connect("alice", res, { rooms: ["news"] })
      const client = yield* Effect.promise(() => pending)

      yield* sseB.publishToRoom("news", { n: 1 }, { event: "tick" })
      yield* frames(client, 1)
      const deliver = t.one("ssekify.deliver")
      expect(t.parentOf(deliver)).toBeUndefined()
      expect(Object.fromEntries(deliver.attributes)).toEqual({
        "ssekify.instance_id": sseA.instanceId,
        "ssekify.target_type": "room",
        "ssekify.room": "news",
        "ssekify.event": "tick",
        "ssekify.delivered": 1
      })
      expect(deliver.status._tag).toBe("Ended")
      expect(handle.connId.length).toBeGreaterThan(0)

      // the publisher's own echo made no span (above: one); neither does a refused
      // message (it is reported and logged, see below)
      bus.adapter().publish("obs", "not an envelope")
      expect((yield* sseA.stats).busRejected).toBe(1)
      expect(t.named("ssekify.deliver")).toHaveLength(1)
    }).pipe(Effect.provide(t.layer))
  })

  it.scoped("with Effect's default tracer no span is made (a branch per message); traceId 'span' takes the caller's span", () => {
    const seen: Array<string | undefined> = []
    const getter = (span: Tracer.AnySpan | undefined) => (seen.push(span?._tag === "Span" ? span.name : undefined), span?.traceId)
    return Effect.gen(function*() {
      const sse = yield* SseKify.SseKify
      const engine = (sse as unknown as { readonly [EngineKey]: Engine })[EngineKey]
      expect(engine.events.observe.tracing).toBe(false)
      const { client } = yield* open("alice")
      const app = yield* Effect.gen(function*() {
        yield* sse.sendToUser("alice", { n: 1 })
        yield* sse.publish({ n: 2 }, "alice")
        return yield* Effect.currentSpan
      }).pipe(Effect.withSpan("app.request"))
      // the getter saw the caller's span: no ssekify.publish span was made
      expect(seen).toEqual(["app.request", "app.request"])
      const got = (yield* frames(client, 2)).map((f) => JSON.parse(f.data).traceId)
      expect(got).toEqual([app.traceId, app.traceId])
    }).pipe(Effect.provide(SseKify.layerTest({ ...quiet, autoFields: { traceId: { mode: "ifMissing", getter } } })))
  })

  it.scoped("Effect.withTracerEnabled(false) turns the synchronous spans off", () => {
    const t = testTracer()
    return Effect.gen(function*() {
      const sse = yield* SseKify.SseKify
      const engine = (sse as unknown as { readonly [EngineKey]: Engine })[EngineKey]
      expect(engine.events.observe.tracing).toBe(false)
    }).pipe(Effect.provide(SseKify.layerTest(quiet)), Effect.withTracerEnabled(false), Effect.provide(t.layer))
  })
})

describe("the ssekify/platform endpoint", () => {
  it.scopedLive("admitting a connection is a register span, a child of the HTTP server's span of the request", () => {
    const t = testTracer()
    return Effect.gen(function*() {
      const app = HttpRouter.empty.pipe(HttpRouter.get("/sse", HttpSse.handler()))
      const context = yield* Layer.build(HttpServer.serve(app).pipe(
        Layer.provideMerge(SseKify.layerTest(quiet)),
        Layer.provideMerge(NodeHttpServer.layer(() => http.createServer(), { port: 0, host: "127.0.0.1" }))
      ))
      const address = Context.get(context, HttpServer.HttpServer).address
      if (address._tag !== "TcpAddress") throw new Error("expected a TCP address")
      const client = yield* Effect.acquireRelease(
        Effect.promise(() => connect(`http://127.0.0.1:${address.port}/sse?userId=alice`)),
        (c) => Effect.sync(() => c.close())
      )
      expect(client.status).toBe(200)
      const register = t.one("ssekify.register")
      expect(Object.fromEntries(register.attributes)).toEqual({ "ssekify.user_id": "alice", "ssekify.operation": "endpoint" })
      expect(t.parentOf(register)?._tag === "Span" && (t.parentOf(register) as Tracer.Span).name).toMatch(/^http\.server GET/)
    }).pipe(Effect.provide(t.layer))
  })
})

describe.skipIf(!redisAvailable())("the replay span of a lookup in Redis (asynchronous)", () => {
  let redis: RedisServer
  beforeAll(async () => {
    redis = await startRedis()
  })
  afterAll(stopAll)

  it.scopedLive("ends when the lookup has written the frames, a child of the registration, with their count", () => {
    const t = testTracer()
    const channel = `obs-replay:${process.pid}:${Date.now()}`
    return Effect.gen(function*() {
      const sse = yield* SseKify.SseKify
      yield* sse.ready
      const first = yield* open("alice")
      for (const id of ["1", "2", "3"]) yield* sse.publish({ id }, "alice", { id })
      yield* frames(first.client, 3)
      first.client.close()
      const again = yield* open("alice", { "Last-Event-ID": "1" }).pipe(Effect.withSpan("app.reconnect"))
      expect((yield* frames(again.client, 2)).map((f) => f.id)).toEqual(["2", "3"])
      const register = t.named("ssekify.register").at(-1)!
      expect(t.parentOf(register)).toBe(t.one("app.reconnect"))
      const replay = t.one("ssekify.replay")
      expect(t.parentOf(replay)).toBe(register)
      expect(replay.status._tag).toBe("Ended")
      expect(replay.attributes.get("ssekify.replayed")).toBe(2)
      expect(replay.attributes.get("ssekify.conn_id")).toBe(again.handle.connId)
    }).pipe(
      Effect.provide(SseKify.layer({ ...quiet, channel, replay: "redis" }).pipe(Layer.provide(RedisTransport.layer({ url: redis.url })))),
      Effect.provide(t.layer)
    )
  })
})

// ---------------------------------------------------------------------------
// traceId from the current span
// ---------------------------------------------------------------------------

describe("autoFields.traceId from the current span", () => {
  it.scoped("getter 'span': the caller's trace id on sends and publishes; a getter function receives the span", () => {
    const t = testTracer()
    const seen: Array<Tracer.AnySpan | undefined> = []
    return Effect.gen(function*() {
      const a = yield* Layer.build(SseKify.layerTest({ ...quiet, autoFields: { traceId: { mode: "ifMissing", getter: "span" } } }))
      const b = yield* Layer.build(SseKify.layerTest({
        ...quiet,
        autoFields: { traceId: { mode: "ifMissing", getter: (span) => (seen.push(span), span === undefined ? "none" : `t-${span.traceId}`) } }
      }))
      const sseA = Context.get(a, SseKify.SseKify)
      const sseB = Context.get(b, SseKify.SseKify)
      const s = yield* serverWith
      const clients: Array<RawClient> = []
      for (const sse of [sseA, sseB]) {
        const pending = connect(s.server.url + "/")
        const [, res] = yield* Effect.promise(() => s.next())
        yield* sse.connect("alice", res)
        clients.push(yield* Effect.promise(() => pending))
      }
      yield* Effect.gen(function*() {
        yield* sseA.sendToUser("alice", { n: 1 })
        yield* sseA.publish({ n: 2 }, "alice")
        yield* sseA.sendToUser("alice", { n: 3, traceId: "mine" })
        yield* sseB.sendToAll({ n: 4 })
      }).pipe(Effect.withSpan("app.request"))
      const app = t.one("app.request")
      const got = (yield* frames(clients[0]!, 3)).map((f) => JSON.parse(f.data))
      expect(got.map((d) => d.traceId)).toEqual([app.traceId, app.traceId, "mine"])
      const gotB = (yield* frames(clients[1]!, 1)).map((f) => JSON.parse(f.data))
      expect(gotB[0].traceId).toBe(`t-${app.traceId}`)
      // the getter's span is the send's own span, a child of the caller's
      expect(seen).toHaveLength(1)
      expect(seen[0]).toBe(t.named("ssekify.publish").at(-1))
    }).pipe(Effect.provide(t.layer))
  })

  const cleanups: Array<() => Promise<unknown> | void> = []
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c()
  })

  itVitest("the facade's synchronous sends have no span: with 'span' the field is left out, a getter gets undefined", async () => {
    const seen: Array<unknown> = []
    const sse = new SSEKify({ autoFields: { traceId: { mode: "ifMissing", getter: "span" } } })
    const sse2 = new SSEKify({ autoFields: { traceId: { mode: "ifMissing", getter: (span) => (seen.push(span), "g") } } })
    cleanups.push(() => sse.shutdown(quiet.shutdown), () => sse2.shutdown(quiet.shutdown))
    const server = await startServer((req, res) => {
      if (req.url === "/a") sse.registerConnection("alice", res)
      else sse2.registerConnection("alice", res)
    })
    cleanups.push(() => server.close())
    const [a, b] = await Promise.all([connect(server.url + "/a"), connect(server.url + "/b")])
    expect(sse.sendToUser("alice", { n: 1 })).toBe(1)
    expect(sse2.sendToUser("alice", { n: 1 })).toBe(1)
    await a.waitFor((c) => c.messages().length === 1)
    await b.waitFor((c) => c.messages().length === 1)
    expect(Object.keys(JSON.parse(a.messages()[0]!.data))).toEqual(["n", "timestamp"])
    expect(JSON.parse(b.messages()[0]!.data).traceId).toBe("g")
    expect(seen).toEqual([undefined])
  })

  itVitest("'span' is refused for requestId (not a function)", () => {
    expect(() => new SSEKify({ autoFields: { requestId: { mode: "ifMissing", getter: "span" as unknown as () => string } } }))
      .toThrow(/autoFields\.requestId\.getter/)
  })
})

// ---------------------------------------------------------------------------
// logs
// ---------------------------------------------------------------------------

describe("reported errors are logged through the application's Logger", () => {
  it.scoped("a refused send: Warning with code and userId, in the send's span", () => {
    const log = testLogger()
    const t = testTracer()
    return Effect.gen(function*() {
      const sse = yield* SseKify.SseKify
      yield* Effect.ignore(sse.sendToUser("alice", { n: 1 }, { event: "x".repeat(300) }))
      yield* Effect.ignore(sse.sendToUser("", "x"))
      yield* Effect.ignore(sse.publish(1n, "bob"))
      expect(log.entries).toEqual([
        {
          level: "WARN",
          message: "invalid_input: opts.event is longer than maxEventNameLength (256)",
          annotations: { code: "INVALID_INPUT", userId: "alice" }
        },
        {
          level: "WARN",
          message: "invalid_input: userId must be a non-empty string, got ''",
          annotations: { code: "INVALID_INPUT" }
        },
        {
          level: "WARN",
          message: expect.stringMatching(/^serialize_failed: /),
          annotations: { code: "SERIALIZE_FAILED", userId: "bob" }
        }
      ])
      // each log is also an event of its send's span (Effect's tracer logger)
      const events = t.named("ssekify.publish").map((span) =>
        (span as unknown as { readonly events: ReadonlyArray<readonly [string, bigint, Record<string, unknown>]> }).events
          .map(([name, , attributes]) => [name, attributes["effect.logLevel"]])
      )
      expect(events).toEqual([
        [["invalid_input: opts.event is longer than maxEventNameLength (256)", "WARN"]],
        [["invalid_input: userId must be a non-empty string, got ''", "WARN"]],
        [[expect.stringMatching(/^serialize_failed: /), "WARN"]]
      ])
    }).pipe(Effect.provide(SseKify.layerTest(quiet)), Effect.provide(log.layer), Effect.provide(t.layer))
  })

  it.scoped("a backpressure disconnect: Warning with userId and connId; an over-long Last-Event-ID: with the connection's", () => {
    const log = testLogger()
    return Effect.gen(function*() {
      const sse = yield* SseKify.SseKify
      const s = yield* serverWith
      // a connection that cannot take anything: its queue of 1 item overflows at once
      const pending = connect(s.server.url + "/", { highWaterMark: 16 })
      const [, res] = yield* Effect.promise(() => s.next())
      const handle = yield* sse.connect("slow", res, { maxQueueItems: 1, dropPolicy: "disconnect" })
      yield* Effect.promise(() => pending)
      const big = "y".repeat(256 * 1024)
      for (let i = 0; i < 64 && (yield* sse.stats).disconnectedByBackpressure === 0; i++) {
        yield* sse.sendToUser("slow", big)
      }
      const backpressure = log.entries.filter((e) => e.annotations.code === "BACKPRESSURE_DISCONNECT")
      expect(backpressure).toEqual([{
        level: "WARN",
        message: `backpressure: queue limit exceeded, disconnecting ${handle.connId}`,
        annotations: { code: "BACKPRESSURE_DISCONNECT", userId: "slow", connId: handle.connId }
      }])

      const { handle: h2 } = yield* open("carol", { "Last-Event-ID": "z".repeat(2000) })
      expect(log.entries.filter((e) => e.annotations.code === "LAST_EVENT_ID_TOO_LONG")).toEqual([{
        level: "WARN",
        message: "last_event_id_too_long: 2000 > 1024",
        annotations: { code: "LAST_EVENT_ID_TOO_LONG", userId: "carol", connId: h2.connId }
      }])
    }).pipe(Effect.provide(SseKify.layerTest(quiet)), Effect.provide(log.layer))
  })

  it.scoped("a message on the bus that is not ours: Error", () => {
    const log = testLogger()
    const bus = Transport.createMemoryBus()
    return Effect.gen(function*() {
      yield* SseKify.SseKify
      bus.adapter().publish("obs", "not an envelope")
      expect(log.entries.map((e) => [e.level, e.annotations.code])).toEqual([["ERROR", "BUS_MESSAGE_INVALID"]])
    }).pipe(Effect.provide(SseKify.layerTest({ ...quiet, channel: "obs" }, bus)), Effect.provide(log.layer))
  })

  it.scoped("a logger that throws does not stop the report: the 'error' event still arrives", () => {
    const throwing = Logger.replace(Logger.defaultLogger, Logger.make(() => {
      throw new Error("logger down")
    }))
    return Effect.gen(function*() {
      const sse = yield* SseKify.SseKify
      const errors = yield* sse.subscribe(["error"])
      yield* Effect.ignore(sse.sendToUser("", "x"))
      expect((yield* Queue.take(errors)).payload.code).toBe("INVALID_INPUT")
    }).pipe(Effect.provide(SseKify.layerTest(quiet)), Effect.provide(throwing))
  })

  it.scoped("the level is the logger's minimum level's business: Logger.withMinimumLogLevel(Error) keeps only errors", () => {
    const log = testLogger()
    const bus = Transport.createMemoryBus()
    return Effect.gen(function*() {
      const sse = yield* SseKify.SseKify
      yield* Effect.ignore(sse.sendToUser("", "x"))
      bus.adapter().publish("obs", "not an envelope")
      expect(log.entries.map((e) => e.level)).toEqual(["ERROR"])
    }).pipe(
      Effect.provide(SseKify.layerTest({ ...quiet, channel: "obs" }, bus)),
      Effect.provide(log.layer),
      Effect.provide(Logger.minimumLogLevel(LogLevel.Error))
    )
  })

  const cleanups: Array<() => Promise<unknown> | void> = []
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c()
  })

  itVitest("the facade logs nothing (its 'error' event and SsekifyWarning report)", async () => {
    const printed: Array<unknown> = []
    const original = console.log
    console.log = (...args: Array<unknown>) => void printed.push(args)
    try {
      const sse = new SSEKify()
      cleanups.push(() => sse.shutdown(quiet.shutdown))
      const codes: Array<string | undefined> = []
      sse.on("error", (e) => void codes.push(e.code))
      expect(sse.sendToUser("", "x")).toBe(0)
      expect(codes).toEqual(["INVALID_INPUT"])
    } finally {
      console.log = original
    }
    expect(printed).toEqual([])
  })
})
