/**
 * Routed mode (`routing: "user"`) end to end on the in-memory bus: real node:http
 * servers on 127.0.0.1, several instances on one `MemoryBus` (each with its own routed
 * transport, as each would have its own Redis connections), real clients.
 *
 * - each instance receives (`stats().received`) only the messages of the users and rooms
 *   it holds, and broadcasts;
 * - an instance subscribes to a user's channel at the first connection and unsubscribes
 *   after the last (rooms: first and last member), also when they come and go in one tick;
 * - the subscribe window: with the confirmation held back (`confirm`), a reconnecting
 *   client's replay runs after the confirmation, so a message another instance published
 *   meanwhile comes from the shared replay store, in order, once; 'connect' fires then;
 * - a failed confirmation is reported and the connection carries on; shutting down with
 *   confirmations pending is quiet;
 * - user ids with `{`, `}` and `:`; a message whose target is not its channel's; a signed
 *   routed bus;
 * - a routed and a single-channel instance on one channel do not mix silently.
 */
import { Context, Effect, Exit, Layer, Scope } from "effect"
import type { ServerResponse } from "node:http"
import { afterEach, describe, expect, it } from "vitest"
import { ReplayBuffer, SseKify, Transport } from "../src/index.js"
import type { SseKifyEvent } from "../src/index.js"
import { connect, type RawClient, startServer, until } from "./support/sse.js"

let cleanup: Array<() => Promise<void> | void> = []
afterEach(async () => {
  for (const f of cleanup.reverse()) await f()
  cleanup = []
})

const CHANNEL = "ssekify:bus"
const quiet = { keepAliveMs: 0, autoFields: { timestamp: false }, shutdown: { announce: false, graceMs: 0 } } as const

/** A confirmation gate: every routed subscribe waits until the test lets it go (or fails it). */
const gate = () => {
  const waiting: Array<{ channels: ReadonlyArray<string>; ok: () => void; fail: (e: Error) => void }> = []
  return {
    waiting,
    confirm: (channels: ReadonlyArray<string>) =>
      new Promise<void>((ok, fail) => {
        waiting.push({ channels, ok, fail })
      }),
    releaseAll: () => {
      for (const w of waiting.splice(0)) w.ok()
    },
    failAll: (message: string) => {
      for (const w of waiting.splice(0)) w.fail(new Error(message))
    }
  }
}

interface Instance {
  readonly sse: SseKify.SseKifyService
  readonly events: Array<SseKifyEvent>
  readonly open: (query: string, headers?: Record<string, string>) => Promise<RawClient>
  readonly close: () => Promise<void>
  received(): Promise<number>
}

const instance = async (
  bus: Transport.MemoryBus,
  options: {
    readonly routing?: Transport.Routing
    readonly confirm?: (channels: ReadonlyArray<string>) => Promise<void>
    readonly replay?: Context.Context<ReplayBuffer.ReplayBuffer>
    readonly sse?: SseKify.LayerOptions
  } = {}
): Promise<Instance> => {
  const scope = Effect.runSync(Scope.make())
  let closed = false
  const close = async () => {
    if (closed) return
    closed = true
    await Effect.runPromise(Scope.close(scope, Exit.void))
  }
  const transport = Transport.layerMemory(bus, { routing: options.routing ?? "user", confirm: options.confirm })
  const stores = options.replay === undefined ? Layer.empty : Layer.succeedContext(options.replay)
  const opts = { ...quiet, ...options.sse }
  const sse = await Effect.runPromise(
    SseKify.make(opts).pipe(
      Effect.provide(SseKify.layerStores(opts).pipe(Layer.provideMerge(Layer.merge(transport, stores)))),
      Scope.extend(scope)
    )
  )
  const events: Array<SseKifyEvent> = []
  sse.unsafeSubscribe((e) => events.push(e), (type) => type !== "message-sent")
  const server = await startServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://x")
    sse.unsafeRegisterConnection(url.searchParams.get("u") ?? "guest", res, { rooms: url.searchParams.getAll("room") })
  })
  cleanup.push(() => server.close(), close)
  const open = async (query: string, headers?: Record<string, string>) => {
    const c = await connect(`${server.url}/${query}`, headers === undefined ? undefined : { headers })
    cleanup.push(() => c.close())
    await c.waitFor((x) => x.text().includes("retry:"))
    return c
  }
  return { sse, events, open, close, received: () => Effect.runPromise(Effect.map(sse.stats, (s) => s.received)) }
}

/** One replay store shared by the instances given it (built once, released after the test). */
const sharedReplay = () => {
  const scope = Effect.runSync(Scope.make())
  cleanup.unshift(() => Effect.runPromise(Scope.close(scope, Exit.void)))
  return Effect.runSync(Layer.buildWithScope(ReplayBuffer.layerMemory({ size: 20, shared: true }), scope))
}

const userCh = (userId: string) => Transport.userChannel(CHANNEL, userId)
const roomCh = (room: string) => Transport.roomChannel(CHANNEL, room)
const ids = (c: RawClient) => c.messages().map((m) => m.id)
const datas = (c: RawClient) => c.messages().map((m) => m.data)
const errorsOf = (i: Instance) =>
  i.events.flatMap((e) => (e.type === "error" ? [e.payload as { code?: string; message: string }] : []))
const connects = (i: Instance) => i.events.filter((e) => e.type === "connect")

describe("routed mode on the memory bus", () => {
  it("each instance receives only the messages of the users and rooms it holds (and broadcasts)", async () => {
    const bus = Transport.createMemoryBus()
    const a = await instance(bus)
    const b = await instance(bus)
    const c = await instance(bus)
    const p = await instance(bus) // the publisher: holds nobody
    const alice = await a.open("?u=alice")
    const bob = await b.open("?u=bob")
    const carol = await c.open("?u=carol&room=r")
    for (let i = 0; i < 3; i++) await Effect.runPromise(p.sse.publish({ to: "alice", i }, "alice"))
    for (let i = 0; i < 2; i++) await Effect.runPromise(p.sse.publish({ to: "bob", i }, "bob"))
    await Effect.runPromise(p.sse.publishToRoom("r", "room"))
    await Effect.runPromise(p.sse.publish("everyone"))
    await Effect.runPromise(p.sse.publish("nobody is here", "dave"))
    await alice.waitFor((x) => x.messages().length === 4)
    await bob.waitFor((x) => x.messages().length === 3)
    await carol.waitFor((x) => x.messages().length === 2)
    expect(datas(alice)).toEqual(['{"to":"alice","i":0}', '{"to":"alice","i":1}', '{"to":"alice","i":2}', '"everyone"'])
    expect(datas(bob)).toEqual(['{"to":"bob","i":0}', '{"to":"bob","i":1}', '"everyone"'])
    expect(datas(carol)).toEqual(['"room"', '"everyone"'])
    expect(await a.received()).toBe(4)
    expect(await b.received()).toBe(3)
    expect(await c.received()).toBe(2)
    expect(await p.received()).toBe(0)
    expect(Effect.runSync(p.sse.stats).published).toBe(8)
    for (const i of [a, b, c, p]) expect(errorsOf(i)).toEqual([])
  })

  it("the same fleet in single-channel mode: every instance receives every message", async () => {
    const bus = Transport.createMemoryBus()
    const a = await instance(bus, { routing: "channel" })
    const b = await instance(bus, { routing: "channel" })
    const p = await instance(bus, { routing: "channel" })
    const alice = await a.open("?u=alice")
    await b.open("?u=bob")
    for (let i = 0; i < 3; i++) await Effect.runPromise(p.sse.publish(i, "alice"))
    await Effect.runPromise(p.sse.publish(0, "bob"))
    await alice.waitFor((x) => x.messages().length === 3)
    expect(await a.received()).toBe(4)
    expect(await b.received()).toBe(4)
    expect(bus.subscribers(userCh("alice"))).toBe(0)
  })

  it("subscribes at a user's first connection and unsubscribes after the last; rooms at their first and last member", async () => {
    const bus = Transport.createMemoryBus()
    const a = await instance(bus)
    expect(bus.subscribers(userCh("alice"))).toBe(0)
    const one = await a.open("?u=alice&room=r")
    expect(bus.subscribers(userCh("alice"))).toBe(1)
    expect(bus.subscribers(roomCh("r"))).toBe(1)
    const two = await a.open("?u=alice")
    expect(bus.subscribers(userCh("alice"))).toBe(1)
    one.close()
    await until(() => Effect.runSync(a.sse.stats).connections === 1, 5_000, "one connection left")
    expect(bus.subscribers(userCh("alice"))).toBe(1)
    expect(bus.subscribers(roomCh("r"))).toBe(0)
    two.close()
    await until(() => Effect.runSync(a.sse.stats).connections === 0, 5_000, "no connection left")
    expect(bus.subscribers(userCh("alice"))).toBe(0)
    // close(userId) and the handle's join / leave follow too
    const three = await a.open("?u=alice")
    expect(bus.subscribers(userCh("alice"))).toBe(1)
    await Effect.runPromise(a.sse.close("alice"))
    await three.ended()
    expect(bus.subscribers(userCh("alice"))).toBe(0)
  })

  it("a user whose connection comes and goes within one tick leaves no subscription, also with its confirmation pending", async () => {
    const bus = Transport.createMemoryBus()
    const g = gate()
    const a = await instance(bus, { confirm: g.confirm })
    const server = await startServer(() => {})
    cleanup.push(() => server.close())
    // a response of a real request, registered and closed synchronously
    const res = await new Promise<ServerResponse>((resolve) => {
      server.server.removeAllListeners("request")
      server.server.on("request", (_req, r: ServerResponse) => resolve(r))
      void connect(server.url + "/").then((c) => cleanup.push(() => c.close()), () => {})
    })
    const handle = a.sse.unsafeRegisterConnection("alice", res)
    if (handle._tag !== "Right") throw new Error("not registered")
    handle.right.join("r")
    handle.right.close()
    expect(g.waiting.map((w) => w.channels)).toEqual([[userCh("alice")], [roomCh("r")]])
    g.releaseAll()
    await new Promise((r) => setTimeout(r, 20))
    expect(bus.subscribers(userCh("alice"))).toBe(0)
    expect(bus.subscribers(roomCh("r"))).toBe(0)
    // no 'connect' for a connection gone before its channel was confirmed; its 'disconnect' was emitted
    expect(connects(a)).toEqual([])
    expect(a.events.filter((e) => e.type === "disconnect")).toHaveLength(1)
    // and the user comes back: a new subscription, confirmed anew
    const again = await a.open("?u=alice")
    expect(g.waiting).toHaveLength(1)
    g.releaseAll()
    await until(() => bus.subscribers(userCh("alice")) === 1, 5_000, "subscribed again")
    await until(() => connects(a).length === 1, 5_000, "connect")
    const p = await instance(bus)
    await Effect.runPromise(p.sse.publish("back", "alice"))
    await again.waitFor((x) => x.messages().length === 1)
    expect(datas(again)).toEqual(['"back"'])
  })

  it("the subscribe window: a reconnect's replay runs after the confirmation, so what another instance published meanwhile arrives, in order, once", async () => {
    const bus = Transport.createMemoryBus()
    const replay = sharedReplay()
    const g = gate()
    const a = await instance(bus, { confirm: g.confirm, replay, sse: { instanceId: "a" } })
    const b = await instance(bus, { replay, sse: { instanceId: "b" } })
    // alice was connected to B and saw "1"; then went away
    const first = await b.open("?u=alice")
    await Effect.runPromise(b.sse.publish({ n: 1 }, "alice", { id: "1" }))
    await first.waitFor((x) => x.messages().length === 1)
    first.close()
    await until(() => Effect.runSync(b.sse.stats).connections === 0, 5_000, "alice gone from B")
    // she reconnects to A, whose subscription to her channel is not confirmed yet
    const atA = await a.open("?u=alice", { "last-event-id": "1" })
    expect(g.waiting.map((w) => w.channels)).toEqual([[userCh("alice")]])
    // in the window: B publishes (A does not get it off the bus: not subscribed yet) ...
    await Effect.runPromise(b.sse.publish({ n: 2 }, "alice", { id: "2" }))
    // ... and A itself sends (held for her until the replay, recorded in the shared store)
    await Effect.runPromise(a.sse.publish({ n: 3 }, "alice", { id: "3" }))
    expect(Effect.runSync(a.sse.sendToUser("alice", { n: 4 }, { id: "4" }))).toBe(1)
    expect(await a.received()).toBe(0)
    expect(connects(a)).toEqual([])
    await new Promise((r) => setTimeout(r, 30))
    expect(atA.messages()).toEqual([])
    g.releaseAll()
    await until(() => connects(a).length === 1, 5_000, "'connect' after the confirmation")
    // now live off the bus
    await Effect.runPromise(b.sse.publish({ n: 5 }, "alice", { id: "5" }))
    await atA.waitFor((x) => x.messages().length === 4, 5_000, "four frames")
    await new Promise((r) => setTimeout(r, 30))
    expect(ids(atA)).toEqual(["2", "3", "4", "5"])
    expect(await a.received()).toBe(1)
    // 2 off the store, 3 and 4 too (recorded there when sent): their held copies were not written again
    expect(Effect.runSync(a.sse.stats).replayed).toBe(3)
    expect(errorsOf(a)).toEqual([])
  })

  it("a fresh connection (no Last-Event-ID) gets local sends at once; 'connect' waits for the confirmation", async () => {
    const bus = Transport.createMemoryBus()
    const g = gate()
    const a = await instance(bus, { confirm: g.confirm })
    const alice = await a.open("?u=alice")
    expect(Effect.runSync(a.sse.sendToUser("alice", "local"))).toBe(1)
    await alice.waitFor((x) => x.messages().length === 1)
    expect(connects(a)).toEqual([])
    g.releaseAll()
    await until(() => connects(a).length === 1, 5_000, "connect")
  })

  it("with a per-instance replay store, a frame sent in the window reaches the reconnect once (replayed, its held copy dropped)", async () => {
    const bus = Transport.createMemoryBus()
    const g = gate()
    const a = await instance(bus, { confirm: g.confirm })
    const first = await a.open("?u=alice")
    g.releaseAll()
    await until(() => connects(a).length === 1, 5_000, "connect")
    expect(Effect.runSync(a.sse.sendToUser("alice", 1, { id: "1" }))).toBe(1)
    await first.waitFor((x) => x.messages().length === 1)
    first.close()
    await until(() => Effect.runSync(a.sse.stats).connections === 0, 5_000, "gone")
    const again = await a.open("?u=alice", { "last-event-id": "1" })
    expect(Effect.runSync(a.sse.sendToUser("alice", 2, { id: "2" }))).toBe(1)
    g.releaseAll()
    await again.waitFor((x) => x.messages().length === 1)
    expect(Effect.runSync(a.sse.sendToUser("alice", 3, { id: "3" }))).toBe(1)
    await again.waitFor((x) => x.messages().length === 2)
    expect(ids(again)).toEqual(["2", "3"])
  })

  it("a reconnect whose replay cannot run (replay off, Last-Event-ID too long) gets its held frames at the confirmation", async () => {
    const bus = Transport.createMemoryBus()
    const g = gate()
    const a = await instance(bus, { confirm: g.confirm, sse: { recentBufferSize: 0, maxLastEventIdLength: 4 } })
    const off = await a.open("?u=alice", { "last-event-id": "1" })
    const long = await a.open("?u=bob", { "last-event-id": "12345" })
    expect(Effect.runSync(a.sse.sendToUser("alice", "a"))).toBe(1)
    expect(Effect.runSync(a.sse.sendToUser("bob", "b"))).toBe(1)
    await new Promise((r) => setTimeout(r, 20))
    expect([off.messages(), long.messages()]).toEqual([[], []])
    g.releaseAll()
    await off.waitFor((x) => x.messages().length === 1)
    await long.waitFor((x) => x.messages().length === 1)
    expect([datas(off), datas(long)]).toEqual([['"a"'], ['"b"']])
    await until(() => connects(a).length === 2, 5_000, "connect")
    expect(errorsOf(a).map((e) => e.code)).toEqual(["LAST_EVENT_ID_TOO_LONG"])
  })

  it("a failed confirmation is reported (TransportError) and the connection carries on: replay, then 'connect'", async () => {
    const bus = Transport.createMemoryBus()
    const replay = sharedReplay()
    const g = gate()
    const a = await instance(bus, { confirm: g.confirm, replay })
    const b = await instance(bus, { replay })
    await Effect.runPromise(b.sse.publish("kept", "alice", { id: "1" }))
    await Effect.runPromise(b.sse.publish("missed", "alice", { id: "2" }))
    const alice = await a.open("?u=alice", { "last-event-id": "1" })
    g.failAll("subscribe timed out")
    await until(() => connects(a).length === 1, 5_000, "connect")
    await alice.waitFor((x) => x.messages().length === 1)
    expect(ids(alice)).toEqual(["2"])
    expect(errorsOf(a).map((e) => e.code)).toEqual(["TRANSPORT_ERROR"])
    expect(errorsOf(a)[0]!.message).toContain("subscribe timed out")
    // local sends still reach her
    expect(Effect.runSync(a.sse.sendToUser("alice", "local"))).toBe(1)
    await alice.waitFor((x) => x.messages().length === 2)
  })

  it("shutting down while confirmations are pending closes the connections quietly; a late confirmation changes nothing", async () => {
    const bus = Transport.createMemoryBus()
    const g = gate()
    const a = await instance(bus, { confirm: g.confirm })
    const alice = await a.open("?u=alice", { "last-event-id": "x" })
    const bob = await a.open("?u=bob&room=r")
    expect(g.waiting).toHaveLength(3)
    await a.close()
    await alice.ended()
    await bob.ended()
    g.releaseAll()
    await new Promise((r) => setTimeout(r, 20))
    for (const ch of [userCh("alice"), userCh("bob"), roomCh("r")]) expect(bus.subscribers(ch)).toBe(0)
    expect(connects(a)).toEqual([])
    expect(errorsOf(a)).toEqual([])
  })

  it("user ids with '{', '}' and ':' get their own channel and only their messages", async () => {
    const bus = Transport.createMemoryBus()
    const a = await instance(bus)
    const p = await instance(bus)
    const odd = ["a}b", "a", "{a}", "a:u:{b}", "}"]
    const clients = []
    for (const u of odd) clients.push(await a.open(`?u=${encodeURIComponent(u)}`))
    for (const u of odd) await Effect.runPromise(p.sse.publish(u, u))
    for (let i = 0; i < odd.length; i++) {
      await clients[i]!.waitFor((x) => x.messages().length === 1)
    }
    await new Promise((r) => setTimeout(r, 20))
    expect(clients.map((c) => datas(c))).toEqual(odd.map((u) => [JSON.stringify(u)]))
    expect(errorsOf(a)).toEqual([])
    expect(await a.received()).toBe(odd.length)
  })

  it("a routed message whose target is not its channel's is refused; so is a frame carrying a second event", async () => {
    const bus = Transport.createMemoryBus()
    const a = await instance(bus)
    const alice = await a.open("?u=alice")
    await a.open("?u=bob")
    // on bob's channel, for alice
    bus.publish(userCh("bob"), `R1U["user","alice",null,null,${Date.now()},0,"x"]\ndata: "hi"\n\n`)
    // a second event smuggled in the frame
    bus.publish(userCh("alice"), `R1U["user","alice",null,null,${Date.now()},0,"x"]\ndata: 1\n\nid: 9\ndata: 2\n\n`)
    // a well-formed one
    bus.publish(userCh("alice"), `R1U["user","alice","7","e",${Date.now()},0,"x"]\nid: 7\nevent: e\ndata: ok\n\n`)
    await alice.waitFor((x) => x.messages().length === 1)
    expect(alice.messages()).toMatchObject([{ id: "7", event: "e", data: "ok" }])
    expect(errorsOf(a).map((e) => e.code)).toEqual(["BUS_MESSAGE_INVALID", "BUS_MESSAGE_INVALID"])
    expect(errorsOf(a)[0]!.message).toContain("does not belong to the channel")
    expect(Effect.runSync(a.sse.stats)).toMatchObject({ received: 1, busRejected: 2 })
  })

  it("a signed routed bus: delivered, and a message signed for one user's channel is refused on another's", async () => {
    const bus = Transport.createMemoryBus()
    const busSecret = "a-secret-of-sixteen-chars"
    const a = await instance(bus, { sse: { busSecret } })
    const p = await instance(bus, { sse: { busSecret } })
    const alice = await a.open("?u=alice")
    await a.open("?u=bob")
    const seen: Array<string> = []
    const un = bus.subscribe(userCh("alice"), (m) => seen.push(m))
    await Effect.runPromise(p.sse.publish({ hi: 1 }, "alice", { id: "1" }))
    un()
    await alice.waitFor((x) => x.messages().length === 1)
    expect(seen[0]!.startsWith("R1S")).toBe(true)
    // replayed on bob's channel, and replayed on alice's
    bus.publish(userCh("bob"), seen[0]!)
    bus.publish(userCh("alice"), seen[0]!)
    expect(errorsOf(a).map((e) => e.message)).toEqual([
      expect.stringContaining("bad signature"),
      expect.stringContaining("replay")
    ])
    expect(Effect.runSync(a.sse.stats)).toMatchObject({ received: 1, busRejected: 2 })
  })

  it("the 'publish' event in routed mode has 0.1.6's envelope shape, data read back from the frame", async () => {
    const bus = Transport.createMemoryBus()
    const a = await instance(bus)
    const p = await instance(bus, { sse: { instanceId: "p" } })
    await a.open("?u=alice")
    await Effect.runPromise(p.sse.publish({ hello: [1, "two\nlines"] }, "alice", { event: "notify", id: "1" }))
    await Effect.runPromise(p.sse.publish("text"))
    const published = a.events.filter((e) => e.type === "publish").map((e) => e.payload)
    expect(published).toEqual([
      { type: "user", target: "alice", data: { hello: [1, "two\nlines"] }, event: "notify", id: "1", at: expect.any(Number), origin: "p" },
      { type: "all", data: "text", at: expect.any(Number), origin: "p" }
    ])
  })

  it("the receiver applies the field and payload limits to routed messages", async () => {
    const bus = Transport.createMemoryBus()
    const a = await instance(bus, { sse: { maxEventNameLength: 5, maxPayloadBytes: 10 } })
    const p = await instance(bus)
    const alice = await a.open("?u=alice")
    await Effect.runPromise(p.sse.publish("x", "alice", { event: "sixsix" }))
    await Effect.runPromise(p.sse.publish("12345678", "alice")) // 10 bytes with the quotes: at the limit
    await Effect.runPromise(p.sse.publish("123456789", "alice")) // 11: one past
    await Effect.runPromise(p.sse.publish("ok", "alice", { event: "fives" }))
    await alice.waitFor((x) => x.messages().length === 2)
    await new Promise((r) => setTimeout(r, 20))
    expect(alice.messages()).toMatchObject([{ data: '"12345678"' }, { event: "fives", data: '"ok"' }])
    expect(errorsOf(a).map((e) => e.message)).toEqual([
      expect.stringContaining("maxEventNameLength"),
      expect.stringContaining("maxPayloadBytes (11 > 10)")
    ])
    expect(Effect.runSync(a.sse.stats)).toMatchObject({ received: 2, busRejected: 2 })
  })
})

describe("a routed and a single-channel instance on one channel", () => {
  it("do not mix silently: each refuses and reports the other's messages on the shared channel; per-user messages do not cross", async () => {
    const bus = Transport.createMemoryBus()
    const routed = await instance(bus, { routing: "user" })
    const single = await instance(bus, { routing: "channel" })
    const atRouted = await routed.open("?u=alice")
    const atSingle = await single.open("?u=bob")
    await Effect.runPromise(single.sse.publish("from single", "alice"))
    await Effect.runPromise(routed.sse.publish("from routed", "bob"))
    await Effect.runPromise(single.sse.publish("broadcast from single"))
    await Effect.runPromise(routed.sse.publish("broadcast from routed"))
    await atRouted.waitFor((x) => x.messages().length === 1)
    await atSingle.waitFor((x) => x.messages().length === 1)
    await new Promise((r) => setTimeout(r, 20))
    // each got its own broadcast only (delivered locally by its publisher)
    expect(datas(atRouted)).toEqual(['"broadcast from routed"'])
    expect(datas(atSingle)).toEqual(['"broadcast from single"'])
    // the routed instance refuses both 0.1.6 envelopes on the shared channel, saying why
    expect(errorsOf(routed).map((e) => e.code)).toEqual(["BUS_MESSAGE_INVALID", "BUS_MESSAGE_INVALID"])
    expect(errorsOf(routed)[0]!.message).toContain("same routing")
    // the single-channel instance refuses the routed broadcast; the routed per-user
    // message went on bob's channel, which it never listens to
    expect(errorsOf(single).map((e) => e.code)).toEqual(["BUS_MESSAGE_INVALID"])
    expect(errorsOf(single)[0]!.message).toContain("same routing")
    expect(Effect.runSync(routed.sse.stats)).toMatchObject({ received: 0, busRejected: 2 })
    expect(Effect.runSync(single.sse.stats)).toMatchObject({ received: 0, busRejected: 1 })
  })
})
