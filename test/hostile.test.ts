/**
 * Hostile input, one test per defect of the hardening issue (items 3, 5–9) and of the
 * Effect-native issue (user callbacks that throw), over real sockets: real `node:http`
 * servers on 127.0.0.1, raw `http.get` clients, a real `redis-server` for the adapter
 * error. Each test failed on the commit before the fix.
 */
import type { IncomingMessage, ServerResponse } from "node:http"
import { EventEmitter } from "node:events"
import { Redis } from "ioredis"
import { Cause, Effect, Exit, Layer, ManagedRuntime, Stream } from "effect"
import { afterAll, afterEach, describe, expect, it } from "vitest"
import {
  createMemoryBus,
  SSEKify,
  type SSEKifyOptions,
  SseKify,
  Transport,
  TransportError
} from "../src/index.js"
import { connect, type RawClient, request, startServer, type TestServer, until } from "./support/sse.js"
import { redisAvailable, startRedis, stopAll } from "./support/redisServer.js"

type Err = Error & { readonly code?: string; readonly field?: string; readonly callback?: string; readonly _tag?: string }

interface Fixture {
  readonly sse: SSEKify
  readonly server: TestServer
  readonly errors: Array<Err>
  open(userId: string, headers?: Record<string, string>, query?: string): Promise<RawClient>
}

const cleanups: Array<() => Promise<void>> = []

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
})
afterAll(() => stopAll())

/**
 * A facade on a real server. `register` (optional) handles each request; by default
 * `registerConnection(?userId, res)`.
 */
const setup = async (
  options?: SSEKifyOptions,
  register?: (sse: SSEKify, userId: string, res: ServerResponse, req: IncomingMessage) => void,
  listen = true
): Promise<Fixture> => {
  const sse = new SSEKify({ keepAliveMs: 60_000, ...options })
  const errors: Array<Err> = []
  if (listen) sse.on("error", (e) => errors.push(e as Err))
  const server = await startServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://127.0.0.1")
    const userId = url.searchParams.get("userId") ?? "guest"
    if (register) register(sse, userId, res, req)
    else sse.registerConnection(userId, res)
  })
  const clients: Array<RawClient> = []
  cleanups.push(async () => {
    for (const c of clients) c.close()
    await sse.shutdown({ announce: false, graceMs: 0 })
    await server.close()
  })
  return {
    sse,
    server,
    errors,
    open: async (userId, headers, query = "") => {
      const client = await connect(`${server.url}/sse?userId=${encodeURIComponent(userId)}${query}`, headers ? { headers } : undefined)
      clients.push(client)
      await client.waitFor((c) => c.text().includes("retry:") || c.status !== 200 || c.isEnded(), 5_000, "retry line")
      return client
    }
  }
}

/** The Effect service on a real server (requests registered by the test). */
const effectSetup = async (options?: SseKify.LayerOptions) => {
  const runtime = ManagedRuntime.make(
    SseKify.layer({ shutdown: { announce: false, graceMs: 0 }, keepAliveMs: 0, ...options }).pipe(Layer.provide(Transport.layerNone))
  )
  const sse = await runtime.runPromise(SseKify.SseKify)
  const pending: Array<ServerResponse> = []
  const server = await startServer((_req, res) => void pending.push(res))
  const clients: Array<RawClient> = []
  cleanups.push(async () => {
    for (const c of clients) c.close()
    await runtime.dispose()
    await server.close()
  })
  return {
    sse,
    run: <A, E>(effect: Effect.Effect<A, E>) => runtime.runPromiseExit(effect),
    open: async (userId: string) => {
      const opening = connect(server.url + "/")
      await until(() => pending.length > 0, 5_000, "request")
      const res = pending.shift()!
      await runtime.runPromise(sse.registerConnection(userId, res))
      const client = await opening
      clients.push(client)
      await client.waitFor((c) => c.text().includes("retry:"))
      return client
    }
  }
}

/** The typed failure of an exit (not a defect). */
const failureOf = <A, E>(exit: Exit.Exit<A, E>): E | undefined =>
  Exit.isFailure(exit) && Cause.isFailType(exit.cause) ? exit.cause.error : undefined

/** Sends a marker and waits until it is the client's next message: nothing else came before it. */
const nothingBefore = async (sse: SSEKify, client: RawClient, userId: string, before: number): Promise<void> => {
  expect(sse.sendToUser(userId, "marker")).toBe(1)
  await client.waitFor((c) => c.messages().length > before, 5_000, "marker")
  expect(client.messages().slice(before).map((m) => m.data)).toEqual(['"marker"'])
}

// ---------------------------------------------------------------------------
// item 3: only an omitted user id means "everyone"
// ---------------------------------------------------------------------------

describe("falsy ids (item 3)", () => {
  it("publish(data, '' | null | 42) rejects with INVALID_INPUT and reaches nobody, here or on another instance", async () => {
    const bus = createMemoryBus()
    const a = await setup({ redis: bus.adapter() })
    const b = await setup({ redis: bus.adapter() })
    const alice = await a.open("alice")
    const bob = await b.open("bob")
    for (const bad of ["", null, 42, {}]) {
      await expect(a.sse.publish({ balance: 100 }, bad as never)).rejects.toMatchObject({ code: "INVALID_INPUT", field: "userId" })
    }
    await expect(a.sse.publishToRoom("", { balance: 100 })).rejects.toMatchObject({ code: "INVALID_INPUT", field: "room" })
    expect(a.errors.map((e) => e.code)).toEqual(Array(5).fill("INVALID_INPUT"))
    expect(a.sse.stats().published).toBe(0)
    await nothingBefore(a.sse, alice, "alice", 0)
    await nothingBefore(b.sse, bob, "bob", 0)
    // omitted (undefined) still means everyone
    await a.sse.publish({ all: 1 })
    await bob.waitFor((c) => c.messages().length === 2)
  })

  it("close('' | null | 7) and clearRecent('' | null) report INVALID_INPUT and close / clear nothing", async () => {
    const f = await setup()
    const alice = await f.open("alice")
    const bob = await f.open("bob")
    expect(f.sse.sendToUser("alice", "one", { id: "1" })).toBe(1)
    for (const bad of ["", null, 7]) f.sse.close(bad as never)
    for (const bad of ["", null]) f.sse.clearRecent(bad as never)
    await until(() => f.errors.length === 5, 2_000, "five errors")
    expect(f.errors.map((e) => [e.code, e.field])).toEqual(Array(5).fill(["INVALID_INPUT", "userId"]))
    expect(f.sse.stats().connections).toBe(2)
    expect(alice.isEnded() || bob.isEnded()).toBe(false)
    expect(f.sse.sendToUser("alice", "two", { id: "2" })).toBe(1)
    await alice.waitFor((c) => c.messages().length === 2)
    alice.close()
    await until(() => !f.sse.isUserOnline("alice"))
    // the replay buffer was not cleared
    const back = await f.open("alice", { "last-event-id": "1" })
    await back.waitFor((c) => c.messages().length === 1)
    expect(back.messages()[0]!.data).toBe('"two"')
  })

  it("Effect API: publish / close / clearRecent fail with InvalidInput on '' and null", async () => {
    const e = await effectSetup()
    const alice = await e.open("alice")
    for (const bad of ["", null]) {
      expect(failureOf(await e.run(e.sse.publish({ x: 1 }, bad as never)))).toMatchObject({ _tag: "InvalidInput", field: "userId" })
      expect(failureOf(await e.run(e.sse.close(bad as never)))).toMatchObject({ _tag: "InvalidInput", field: "userId" })
      expect(failureOf(await e.run(e.sse.clearRecent(bad as never)))).toMatchObject({ _tag: "InvalidInput", field: "userId" })
    }
    expect(await e.run(e.sse.sendToUser("alice", "still here"))).toEqual(Exit.succeed(1))
    await alice.waitFor((c) => c.messages().length === 1)
    expect(alice.messages()[0]!.data).toBe('"still here"')
  })
})

// ---------------------------------------------------------------------------
// item 5: the headers option
// ---------------------------------------------------------------------------

describe("register option headers (item 5)", () => {
  it("undefined values are skipped; arrays of valid strings are kept; the SSE headers always go out", async () => {
    const f = await setup({}, (sse, userId, res) => {
      sse.registerConnection(userId, res, {
        headers: { "Access-Control-Allow-Origin": undefined, "X-Multi": ["a", "b"], "X-Num": 5 } as never
      })
    })
    const c = await f.open("alice")
    expect(c.status).toBe(200)
    expect(c.headers["content-type"]).toBe("text/event-stream; charset=utf-8")
    expect(c.headers["access-control-allow-origin"]).toBeUndefined()
    expect(c.headers["x-multi"]).toBe("a, b")
    expect(c.headers["x-num"]).toBe("5")
    expect(f.sse.sendToUser("alice", 1)).toBe(1)
    await c.waitFor((x) => x.messages().length === 1)
    expect(f.errors).toEqual([])
  })

  it("CR/LF/NUL values, bad names and a non-object are refused with 400 and never counted", async () => {
    const bad: Record<string, unknown> = {
      crlf: { "X-A": "ok\r\nSet-Cookie: evil=1" },
      nul: { "X-A": "a\0b" },
      name: { "Bad Name": "v" },
      colon: { "X-A:": "v" },
      array: { "X-A": ["ok", "no\nway"] },
      object: { "X-A": { nested: 1 } },
      string: "Access-Control-Allow-Origin: *"
    }
    const f = await setup({}, (sse, userId, res, req) => {
      const which = new URL(req.url ?? "/", "http://x").searchParams.get("bad")!
      sse.registerConnection(userId, res, { headers: bad[which] as never })
    })
    for (const which of Object.keys(bad)) {
      const r = await request(`${f.server.url}/sse?userId=alice&bad=${which}`)
      expect([which, r.status, r.headers["set-cookie"]]).toEqual([which, 400, undefined])
    }
    expect(f.errors.map((e) => [e.code, e.field])).toEqual(Object.keys(bad).map(() => ["INVALID_INPUT", "options.headers"]))
    expect(f.sse.stats().connections).toBe(0)
    expect(f.sse.isUserOnline("alice")).toBe(false)
    expect(f.sse.sendToUser("alice", 1)).toBe(0)
  })

  it("a connection whose SSE headers could not be written is not counted", async () => {
    const f = await setup({}, (sse, userId, res) => {
      // the first writeHead (the SSE headers) fails; the refusal's own goes through
      const writeHead = res.writeHead
      res.writeHead = function(this: ServerResponse, ...args: Parameters<ServerResponse["writeHead"]>) {
        res.writeHead = writeHead
        throw new Error("writeHead failed")
        return writeHead.apply(this, args)
      } as ServerResponse["writeHead"]
      sse.registerConnection(userId, res)
    })
    const r = await request(`${f.server.url}/sse?userId=alice`)
    expect(r.status).toBe(500)
    expect(r.headers["content-type"]).not.toMatch(/event-stream/)
    expect(f.sse.isUserOnline("alice")).toBe(false)
    expect(f.sse.sendToUser("alice", 1)).toBe(0)
    expect(f.errors.map((e) => e.code)).toEqual(["INVALID_INPUT"])
  })
})

// ---------------------------------------------------------------------------
// item 6: the same response registered twice
// ---------------------------------------------------------------------------

describe("the same response registered twice (item 6)", () => {
  it("the second call is INVALID_INPUT; frames are written once; no phantom stays after the client leaves", async () => {
    const connIds: Array<string> = []
    const f = await setup({}, (sse, userId, res) => {
      connIds.push(sse.registerConnection(userId, res).connId)
      connIds.push(sse.registerConnection(userId, res).connId)
    })
    const c = await f.open("alice")
    expect(connIds[0]).not.toBe("")
    expect(connIds[1]).toBe("")
    expect(f.errors.map((e) => [e.code, e.field])).toEqual([["INVALID_INPUT", "res"]])
    expect(f.sse.getUserConnectionCount("alice")).toBe(1)
    expect(f.sse.sendToUser("alice", "once")).toBe(1)
    await c.waitFor((x) => x.messages().length === 1)
    await nothingBefore(f.sse, c, "alice", 1)
    expect(c.text().match(/retry:/g)).toHaveLength(1)
    c.close()
    await until(() => f.sse.stats().connections === 0, 5_000, "the connection to go")
    expect(f.sse.isUserOnline("alice")).toBe(false)
    expect(f.sse.sendToUser("alice", "nobody")).toBe(0)
  })
})

// ---------------------------------------------------------------------------
// item 7: payloads whose getters or traps throw
// ---------------------------------------------------------------------------

const hostilePayloads = (): Array<[string, unknown]> => [
  ["getter", { ok: 1, get boom() { throw new Error("getter threw") } }],
  ["timestamp getter", { get timestamp() { throw new Error("timestamp getter threw") } }],
  ["ownKeys trap", new Proxy({ a: 1 }, { ownKeys: () => { throw new Error("ownKeys threw") } })],
  ["get trap", new Proxy({ a: 1 }, { get: () => { throw new Error("get threw") } })],
  ["getPrototypeOf trap", new Proxy({ a: 1 }, { getPrototypeOf: () => { throw new Error("getPrototypeOf threw") } })]
]

describe("payloads whose getters or proxy traps throw (item 7)", () => {
  it("facade: SERIALIZE_FAILED, count 0, nothing thrown, the connection keeps working (timestamp on and off)", async () => {
    for (const timestamp of ["iso", false] as const) {
      const f = await setup({ autoFields: { timestamp } })
      const c = await f.open("alice")
      for (const [name, data] of hostilePayloads()) {
        let result: unknown
        expect(() => result = f.sse.sendToUser("alice", data), name).not.toThrow()
        expect([name, result]).toEqual([name, 0])
        expect(() => f.sse.sendToAll(data)).not.toThrow()
        await expect(f.sse.publish(data, "alice")).resolves.toBeUndefined()
      }
      const n = hostilePayloads().length * 3
      expect(f.errors.map((e) => e.code)).toEqual(Array(n).fill("SERIALIZE_FAILED"))
      await nothingBefore(f.sse, c, "alice", 0)
    }
  })

  it("Effect API: fails with SerializeFailed, not a defect", async () => {
    const e = await effectSetup()
    await e.open("alice")
    for (const [name, data] of hostilePayloads()) {
      const sent = await e.run(e.sse.sendToUser("alice", data))
      expect([name, failureOf(sent)?._tag]).toEqual([name, "SerializeFailed"])
      const published = await e.run(e.sse.publish(data, "alice"))
      expect([name, failureOf(published)?._tag]).toEqual([name, "SerializeFailed"])
    }
  })

  it("send options whose getters throw are INVALID_INPUT; so are register options", async () => {
    const hostile = { get event(): string { throw new Error("event getter threw") } }
    const f = await setup({}, (sse, userId, res) => {
      sse.registerConnection(userId, res, { get rooms(): Array<string> { throw new Error("rooms getter threw") } })
    })
    const r = await request(`${f.server.url}/sse?userId=alice`)
    expect(r.status).toBe(400)
    expect(() => f.sse.sendToAll(1, hostile)).not.toThrow()
    await expect(f.sse.publish(1, undefined, hostile)).rejects.toMatchObject({ code: "INVALID_INPUT", field: "opts" })
    expect(f.errors.map((e) => [e.code, e.field])).toEqual([["INVALID_INPUT", "options"], ["INVALID_INPUT", "opts"], ["INVALID_INPUT", "opts"]])
  })
})

// ---------------------------------------------------------------------------
// item 8: the smaller edges
// ---------------------------------------------------------------------------

describe("smaller edges (item 8)", () => {
  it("a non-ASCII Last-Event-ID (UTF-8 bytes, as browsers send it) matches", async () => {
    const f = await setup()
    const first = await f.open("alice")
    for (const id of ["é-1", "日本-2", "😀-3"]) expect(f.sse.sendToUser("alice", id, { id })).toBe(1)
    await first.waitFor((c) => c.messages().length === 3)
    // the ids reach the wire as UTF-8
    expect(first.messages().map((m) => m.id)).toEqual(["é-1", "日本-2", "😀-3"])
    first.close()
    await until(() => !f.sse.isUserOnline("alice"))
    // a browser sends the id's UTF-8 bytes; Node's http client sends a latin1 string byte per char
    const header = Buffer.from("é-1", "utf8").toString("latin1")
    const back = await f.open("alice", { "last-event-id": header })
    await back.waitFor((c) => c.messages().length === 2, 5_000, "replay")
    expect(back.messages().map((m) => m.id)).toEqual(["日本-2", "😀-3"])
    expect(f.sse.stats().replayMisses).toBe(0)
  })

  it("an id with leading / trailing spaces round-trips through a reconnect", async () => {
    const f = await setup()
    const first = await f.open("alice")
    expect(f.sse.sendToUser("alice", "a", { id: "  a1 " })).toBe(1)
    expect(f.sse.sendToUser("alice", "b", { id: "\ta2\t" })).toBe(1)
    await first.waitFor((c) => c.messages().length === 2)
    const seen = first.messages()[0]!.id!
    first.close()
    await until(() => !f.sse.isUserOnline("alice"))
    // the client echoes the id it saw; HTTP trims header values
    const back = await f.open("alice", { "last-event-id": seen })
    await back.waitFor((c) => c.messages().length === 1, 5_000, "replay")
    expect(back.messages()[0]!.data).toBe('"b"')
  })

  it("a user named __proto__ is in getAllUsersConnectionStats()", async () => {
    const f = await setup()
    await f.open("__proto__")
    await f.open("constructor")
    const stats = f.sse.getAllUsersConnectionStats()
    expect(Object.keys(stats).sort()).toEqual(["__proto__", "constructor"])
    expect(Object.getOwnPropertyDescriptor(stats, "__proto__")?.value).toBe(1)
    expect(Object.getPrototypeOf(stats)).toBe(Object.prototype)
    expect(JSON.parse(JSON.stringify(stats))).toEqual(JSON.parse('{"__proto__":1,"constructor":1}'))
  })

  it("string options that reach the wire refuse CR / LF / NUL at construction", () => {
    for (const [field, value] of [
      ["keepAliveEvent", "ping\r\nevent: evil"],
      ["replayGapEvent", "gap\nx"],
      ["instanceId", "a\0b"],
      ["keepAliveEvent", "x".repeat(300)]
    ] as const) {
      let thrown: unknown
      try {
        new SSEKify({ [field]: value }).shutdown({ announce: false, graceMs: 0 })
      } catch (e) {
        thrown = e
      }
      expect([field, thrown]).toMatchObject([field, { code: "INVALID_INPUT", field }])
    }
  })

  it("after shutdown(), sendTo* report SHUTTING_DOWN and return 0, like publish rejects", async () => {
    const f = await setup()
    await f.open("alice")
    await f.sse.shutdown({ announce: false, graceMs: 0 })
    expect(f.sse.sendToUser("alice", 1)).toBe(0)
    expect(f.sse.sendToAll(1)).toBe(0)
    expect(f.sse.sendToRoom("r", 1)).toBe(0)
    await expect(f.sse.publish(1)).rejects.toMatchObject({ code: "SHUTTING_DOWN" })
    expect(f.errors.map((e) => e.code)).toEqual(Array(4).fill("SHUTTING_DOWN"))
    // Effect API: a typed failure
    const e = await effectSetup()
    await e.run(e.sse.shutdown({ announce: false, graceMs: 0 }))
    expect(failureOf(await e.run(e.sse.sendToUser("alice", 1)))).toMatchObject({ _tag: "ShuttingDown" })
  })

  it("with no 'error' listener, each error code is one process warning; nothing throws", async () => {
    const warnings: Array<Error & { code?: string }> = []
    const onWarning = (w: Error) => void warnings.push(w)
    process.on("warning", onWarning)
    cleanups.push(async () => void process.off("warning", onWarning))
    const f = await setup({ maxPayloadBytes: 10 }, undefined, false)
    expect(f.sse.sendToUser("", 1)).toBe(0)
    expect(f.sse.sendToRoom("", 1)).toBe(0)
    expect(f.sse.sendToAll("x".repeat(50))).toBe(0)
    expect(f.sse.sendToAll("y".repeat(50))).toBe(0)
    await until(() => warnings.filter((w) => w.name === "SsekifyWarning").length >= 2, 2_000, "warnings")
    await new Promise((r) => setImmediate(r))
    const ours = warnings.filter((w) => w.name === "SsekifyWarning")
    expect(ours.map((w) => w.code)).toEqual(["INVALID_INPUT", "PAYLOAD_TOO_LARGE"])
    expect(ours[0]!.message).toContain("invalid_input")
    expect(f.sse.stats().errorCount).toBe(4)
    // with a listener: no warning
    f.sse.on("error", () => {})
    expect(f.sse.sendToAll({ z: "z".repeat(50) })).toBe(0)
    await new Promise((r) => setImmediate(r))
    expect(warnings.filter((w) => w.name === "SsekifyWarning")).toHaveLength(2)
  })
})

// ---------------------------------------------------------------------------
// item 9: a RedisLike adapter's own errors
// ---------------------------------------------------------------------------

describe.skipIf(!redisAvailable())("a RedisLike adapter's errors (item 9)", () => {
  it("reach the facade's 'error' listeners as the adapter's own Error objects; the Effect API keeps TransportError", async () => {
    const redis = await startRedis()
    const pub = new Redis(redis.url, { maxRetriesPerRequest: 1 })
    const sub = new Redis(redis.url, { maxRetriesPerRequest: 1 })
    cleanups.push(async () => {
      pub.disconnect()
      sub.disconnect()
    })
    // the README's "your own adapter" pattern
    const emitted: Array<unknown> = []
    const relay = new EventEmitter()
    pub.on("error", (e: Error) => {
      emitted.push(e)
      relay.emit("error", e)
    })
    sub.on("error", () => {})
    const adapter = {
      publish: (channel: string, message: string) => pub.publish(channel, message),
      subscribe: (channel: string) => sub.subscribe(channel),
      on: (event: string, listener: (...args: Array<any>) => void) =>
        event === "message" ? sub.on("message", listener) : relay.on("error", listener)
    }
    const f = await setup({ redis: adapter as never })
    await f.sse.ready()
    // the Effect API over the same kind of adapter
    const typed: Array<unknown> = []
    const runtime = ManagedRuntime.make(
      SseKify.layer({ shutdown: { announce: false, graceMs: 0 } }).pipe(Layer.provide(Transport.layerRedisLike(adapter as never)))
    )
    cleanups.push(() => runtime.dispose())
    const service = await runtime.runPromise(SseKify.SseKify)
    runtime.runFork(Stream.runForEach(service.eventsOf(["error"]), (event) => Effect.sync(() => void typed.push(event.payload))))
    await runtime.runPromise(service.ready)
    // both SUBSCRIBEs confirmed (ioredis answers in order): only the loss of Redis is left to report
    await sub.subscribe("ssekify:bus")
    await redis.kill()
    await until(() => emitted.length > 0 && f.errors.length > 0, 10_000, "an adapter error")
    expect(f.errors[0]).toBe(emitted[0])
    // no adapter error reaches the facade wrapped
    expect(f.errors.filter((e) => e instanceof TransportError && e.operation === "adapter")).toEqual([])
    await until(() => typed.some((e) => e instanceof TransportError && e.operation === "adapter"), 5_000, "a typed error")
    const wrapped = typed.find((e) => e instanceof TransportError && e.operation === "adapter") as TransportError
    expect(emitted).toContain(wrapped.cause)
  })
})

// ---------------------------------------------------------------------------
// issue 13 item 5: user callbacks that throw
// ---------------------------------------------------------------------------

describe("user callbacks that throw (issue 13, item 5)", () => {
  const boom = (what: string) => () => {
    throw new Error(`${what} threw`)
  }

  it("keyExtractor, finalPredicate, frameIdPolicy and autoFields getters: CALLBACK_FAILED, nothing sent, nothing thrown", async () => {
    const cases: Array<[string, SSEKifyOptions]> = [
      ["seq.keyExtractor", { seq: { keyExtractor: boom("keyExtractor") } }],
      ["seq.finalPredicate", { seq: { finalPredicate: boom("finalPredicate") } }],
      ["seq.frameIdPolicy", { seq: { frameIdPolicy: boom("frameIdPolicy") } }],
      ["autoFields.traceId.getter", { autoFields: { traceId: { mode: "ifMissing", getter: boom("traceId getter") } } }],
      ["autoFields.requestId.getter", { autoFields: { requestId: { mode: "ifMissing", getter: boom("requestId getter") } } }]
    ]
    for (const [callback, options] of cases) {
      const f = await setup(options)
      const c = await f.open("alice")
      let result: unknown
      // no requestId (its getter is called), a stream key (keyExtractor and finalPredicate are)
      expect(() => result = f.sse.sendToUser("alice", { streamId: "s" }), callback).not.toThrow()
      expect([callback, result]).toEqual([callback, 0])
      await expect(f.sse.publish({ streamId: "s" }, "alice")).resolves.toBeUndefined()
      expect(f.errors.map((e) => [e.code, e.callback])).toEqual([["CALLBACK_FAILED", callback], ["CALLBACK_FAILED", callback]])
      expect(f.errors[0]!.cause).toBeInstanceOf(Error)
      expect(c.messages()).toEqual([])
    }
  })

  it("Effect API: a throwing keyExtractor is a typed CallbackFailed failure", async () => {
    const e = await effectSetup({ seq: { keyExtractor: boom("keyExtractor") } })
    await e.open("alice")
    expect(failureOf(await e.run(e.sse.sendToUser("alice", { a: 1 })))).toMatchObject({ _tag: "CallbackFailed", callback: "seq.keyExtractor" })
    expect(failureOf(await e.run(e.sse.publish({ a: 1 })))).toMatchObject({ _tag: "CallbackFailed" })
  })

  it("an event listener that throws is reported, not swallowed; the send still counts", async () => {
    const f = await setup()
    f.sse.on("message-sent", () => {
      throw new Error("listener threw")
    })
    const c = await f.open("alice")
    expect(f.sse.sendToUser("alice", 1)).toBe(1)
    await c.waitFor((x) => x.messages().length === 1)
    expect(f.errors.map((e) => [e.code, e.callback])).toEqual([["CALLBACK_FAILED", "'message-sent' listener"]])
  })

  it("SseKify.make: options whose reading throws are a defect, not an InvalidInput", async () => {
    const options = { get channel(): string { throw new TypeError("channel getter threw") } }
    const exit = await Effect.runPromiseExit(Effect.scoped(Effect.provide(SseKify.make(options as never), SseKify.layerStores().pipe(Layer.provideMerge(Transport.layerNone)))))
    expect(Exit.isFailure(exit) && Cause.isDie(exit.cause)).toBe(true)
    const bad = await Effect.runPromiseExit(Effect.scoped(Effect.provide(SseKify.make({ retryMs: -1 }), SseKify.layerStores().pipe(Layer.provideMerge(Transport.layerNone)))))
    expect(failureOf(bad)).toMatchObject({ _tag: "InvalidInput", field: "retryMs" })
  })
})
