/**
 * Routed mode (`routing: "user"`) end to end over a real single-node redis-server: the
 * engine's routes and subscribe window with the Redis transport's routed channels, through
 * the facade (`new SSEKify({ redis: url, routing: "user", replay: "redis" })`) and the
 * Effect path (`SseKify.layer` + `RedisTransport.layer({ url, routing: "user" })`), each
 * instance on a real node:http server on 127.0.0.1 with raw SSE clients.
 *
 * - a message another instance publishes to a user (or room) held here arrives once, in
 *   order; `received` counts only the users and rooms an instance holds; broadcasts reach all;
 * - the subscribe window: a reconnect (`Last-Event-ID`) while the other instance publishes
 *   without pause loses nothing and repeats nothing (20 rounds); a fresh connection gets a
 *   contiguous suffix;
 * - a publisher whose replay writes lag (its KV connection busy): the reconnect still gets
 *   everything (a user message goes on the bus once its record is in Redis), in call
 *   order; shutting down while such a publish waits settles it;
 * - the last connection leaving unsubscribes (`PUBSUB NUMSUB` drops to 0); a new one right
 *   after is subscribed again;
 * - a signed bus (`busSecret`) in routed mode; a frame replayed onto another user's channel
 *   is refused;
 * - redis-server killed and restarted on its port: the routed channel is subscribed again.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Scope from "effect/Scope"
import { Redis as IORedis } from "ioredis"
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest"
import { SseKify, type SSEKifyOptions, Transport } from "../../src/index.js"
import { RedisConnection, RedisTransport } from "../../src/redis.js"
import { dataFrames, Fixture, type Node, numsub, unique, until } from "../cluster/support.js"
import { redisAvailable, type RedisServer, startRedis, stopAll, waitUntil } from "../support/redisServer.js"
import { connect, type RawClient, startServer } from "../support/sse.js"

const fx = new Fixture()
afterEach(() => fx.dispose())

const quiet = { keepAliveMs: 0, autoFields: { timestamp: false }, shutdown: { announce: false, graceMs: 0 } } as const

/** The `i` of each `{ i }` frame a client got, in order. */
const numbers = (c: RawClient): Array<number> =>
  dataFrames(c).map((f) => JSON.parse(f.data) as { i?: number }).filter((d) => typeof d.i === "number").map((d) => d.i!)

const range = (from: number, to: number): Array<number> => Array.from({ length: to - from + 1 }, (_, k) => from + k)

/** Polls `PUBSUB NUMSUB` until `channel` has `n` subscribers (bounded). */
const awaitNumsub = (port: number, channel: string, n: number, timeoutMs = 5_000) =>
  waitUntil(`${n} subscriber(s) of ${channel}`, async () => (await numsub(port, channel)) === n, timeoutMs)

const routedPair = async (server: RedisServer, extra: SSEKifyOptions = {}) => {
  const channel = unique("e2e")
  const options: SSEKifyOptions = {
    redis: server.url,
    routing: "user",
    replay: "redis",
    channel,
    recentBufferSize: 100,
    autoFields: { timestamp: false },
    ...extra
  }
  const a = await fx.node("A", options)
  const b = await fx.node("B", options)
  await Promise.all([a.sse.ready(), b.sse.ready()])
  return { channel, a, b }
}

/**
 * An instance on the Effect path: `SseKify.layer` over `RedisTransport.layerServicesWith({
 * routing: "user" })` on its own `RedisConnection` (returned too), on a node:http server.
 */
const effectInstance = async (server: RedisServer, name: string, options: SseKify.LayerOptions, oneLayer = false) => {
  const scope = Effect.runSync(Scope.make())
  fx.defer(() => Effect.runPromise(Scope.close(scope, Exit.void)))
  const sseLayer = SseKify.layer({ ...quiet, instanceId: name, ...options })
  const connectionName = unique(name)
  if (oneLayer) {
    const context = await Effect.runPromise(Layer.buildWithScope(
      sseLayer.pipe(Layer.provide(RedisTransport.layer({ url: server.url, routing: "user", connectionName }))),
      scope
    ))
    const served = await serve(Context.get(context, SseKify.SseKify), undefined)
    return { ...served, close: () => Effect.runPromise(Scope.close(scope, Exit.void)) }
  }
  // what `RedisTransport.layer({ url, routing: "user" })` is, with the connection kept
  const layer = sseLayer.pipe(
    Layer.provideMerge(RedisTransport.layerServicesWith({ routing: "user" })),
    Layer.provideMerge(RedisConnection.layer({ url: server.url, connectionName }))
  )
  const context = await Effect.runPromise(Layer.buildWithScope(layer, scope))
  const served = await serve(Context.get(context, SseKify.SseKify), Context.get(context, RedisConnection.RedisConnection))
  return { ...served, close: () => Effect.runPromise(Scope.close(scope, Exit.void)) }
}

const serve = async <C>(sse: SseKify.SseKifyService, connection: C) => {
  await Effect.runPromise(sse.ready)
  const http = await startServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://x")
    sse.unsafeRegisterConnection(url.searchParams.get("u") ?? "guest", res)
  })
  fx.defer(() => http.close())
  const open = async (user: string, lastEventId?: string) => {
    const c = await connect(`${http.url}/?u=${user}`, lastEventId === undefined ? undefined : { headers: { "last-event-id": lastEventId } })
    fx.defer(() => c.close())
    await c.waitFor((x) => x.text().includes("retry:"))
    return c
  }
  return { sse, connection, open, stats: () => Effect.runSync(sse.stats) }
}

const errorsOf = (node: Node) => node.events.error.map((e: { message?: string }) => e.message)

describe.skipIf(!redisAvailable())("routed mode end to end (single redis-server)", () => {
  let server: RedisServer
  beforeAll(async () => {
    server = await startRedis()
  })
  afterAll(stopAll)

  it("facade: B's publish to a user or room held on A arrives once, in order; received counts only held users; broadcasts reach both; last disconnect unsubscribes", async () => {
    const { channel, a, b } = await routedPair(server)
    const alice = await a.open("alice", { rooms: ["r"] })
    const bob = await b.open("bob")
    await awaitNumsub(server.port, Transport.userChannel(channel, "alice"), 1)

    // sendToUser is local: B holds no alice, nothing crosses the bus
    expect(b.sse.sendToUser("alice", { i: -1 })).toBe(0)
    for (let i = 0; i < 20; i++) await b.sse.publish({ i }, "alice")
    await b.sse.publishToRoom("r", { room: 1 })
    await b.sse.publish({ i: 0 }, "nobody-here")
    // Pub/Sub orders one publisher's messages, not two publishers': each waits for the last
    await until(() => dataFrames(alice).length === 21, 5_000, "alice's 21 frames")
    await a.sse.publish({ everyone: 1 })
    await until(() => dataFrames(bob).length === 1, 5_000, "bob's first broadcast")
    await b.sse.publish({ everyone: 2 })
    await until(() => dataFrames(alice).length === 23, 5_000, "alice's 23 frames")
    await until(() => dataFrames(bob).length === 2, 5_000, "bob's 2 frames")
    expect(numbers(alice)).toEqual(range(0, 19))
    expect(dataFrames(alice).slice(20).map((f) => f.data)).toEqual(['{"room":1}', '{"everyone":1}', '{"everyone":2}'])
    expect(dataFrames(bob).map((f) => f.data)).toEqual(['{"everyone":1}', '{"everyone":2}'])

    // settle: a last broadcast from each side reached both, so nothing else is in flight
    await b.sse.publish({ fence: 1 })
    await until(() => dataFrames(alice).length === 24, 5_000, "the fence at alice")
    // A: 20 for alice + the room + B's two broadcasts (its own is not received); B: A's broadcast only
    expect(a.sse.stats().received).toBe(23)
    expect(b.sse.stats().received).toBe(1)
    expect(errorsOf(a)).toEqual([])
    expect(errorsOf(b)).toEqual([])

    // a routed instance holding nobody receives nothing of per-user traffic
    const c = await fx.node("C", { redis: server.url, routing: "user", replay: "redis", channel, autoFields: { timestamp: false } })
    await c.sse.ready()
    for (let i = 20; i < 25; i++) await b.sse.publish({ i }, "alice")
    await until(() => numbers(alice).length === 25, 5_000, "alice's 5 more")
    expect(c.sse.stats().received).toBe(0)

    // the last connection leaving unsubscribes the user's and the room's channels
    expect(await numsub(server.port, Transport.roomChannel(channel, "r"))).toBe(1)
    alice.close()
    await awaitNumsub(server.port, Transport.userChannel(channel, "alice"), 0)
    await awaitNumsub(server.port, Transport.roomChannel(channel, "r"), 0)
    bob.close()
    await awaitNumsub(server.port, Transport.userChannel(channel, "bob"), 0)
  })

  it("the subscribe window: a reconnect to A while B publishes without pause loses nothing, repeats nothing (20 rounds)", async () => {
    const { channel, a, b } = await routedPair(server)
    const rounds = 20
    /** Rounds in which B published at least once between the request and A's 'connect' (the window). */
    let inWindow = 0
    for (let round = 0; round < rounds; round++) {
      const user = `u${round}`
      const first = await a.open(user)
      await awaitNumsub(server.port, Transport.userChannel(channel, user), 1)
      for (let i = 0; i < 5; i++) await b.sse.publish({ i }, user, { id: String(i) })
      await until(() => numbers(first).length === 5, 5_000, `${user}: the first 5`)
      first.close()
      await until(() => a.sse.getUserConnectionCount(user) === 0, 5_000, `${user} gone from A`)
      // publish 5..59 without pause; reconnect (Last-Event-ID 4) after a few, round-dependent
      const total = 60
      let reconnected: Promise<RawClient> | undefined
      const at = 5 + (round % 10) * 3
      const connected = () => a.events.connect.some((e: { userId: string }) => e.userId === user)
      const connectsBefore = a.events.connect.length
      let during = 0
      for (let i = 5; i < total; i++) {
        if (i === at) reconnected = a.open(user, { lastEventId: "4", wait: false })
        await b.sse.publish({ i }, user, { id: String(i) })
        if (reconnected !== undefined && a.events.connect.length === connectsBefore) during++
      }
      if (during > 0 && connected()) inWindow++
      const again = await reconnected!
      await until(() => numbers(again).length >= total - 5, 10_000, `${user}: 5..${total - 1} after the reconnect`)
      // a last one after everything: nothing else follows it
      await b.sse.publish({ i: total }, user, { id: String(total) })
      await until(() => numbers(again).includes(total), 5_000, `${user}: the last`)
      expect(numbers(again), `round ${round} (reconnect at ${at})`).toEqual(range(5, total))
      expect(dataFrames(again).map((f) => f.id)).toEqual(range(5, total).map(String))
      again.close()
    }
    expect(errorsOf(a)).toEqual([])
    expect(errorsOf(b)).toEqual([])
    console.log(`[routing.e2e] B published during the reconnect's registration window in ${inWindow} of ${rounds} rounds`)
  })

  it("a user's last connection closing and a new one opening right after (UNSUBSCRIBE and SUBSCRIBE close together): still subscribed (30 rounds)", async () => {
    const { channel, a, b } = await routedPair(server)
    for (let round = 0; round < 30; round++) {
      const user = `c${round}`
      const one = await a.open(user)
      // close, then reopen after 0..9 ms: the reopen's subscribe meets the close's unsubscribe at every stage
      one.close()
      if (round % 10 > 0) await new Promise((r) => setTimeout(r, round % 10))
      const two = await a.open(user)
      await until(() => a.sse.getUserConnectionCount(user) === 1, 5_000, `${user}: one connection`)
      await awaitNumsub(server.port, Transport.userChannel(channel, user), 1)
      await b.sse.publish({ i: round }, user)
      await until(() => numbers(two).length === 1, 5_000, `${user}: B's message`)
      two.close()
    }
  })

  it("the subscribe window: a fresh connection gets a contiguous suffix of what B publishes meanwhile (20 rounds)", async () => {
    const { a, b } = await routedPair(server)
    for (let round = 0; round < 20; round++) {
      const user = `f${round}`
      const total = 40
      let opened: Promise<RawClient> | undefined
      for (let i = 0; i < total; i++) {
        if (i === round) opened = a.open(user, { wait: false })
        await b.sse.publish({ i }, user, { id: String(i) })
      }
      const c = await opened!
      await b.sse.publish({ i: total }, user, { id: String(total) })
      await until(() => numbers(c).includes(total), 5_000, `${user}: the last`)
      const got = numbers(c)
      expect(got, `round ${round}`).toEqual(range(got[0]!, total))
      c.close()
    }
  })

  it("Effect path: SseKify.layer + RedisTransport.layer({ url, routing: 'user' }) with a signed bus; a frame replayed onto another user's channel is refused", async () => {
    const channel = unique("e2e-fx")
    const busSecret = "a-secret-of-sixteen-chars"
    const instance = (name: string) => effectInstance(server, name, { channel, busSecret, replay: "redis" }, true)
    const a = await instance("a")
    const b = await instance("b")
    const alice = await a.open("alice")
    const bob = await a.open("bob")
    await awaitNumsub(server.port, Transport.userChannel(channel, "alice"), 1)
    await awaitNumsub(server.port, Transport.userChannel(channel, "bob"), 1)

    // listen on alice's channel to catch one signed frame as it crosses Redis
    const spy = new IORedis(server.url)
    fx.defer(() => spy.quit().then(() => {}, () => spy.disconnect()))
    const seen: Array<string> = []
    spy.on("message", (_channel: string, message: string) => seen.push(message))
    await spy.subscribe(Transport.userChannel(channel, "alice"))

    for (let i = 0; i < 10; i++) await Effect.runPromise(b.sse.publish({ i }, "alice"))
    await until(() => numbers(alice).length === 10, 5_000, "alice's 10")
    expect(numbers(alice)).toEqual(range(0, 9))
    await until(() => seen.length === 10, 5_000, "the spy's 10")
    expect(seen[0]!.startsWith("R1S")).toBe(true)
    expect(a.stats().received).toBe(10)
    expect(b.stats().received).toBe(0)

    // alice's frame replayed on bob's channel: refused, bob gets nothing
    const publisher = new IORedis(server.url)
    fx.defer(() => publisher.quit().then(() => {}, () => publisher.disconnect()))
    await publisher.publish(Transport.userChannel(channel, "bob"), seen[0]!)
    await until(() => a.stats().busRejected === 1, 5_000, "the replayed frame refused")
    await Effect.runPromise(b.sse.publish({ i: 100 }, "bob"))
    await until(() => numbers(bob).length === 1, 5_000, "bob's own")
    expect(numbers(bob)).toEqual([100])
    expect(a.stats().received).toBe(11)
  })

  it("a reconnect while the publisher's replay writes lag behind its PUBLISHes (its KV connection busy) still gets everything", async () => {
    // B records a frame it publishes to a user in the shared replay store (on its KV
    // connection) and PUBLISHes it (on its publisher connection). A frame PUBLISHed before
    // A's subscription to the user is confirmed reaches A only through that record, which
    // A reads once the subscription is confirmed: the record must be in Redis by then.
    const channel = unique("e2e-lag")
    const a = await effectInstance(server, "a", { channel, replay: "redis" })
    const b = await effectInstance(server, "b", { channel, replay: "redis" })
    const userCh = Transport.userChannel(channel, "alice")
    const first = await a.open("alice")
    await awaitNumsub(server.port, userCh, 1)
    await Effect.runPromise(b.sse.publish({ i: 0 }, "alice", { id: "0" }))
    await until(() => numbers(first).length === 1, 5_000, "the first frame")
    first.close()
    await awaitNumsub(server.port, userCh, 0)

    // B's KV connection blocked for 400 ms (any backlog there does the same)
    const kv = b.connection!.kv as import("ioredis").Redis
    // ready first: ioredis emits 'ready' before it sends its offline queue, so a command
    // sent on 'ready' (the library's gated ones) would overtake a BLPOP queued before it
    await kv.ping()
    const blocked = kv.blpop(unique("nothing"), 0.4)
    const sent = [1, 2, 3, 4, 5].map((i) => Effect.runPromise(b.sse.publish({ i }, "alice", { id: String(i) })))
    // one without an id (nothing to record) keeps its place behind them
    sent.push(Effect.runPromise(b.sse.publish({ i: 6 }, "alice")))
    await new Promise((r) => setTimeout(r, 50))
    const again = await a.open("alice", "0") // subscribed and replayed while B's records wait
    await blocked
    await Promise.all(sent)
    await Effect.runPromise(b.sse.publish({ i: 7 }, "alice", { id: "7" }))
    await until(() => numbers(again).includes(7), 5_000, "the last frame")
    expect(numbers(again)).toEqual([1, 2, 3, 4, 5, 6, 7])
  })

  it("shutting down while a publish waits for its record (the KV connection busy): the publish settles, the shutdown completes", async () => {
    const channel = unique("e2e-down")
    const b = await effectInstance(server, "b", { channel, replay: "redis" })
    const kv = b.connection!.kv as import("ioredis").Redis
    // ready first: ioredis emits 'ready' before it sends its offline queue, so a command
    // sent on 'ready' (the library's gated ones) would overtake a BLPOP queued before it
    await kv.ping()
    const blocked = kv.blpop(unique("nothing"), 1).catch(() => null)
    const waiting = Effect.runPromise(Effect.exit(b.sse.publish({ i: 1 }, "alice", { id: "1" })))
    let settled = false
    void waiting.then(() => (settled = true))
    await new Promise((r) => setTimeout(r, 50))
    expect(settled).toBe(false) // it is waiting for the record behind the BLPOP
    await b.close()
    // sent once the record was in, or refused by the closed transport: not left waiting
    await waiting
    await blocked
  })

  it("redis-server killed and restarted on its port: the routed channel is subscribed again and B's message reaches the client on A", async () => {
    const own = await startRedis()
    const { channel, a, b } = await routedPair(own)
    const alice = await a.open("alice")
    const aliceChannel = Transport.userChannel(channel, "alice")
    await awaitNumsub(own.port, aliceChannel, 1)
    await b.sse.publish({ i: 0 }, "alice")
    await until(() => numbers(alice).length === 1, 5_000, "before the restart")

    await own.kill()
    await own.restart()
    const restartedAt = Date.now()
    await awaitNumsub(own.port, aliceChannel, 1, 15_000)
    const resubscribedMs = Date.now() - restartedAt
    // B's publisher may still be reconnecting: publish until one arrives (bounded)
    let i = 1
    const deadline = Date.now() + 15_000
    while (!numbers(alice).some((n) => n >= 1)) {
      if (Date.now() > deadline) throw new Error("no message from B after the restart")
      await b.sse.publish({ i: i++ }, "alice").catch(() => {})
      await new Promise((r) => setTimeout(r, 100))
    }
    const got = numbers(alice)
    expect(got[0]).toBe(0)
    // each arrives at most once, in order
    expect(got).toEqual([...new Set(got)].sort((x, y) => x - y))
    expect(alice.isEnded()).toBe(false)
    console.log(`[routing.e2e] routed channel resubscribed ${resubscribedMs} ms after redis-server answered again`)
    await own.stop()
  })
})
