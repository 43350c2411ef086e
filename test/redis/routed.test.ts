/**
 * The routed channels of the Redis transport (`routing: "user"`) on a real single-node
 * redis-server: counted interest, one command per tick, confirmation, reconnects.
 */
import { expect, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Schedule from "effect/Schedule"
import * as Scope from "effect/Scope"
import { afterAll, beforeAll, describe } from "vitest"
import { InvalidInput, TransportError } from "../../src/Errors.js"
import { SSEKify } from "../../src/facade.js"
import { ConnectionsKey, createIORedisAdapter } from "../../src/redisAdapter.js"
import * as RedisTransport from "../../src/RedisTransport.js"
import * as RedisConnection from "../../src/RedisConnection.js"
import { createMemoryBus, Transport, userChannel } from "../../src/Transport.js"
import * as TransportRedis from "../../src/Transport/Redis.js"
import { redisAvailable, redisCli, type RedisServer, startRedis, stopAll } from "../support/redisServer.js"
import { eventually, eventuallyEffect, info, unique } from "./helpers.js"
import { receiver } from "../support/routedReceiver.js"

/** `calls` of each command in `INFO commandstats`. */
const commandCalls = async (port: number): Promise<Map<string, number>> => {
  const stats = await info(port, "commandstats")
  const out = new Map<string, number>()
  for (const [key, value] of stats) {
    const calls = /calls=(\d+)/.exec(value)
    if (key.startsWith("cmdstat_") && calls !== null) out.set(key.slice("cmdstat_".length), Number(calls[1]))
  }
  return out
}

const delta = (before: Map<string, number>, after: Map<string, number>, command: string) =>
  (after.get(command) ?? 0) - (before.get(command) ?? 0)

/** Subscribers of each channel (`PUBSUB NUMSUB` or `SHARDNUMSUB`). */
const numsub = async (port: number, channels: ReadonlyArray<string>, sharded = false): Promise<Array<number>> => {
  const out = (await redisCli(port, ["pubsub", sharded ? "shardnumsub" : "numsub", ...channels])).trim().split(/\s+/)
  return channels.map((_, i) => Number(out[2 * i + 1] ?? 0))
}


/** A routed transport on its own connection (closed with the scope). */
const routedOn = (url: string, options: TransportRedis.RoutingOptions & { readonly subscribeTimeout?: number } = {}) =>
  Effect.gen(function*() {
    const connection = yield* RedisConnection.make({
      url,
      ...(options.subscribeTimeout !== undefined ? { subscribeTimeout: options.subscribeTimeout } : {})
    })
    const transport = yield* TransportRedis.makeWith(connection, { routing: "user", ...options })
    expect(transport.routed).toBeDefined()
    return { connection, transport, routed: transport.routed! }
  })

describe.skipIf(!redisAvailable())("Redis routed channels (single node)", () => {
  let server: RedisServer
  beforeAll(async () => {
    server = await startRedis()
  })
  afterAll(stopAll)

  it.scopedLive("routing 'channel' (the default) has no routed channels", () =>
    Effect.gen(function*() {
      const connection = yield* RedisConnection.make({ url: server.url })
      expect((yield* TransportRedis.makeWith(connection)).routed).toBeUndefined()
      expect((yield* TransportRedis.makeWith(connection, { routing: "channel" })).routed).toBeUndefined()
    }))

  it.scopedLive("add: a publish on the channel arrives; remove: no longer, and Redis has no subscriber left", () =>
    Effect.gen(function*() {
      const { routed } = yield* routedOn(server.url)
      const { routed: other } = yield* routedOn(server.url)
      const at = receiver()
      yield* at.listen(routed)
      const alice = userChannel(unique("app"), "alice")
      const bob = userChannel(unique("app"), "bob")
      yield* routed.add([alice, bob])
      expect(yield* Effect.promise(() => numsub(server.port, [alice, bob]))).toEqual([1, 1])
      yield* other.publish(alice, "a1")
      yield* other.publish(bob, "b1")
      yield* eventually("a1 and b1", () => at.got.length === 2)
      expect(at.got).toEqual([[alice, "a1"], [bob, "b1"]])

      routed.remove([alice])
      yield* eventuallyEffect("alice unsubscribed", Effect.promise(() => numsub(server.port, [alice])).pipe(Effect.map(([n]) => n === 0)))
      yield* other.publish(alice, "a2")
      yield* other.publish(bob, "b2") // same publisher: arrives after a2 would have
      yield* eventually("b2", () => at.of(bob).length === 2)
      expect(at.of(alice)).toEqual(["a1"])
      expect(at.errors).toEqual([])
    }))

  it.scopedLive("interest is counted: two adds need two removes; a foreign or repeated remove changes nothing", () =>
    Effect.gen(function*() {
      const { routed } = yield* routedOn(server.url)
      const ch = userChannel(unique("app"), "carol")
      const before = yield* Effect.promise(() => commandCalls(server.port))
      yield* routed.add([ch])
      yield* routed.add([ch]) // already confirmed: completes at once, sends nothing
      routed.remove([ch])
      routed.remove([userChannel(unique("app"), "nobody")]) // never added
      yield* Effect.sleep("50 millis")
      expect(yield* Effect.promise(() => numsub(server.port, [ch]))).toEqual([1])
      routed.remove([ch])
      routed.remove([ch]) // one too many
      yield* eventuallyEffect("carol unsubscribed", Effect.promise(() => numsub(server.port, [ch])).pipe(Effect.map(([n]) => n === 0)))
      yield* Effect.sleep("50 millis")
      const after = yield* Effect.promise(() => commandCalls(server.port))
      expect(delta(before, after, "subscribe")).toBe(1)
      expect(delta(before, after, "unsubscribe")).toBe(1)
      // and it can be added again
      yield* routed.add([ch])
      expect(yield* Effect.promise(() => numsub(server.port, [ch]))).toEqual([1])
    }))

  it.scopedLive("the adds of one tick leave as ONE SUBSCRIBE (1000 channels: one; 1001: two), the removes as one UNSUBSCRIBE", () =>
    Effect.gen(function*() {
      const { routed } = yield* routedOn(server.url)
      const app = unique("app")
      for (const n of [100, 1000, 1001]) {
        const channels = Array.from({ length: n }, (_, i) => userChannel(app, `u${n}-${i}`))
        const before = yield* Effect.promise(() => commandCalls(server.port))
        // one fiber per add, as one registration per connection would do
        const fibers = yield* Effect.forEach(channels, (c) => Effect.fork(routed.add([c])))
        yield* Fiber.joinAll(fibers)
        const afterAdd = yield* Effect.promise(() => commandCalls(server.port))
        expect(delta(before, afterAdd, "subscribe")).toBe(n <= 1000 ? 1 : 2)
        expect(yield* Effect.promise(() => numsub(server.port, channels))).toEqual(channels.map(() => 1))
        for (const c of channels) routed.remove([c])
        yield* eventuallyEffect(
          "every channel left",
          Effect.promise(() => numsub(server.port, channels)).pipe(Effect.map((subs) => subs.every((s) => s === 0)))
        )
        const afterRemove = yield* Effect.promise(() => commandCalls(server.port))
        expect(delta(afterAdd, afterRemove, "unsubscribe")).toBe(n <= 1000 ? 1 : 2)
      }
    }), 30_000)

  it.scopedLive("an add and a remove of the same channel within one tick send nothing (and the add completes)", () =>
    Effect.gen(function*() {
      const { routed } = yield* routedOn(server.url)
      const app = unique("app")
      const brief = userChannel(app, "brief")
      const kept = userChannel(app, "kept")
      yield* routed.add([kept])
      const before = yield* Effect.promise(() => commandCalls(server.port))
      // runFork runs the add's synchronous part now (a fork would start it later)
      const fiber = Effect.runFork(routed.add([brief]))
      routed.remove([brief])
      // a subscribed channel removed and added back within one tick: nothing either
      routed.remove([kept])
      yield* routed.add([kept])
      expect(yield* Fiber.join(fiber)).toBeUndefined()
      yield* Effect.sleep("100 millis")
      const after = yield* Effect.promise(() => commandCalls(server.port))
      expect(delta(before, after, "subscribe")).toBe(0)
      expect(delta(before, after, "unsubscribe")).toBe(0)
      expect(yield* Effect.promise(() => numsub(server.port, [brief, kept]))).toEqual([0, 1])
    }))

  it.scopedLive("add completes only once Redis confirmed; unconfirmed within the timeout it fails with TransportError and completes later", () =>
    Effect.gen(function*() {
      const own = yield* Effect.promise(() => startRedis())
      const { routed } = yield* routedOn(own.url, { subscribeTimeout: 400 })
      const { routed: publisher } = yield* routedOn(own.url)
      const at = receiver()
      yield* at.listen(routed)
      const app = unique("app")
      const first = userChannel(app, "first")
      yield* routed.add([first])
      // confirmed means Redis has it: no publish from now on can miss it
      expect(yield* Effect.promise(() => numsub(own.port, [first]))).toEqual([1])

      // Redis frozen (SIGSTOP): the SUBSCRIBE is written, not answered
      const pid = own.pid!
      process.kill(pid, "SIGSTOP")
      const late = userChannel(app, "late")
      const started = Date.now()
      const exit = yield* Effect.exit(routed.add([late]))
      const waited = Date.now() - started
      process.kill(pid, "SIGCONT")
      expect(Exit.isFailure(exit)).toBe(true)
      const error = yield* Effect.flip(exit)
      expect(error).toBeInstanceOf(TransportError)
      expect(error.operation).toBe("subscribe")
      expect(String((error.cause as Error).message)).toContain("not confirmed")
      expect(waited).toBeGreaterThanOrEqual(390)
      // the subscription completes in the background: a second add waits for the same confirmation
      yield* routed.add([late])
      expect(yield* Effect.promise(() => numsub(own.port, [late]))).toEqual([1])
      yield* publisher.publish(late, "x")
      yield* eventually("x", () => at.of(late).length === 1)
      yield* Effect.promise(() => own.stop())
    }), 20_000)

  it.scopedLive("redis-server killed and restarted: every channel is subscribed again and messages flow; an add made while down completes", () =>
    Effect.gen(function*() {
      const own = yield* Effect.promise(() => startRedis())
      const { routed } = yield* routedOn(own.url, { subscribeTimeout: 10_000 })
      const { routed: publisher } = yield* routedOn(own.url)
      const at = receiver()
      yield* at.listen(routed)
      const app = unique("app")
      const held = Array.from({ length: 50 }, (_, i) => userChannel(app, `h${i}`))
      yield* routed.add(held)
      yield* Effect.promise(() => own.kill())
      const whileDown = userChannel(app, "while-down")
      const pending = yield* Effect.fork(routed.add([whileDown]))
      yield* Effect.sleep("300 millis")
      yield* Effect.promise(() => own.restart())
      // the add made while Redis was away completes once the queued SUBSCRIBE is confirmed
      yield* Fiber.join(pending)
      const all = [...held, whileDown]
      yield* eventuallyEffect(
        "every channel subscribed again",
        Effect.promise(() => numsub(own.port, all)).pipe(Effect.map((subs) => subs.every((s) => s === 1))),
        10_000
      )
      // the publisher's own connection may still be reconnecting: retried (bounded)
      for (const c of all) yield* publisher.publish(c, "after").pipe(Effect.retry(Schedule.spaced("100 millis").pipe(Schedule.intersect(Schedule.recurs(50)))))
      yield* eventually("a message on every channel", () => all.every((c) => at.of(c).length === 1), 10_000)
      yield* Effect.promise(() => own.stop())
    }), 30_000)

  it.scopedLive("a SUBSCRIBE written but unanswered when redis-server dies is sent again after the restart, and its add completes", () =>
    Effect.gen(function*() {
      const own = yield* Effect.promise(() => startRedis())
      const { routed } = yield* routedOn(own.url, { subscribeTimeout: 15_000 })
      const { routed: publisher } = yield* routedOn(own.url)
      const at = receiver()
      yield* at.listen(routed)
      const app = unique("app")
      yield* routed.add([userChannel(app, "warm")]) // the connection is ready
      const inFlight = userChannel(app, "in-flight")
      process.kill(own.pid!, "SIGSTOP") // the SUBSCRIBE is written, never answered by this process
      const pending = Effect.runFork(routed.add([inFlight]))
      yield* Effect.sleep("200 millis")
      expect(pending.unsafePoll()).toBeNull()
      yield* Effect.promise(() => own.kill())
      yield* Effect.promise(() => own.restart())
      yield* Fiber.join(pending)
      expect(yield* Effect.promise(() => numsub(own.port, [inFlight]))).toEqual([1])
      yield* publisher.publish(inFlight, "after").pipe(
        Effect.retry(Schedule.spaced("100 millis").pipe(Schedule.intersect(Schedule.recurs(50))))
      )
      yield* eventually("after", () => at.of(inFlight).length === 1)
      yield* Effect.promise(() => own.stop())
    }), 30_000)

  it.scopedLive("listen: only routed channels (the shared channel is not one); a throwing receiver is reported and the next message still arrives", () =>
    Effect.gen(function*() {
      const { connection, transport, routed } = yield* routedOn(server.url)
      const app = unique("app")
      const shared = app
      const dave = userChannel(app, "dave")
      const got: Array<string> = []
      const errors: Array<TransportError> = []
      const sharedGot: Array<string> = []
      yield* transport.subscribe(shared, { onMessage: (m) => void sharedGot.push(m), onError: () => {} })
      yield* routed.listen((channel, message) => {
        if (message === "boom") throw new Error("receiver failed")
        got.push(`${channel}=${message}`)
      }, (error) => void errors.push(error))
      yield* routed.add([dave])
      yield* connection.publish(shared, "everyone")
      yield* routed.publish(dave, "boom")
      yield* routed.publish(dave, "d1")
      yield* eventually("d1", () => got.length === 1 && sharedGot.length === 1)
      expect(got).toEqual([`${dave}=d1`])
      expect(sharedGot).toEqual(["everyone"])
      expect(errors.map((e) => e.operation)).toEqual(["onMessage"])
    }))

  it.scopedLive("after the scope closes: add and publish fail with TransportError, and the channels are left", () =>
    Effect.gen(function*() {
      const connection = yield* RedisConnection.make({ url: server.url })
      const scope = yield* Scope.make()
      const transport = yield* TransportRedis.makeWith(connection, { routing: "user" }).pipe(Scope.extend(scope))
      const routed = transport.routed!
      const ch = userChannel(unique("app"), "eve")
      yield* routed.add([ch])
      yield* Scope.close(scope, Exit.void)
      yield* eventuallyEffect("eve left", Effect.promise(() => numsub(server.port, [ch])).pipe(Effect.map(([n]) => n === 0)))
      const addError = yield* Effect.flip(routed.add([ch]))
      expect(addError).toBeInstanceOf(TransportError)
      const publishError = yield* Effect.flip(routed.publish(ch, "x"))
      expect(publishError.operation).toBe("publish")
      routed.remove([ch]) // no throw
    }))

  it.scopedLive("sharded: true on a single node: SSUBSCRIBE / SPUBLISH, one command per tick; a classic PUBLISH does not reach it", () =>
    Effect.gen(function*() {
      const { routed } = yield* routedOn(server.url, { sharded: true })
      const { connection: other } = yield* routedOn(server.url)
      const { routed: publisher } = yield* routedOn(server.url, { sharded: true })
      const at = receiver()
      yield* at.listen(routed)
      const app = unique("app")
      const channels = Array.from({ length: 20 }, (_, i) => userChannel(app, `s${i}`))
      const before = yield* Effect.promise(() => commandCalls(server.port))
      yield* Fiber.joinAll(yield* Effect.forEach(channels, (c) => Effect.fork(routed.add([c]))))
      const after = yield* Effect.promise(() => commandCalls(server.port))
      expect(delta(before, after, "ssubscribe")).toBe(1)
      expect(delta(before, after, "subscribe")).toBe(0)
      expect(yield* Effect.promise(() => numsub(server.port, channels, true))).toEqual(channels.map(() => 1))
      yield* other.publish(channels[0]!, "classic")
      for (const c of channels) yield* publisher.publish(c, "sharded")
      yield* eventually("every sharded message", () => at.got.length === channels.length)
      expect(at.got.every(([, m]) => m === "sharded")).toBe(true)
      const final = yield* Effect.promise(() => commandCalls(server.port))
      expect(delta(after, final, "spublish")).toBe(channels.length)
    }))

  describe("choosing the routing", () => {
    /** The routed channels of the layer's transport (the layer lives as long as the test's scope). */
    const routedOf = (layer: Layer.Layer<Transport>) =>
      Effect.map(Layer.build(layer), (context) => Context.get(context, Transport).routed)

    it.scopedLive("RedisTransport.layer / layerAdapter: routing 'user' gives routed channels, the default none", () =>
      Effect.gen(function*() {
        expect(yield* routedOf(RedisTransport.layer({ url: server.url }))).toBeUndefined()
        expect(yield* routedOf(RedisTransport.layer({ url: server.url, routing: "user" }))).toBeDefined()
        const plain = createIORedisAdapter(server.url)
        const routedAdapter = createIORedisAdapter(server.url, { routing: "user" })
        yield* Effect.addFinalizer(() => Effect.promise(() => Promise.all([plain.close(), routedAdapter.close()])))
        expect(yield* routedOf(RedisTransport.layerAdapter(plain))).toBeUndefined()
        expect(yield* routedOf(RedisTransport.layerAdapter(plain, { routing: "user" }))).toBeDefined()
        expect(yield* routedOf(RedisTransport.layerAdapter(routedAdapter))).toBeDefined()
        // given to layerAdapter, routing wins over the adapter's
        expect(yield* routedOf(RedisTransport.layerAdapter(routedAdapter, { routing: "channel" }))).toBeUndefined()
        // a routed transport on the adapter's connection works
        const routed = (yield* routedOf(RedisTransport.layerAdapter(routedAdapter)))!
        const at = receiver()
        yield* at.listen(routed)
        const ch = userChannel(unique("app"), "adapter")
        yield* routed.add([ch])
        yield* Effect.promise(() => plain.publish(ch, "via the plain adapter"))
        yield* eventually("the message", () => at.of(ch).length === 1)
      }))

    it("a foreign RedisLike adapter with routing 'user' is refused with InvalidInput", () => {
      const bus = createMemoryBus()
      const refused = (f: () => unknown) => {
        try {
          f()
        } catch (e) {
          return e
        }
        return undefined
      }
      const e1 = refused(() => RedisTransport.layerAdapter(bus.adapter(), { routing: "user" }))
      expect(e1).toBeInstanceOf(InvalidInput)
      expect((e1 as InvalidInput).field).toBe("routing")
      const e2 = refused(() => new SSEKify({ redis: bus.adapter(), routing: "user" }))
      expect(e2).toBeInstanceOf(InvalidInput)
      expect((e2 as InvalidInput).field).toBe("routing")
      const e3 = refused(() => new SSEKify({ routing: "users" as never }))
      expect(e3).toBeInstanceOf(InvalidInput)
      expect((e3 as InvalidInput).reason).toContain("'channel' or 'user'")
      // routing 'channel' on a foreign adapter is today's behaviour
      expect(refused(() => RedisTransport.layerAdapter(bus.adapter(), { routing: "channel" }))).toBeUndefined()
    })

    it.live("SSEKify({ redis: url, routing: 'user' }) builds on the Redis transport and shuts down", () =>
      Effect.gen(function*() {
        const sse = new SSEKify({ redis: server.url, routing: "user", keepAliveMs: 0 })
        yield* Effect.promise(() => sse.shutdown({ announce: false, graceMs: 0 }))
        const adapter = createIORedisAdapter(server.url, { routing: "user" })
        const viaAdapter = new SSEKify({ redis: adapter, keepAliveMs: 0 })
        yield* Effect.promise(() => viaAdapter.shutdown({ announce: false, graceMs: 0 }))
      }))
  })

  it.scopedLive("a subscribe asked while the connection is in ioredis' 'connect' state is not lost (transport, adapter, routed)", () =>
    Effect.gen(function*() {
      // ioredis wrote SUBSCRIBE before its ready check there; the check's INFO was refused in
      // subscriber mode and the connection started over without the subscription
      const inConnectState = (client: { readonly status: string }) =>
        Effect.promise(async () => {
          for (let i = 0; i < 20_000 && client.status !== "connect"; i++) await new Promise((r) => setImmediate(r))
          return client.status
        })
      const app = unique("app")
      const viaTransport = `${app}:t`
      const viaAdapter = `${app}:a`
      const viaRouted = userChannel(app, "r")

      const connection = yield* RedisConnection.make({ url: server.url })
      const transport = yield* TransportRedis.makeWith(connection, { routing: "user" })
      expect(yield* inConnectState(connection.subscriber)).toBe("connect")
      yield* transport.subscribe(viaTransport, { onMessage: () => {}, onError: () => {} })
      yield* transport.routed!.add([viaRouted])

      const adapter = createIORedisAdapter(server.url)
      yield* Effect.addFinalizer(() => Effect.promise(() => adapter.close()))
      const { subscriber } = adapter[ConnectionsKey].connections
      expect(yield* inConnectState(subscriber)).toBe("connect")
      yield* Effect.promise(() => adapter.subscribe(viaAdapter))

      yield* Effect.sleep("300 millis")
      expect(yield* Effect.promise(() => numsub(server.port, [viaTransport, viaAdapter, viaRouted]))).toEqual([1, 1, 1])
    }))
})
