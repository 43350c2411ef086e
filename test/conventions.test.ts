/**
 * Issue 14 item 5, the Effect API's conventions: durations as `Duration.DurationInput`
 * next to the 0.1.6 `*Ms` numbers (one or the other, checked: `InvalidInput` otherwise),
 * `SseKify.layerConfig(Config.Wrap<…>)`, and `SseKify.envConfig` covering every scalar
 * option (the bus secret read as `Redacted`). Real node:http sockets and a raw client.
 */
import { describe, expect, it } from "@effect/vitest"
import { Cause, Config, ConfigProvider, Context, Duration, Effect, Exit, Layer, Option, Queue, Redacted } from "effect"
import {
  InvalidInput,
  Metrics,
  Presence,
  ReplayBuffer,
  Sequencer,
  SseKify,
  Transport
} from "../src/index.js"
import { serverWith } from "./support/effectServer.js"
import { connect } from "./support/sse.js"

/** The `InvalidInput` a failed exit carries (typed failure), or undefined. */
const invalidOf = <A, E>(exit: Exit.Exit<A, E>): InvalidInput | undefined =>
  Exit.isFailure(exit)
    ? Option.getOrUndefined(Cause.failureOption(exit.cause)) instanceof InvalidInput
      ? (Option.getOrUndefined(Cause.failureOption(exit.cause)) as unknown as InvalidInput)
      : undefined
    : undefined

const build = (options: SseKify.LayerOptions) =>
  Effect.exit(Effect.scoped(Layer.build(SseKify.layerTest(options))))

const quiet = { shutdown: { announce: false } } as const

describe("durations in the Effect API", () => {
  it.scopedLive("keepAlive and retry as Durations reach the wire; a connection's own keepAlive / retry too", () =>
    Effect.gen(function*() {
      const sse = yield* SseKify.SseKify
      const s = yield* serverWith
      const pending = connect(s.server.url + "/")
      const [, res] = yield* Effect.promise(() => s.next())
      yield* sse.connect("alice", res)
      const client = yield* Effect.promise(() => pending)
      yield* Effect.addFinalizer(() => Effect.sync(() => client.close()))
      // retry: 2.5 seconds; heartbeats every 20 ms: two pings arrive
      yield* Effect.promise(() => client.waitFor((c) => c.text().split(": ping").length > 2, 5_000, "two pings"))
      expect(client.text()).toContain("retry: 2500\n")

      const pending2 = connect(s.server.url + "/")
      const [, res2] = yield* Effect.promise(() => s.next())
      yield* sse.connect("bob", res2, { retry: Duration.millis(700), keepAlive: 0 })
      const client2 = yield* Effect.promise(() => pending2)
      yield* Effect.addFinalizer(() => Effect.sync(() => client2.close()))
      yield* Effect.promise(() => client2.waitFor((c) => c.text().includes("retry:"), 5_000, "retry"))
      expect(client2.text()).toContain("retry: 700\n")
    }).pipe(Effect.provide(SseKify.layerTest({ ...quiet, keepAlive: "20 millis", retry: "2.5 seconds" }))))

  it.effect("the 0.1.6 *Ms numbers still work; a Duration and its *Ms twin together are refused", () =>
    Effect.gen(function*() {
      expect(Exit.isSuccess(yield* build({ keepAliveMs: 0, retryMs: 1000, recentTTLMs: 60_000 }))).toBe(true)
      const both = invalidOf(yield* build({ keepAlive: "1 second", keepAliveMs: 1000 }))
      expect(both?.field).toBe("keepAlive")
      expect(both?.reason).toContain("not both")
      expect(invalidOf(yield* build({ recentTTL: 5, recentTTLMs: 5 }))?.field).toBe("recentTTL")
      expect(invalidOf(yield* build({ shutdown: { grace: 0, graceMs: 0 } }))?.field).toBe("shutdown.grace")
    }))

  it.effect("invalid Durations are InvalidInput naming the option: negative, NaN, infinite, unparsable, wrong type", () =>
    Effect.gen(function*() {
      const bad: ReadonlyArray<unknown> = [-1, NaN, Infinity, Duration.infinity, "-5 seconds", "soon", "", null, {}, [1], [-1, 0], true]
      for (const value of bad) {
        const e = invalidOf(yield* build({ retry: value as Duration.DurationInput }))
        expect(e?.field, String(value)).toBe("retry")
      }
      expect(invalidOf(yield* build({ keepAlive: "forever" as Duration.DurationInput }))?.field).toBe("keepAlive")
      expect(invalidOf(yield* build({ shutdown: { grace: -1 } }))?.field).toBe("shutdown.grace")
      expect(invalidOf(yield* build({ seq: { redisTTL: "a day" as Duration.DurationInput } }))?.field).toBe("seq.redisTTL")
      // zero is a valid Duration (no heartbeat, no grace), and so are the other forms
      for (const value of [0, 0n, "0 millis", [0, 0], Duration.zero, 1500, 10n ** 9n, "1 minute", [2, 500]] as const) {
        expect(Exit.isSuccess(yield* build({ keepAlive: value, shutdown: { grace: value } })), String(value)).toBe(true)
      }
    }))

  it.effect("presence heartbeat / ttl as Durations, checked together (ttl at least twice the heartbeat)", () =>
    Effect.gen(function*() {
      const tooShort = invalidOf(yield* build({ presence: { heartbeat: "1 second", ttl: "1999 millis" } }))
      expect(tooShort?.field).toBe("presence.ttl")
      expect(invalidOf(yield* build({ presence: { heartbeat: "0 millis" } }))?.field).toBe("presence.heartbeat")
      expect(invalidOf(yield* build({ presence: { heartbeat: 100, heartbeatMs: 100 } }))?.field).toBe("presence.heartbeat")
    }))

  it.scopedLive("a register option's Duration is checked: 400 and InvalidInput on options.keepAlive", () =>
    Effect.gen(function*() {
      const sse = yield* SseKify.SseKify
      const s = yield* serverWith
      const pending = connect(s.server.url + "/")
      const [, res] = yield* Effect.promise(() => s.next())
      const exit = yield* Effect.exit(sse.registerConnection("alice", res, { keepAlive: "-1 seconds" }))
      expect(invalidOf(exit)?.field).toBe("options.keepAlive")
      const client = yield* Effect.promise(() => pending)
      expect(client.status).toBe(400)
      client.close()
    }).pipe(Effect.provide(SseKify.layerTest(quiet))))

  it.scoped("shutdown({ grace }) with an invalid grace still shuts down, and reports the InvalidInput", () =>
    Effect.gen(function*() {
      const sse = yield* SseKify.SseKify
      const errors = yield* sse.subscribe(["error"])
      yield* sse.shutdown({ grace: "whenever" as Duration.DurationInput })
      const event = yield* Queue.take(errors)
      expect(event.payload).toBeInstanceOf(InvalidInput)
      expect((event.payload as InvalidInput).field).toBe("shutdown.grace")
      // no connection was open, so the (default) grace was skipped; the instance is stopped
      const exit = yield* Effect.exit(sse.sendToAll("x"))
      expect(Exit.isFailure(exit)).toBe(true)
    }).pipe(Effect.provide(SseKify.layerTest(quiet))))

  it.effect("layerTest keeps a grace given as a Duration (it only defaults graceMs to 0)", () =>
    Effect.gen(function*() {
      expect(Exit.isSuccess(yield* build({ shutdown: { grace: "10 millis" } }))).toBe(true)
    }))

  it.effect("the stores take ttl as a Duration; invalid or doubled is InvalidInput", () =>
    Effect.gen(function*() {
      const replayExit = yield* Effect.exit(ReplayBuffer.makeMemory({ ttl: "-1 minutes" }))
      expect(invalidOf(replayExit)?.field).toBe("ttl")
      expect(invalidOf(yield* Effect.exit(ReplayBuffer.makeMemory({ ttl: 1, ttlMs: 1 })))?.field).toBe("ttl")
      expect(Exit.isSuccess(yield* Effect.exit(ReplayBuffer.makeMemory({ ttl: "1 minute" })))).toBe(true)
      expect(invalidOf(yield* Effect.exit(Sequencer.make({ ttl: NaN })))?.field).toBe("ttl")
      expect(invalidOf(yield* Effect.exit(Sequencer.make({ ttlSeconds: -1 })))?.field).toBe("ttlSeconds")
      // a Duration TTL reaches the store in whole seconds, rounded up
      const ttls: Array<number> = []
      const kv: Sequencer.Kv = {
        incrExpire: (_key, ttlSeconds) => Effect.sync(() => (ttls.push(ttlSeconds), ttls.length)),
        expire: () => Effect.void
      }
      const sequencer = yield* Sequencer.make({ ttl: "1500 millis", kv })
      yield* sequencer.next("k", false)
      expect(ttls).toEqual([2])
    }))
})

describe("SseKify.layerConfig(Config.Wrap) and envConfig", () => {
  const run = <A, E>(effect: Effect.Effect<A, E>, env: ReadonlyArray<readonly [string, string]>) =>
    effect.pipe(Effect.withConfigProvider(ConfigProvider.fromMap(new Map(env))))

  it.effect("layerConfig takes each option as its own Config; the secret Redacted; a bad value is InvalidInput", () =>
    Effect.gen(function*() {
      const wrapped = SseKify.layerConfig({
        channel: Config.string("CH"),
        busSecret: Config.redacted("SECRET"),
        keepAlive: Config.duration("KA"),
        shutdown: Config.succeed({ grace: Duration.zero })
      }).pipe(Layer.provide(Transport.layerNone))
      const ok = yield* run(Effect.exit(Effect.scoped(Layer.build(wrapped))), [
        ["CH", "app:sse"],
        ["SECRET", "0123456789abcdef"],
        ["KA", "5 seconds"]
      ])
      expect(Exit.isSuccess(ok)).toBe(true)
      const short = yield* run(Effect.exit(Effect.scoped(Layer.build(wrapped))), [
        ["CH", "app:sse"],
        ["SECRET", "short"],
        ["KA", "5 seconds"]
      ])
      expect(invalidOf(short)?.field).toBe("busSecret")
      const missing = yield* run(Effect.exit(Effect.scoped(Layer.build(wrapped))), [["CH", "x"]])
      expect(Exit.isFailure(missing) && String(missing.cause)).toContain("SECRET")
      // one Config of the whole options still works (what layerConfig took in 0.2.0)
      const whole = SseKify.layerConfig(Config.all({ channel: Config.string("CH") })).pipe(Layer.provide(Transport.layerNone))
      expect(Exit.isSuccess(yield* run(Effect.exit(Effect.scoped(Layer.build(whole))), [["CH", "c"]]))).toBe(true)
    }))

  it.effect("the stores' and Metrics' layers with options have a layerConfig(Config.Wrap) twin", () =>
    Effect.gen(function*() {
      const env: ReadonlyArray<readonly [string, string]> = [["SIZE", "0"], ["TTL", "2 minutes"], ["BAD", "-3"]]
      const off = yield* run(
        Effect.scoped(Effect.flatMap(
          Layer.build(ReplayBuffer.layerMemoryConfig({ size: Config.integer("SIZE"), ttl: Config.duration("TTL") })),
          (ctx) => Effect.succeed(Context.get(ctx, ReplayBuffer.ReplayBuffer).enabled)
        )),
        env
      )
      expect(off).toBe(false) // size 0 from the config: replay off
      const bad = yield* run(
        Effect.exit(Effect.scoped(Layer.build(ReplayBuffer.layerMemoryConfig({ ttl: Config.number("BAD") })))),
        env
      )
      expect(invalidOf(bad)?.field).toBe("ttl")
      const seq = yield* run(
        Effect.exit(Effect.scoped(Layer.build(Sequencer.layerMemoryConfig({ ttl: Config.number("BAD") })))),
        env
      )
      expect(invalidOf(seq)?.field).toBe("ttl")
      const seqOk = yield* run(
        Effect.exit(Effect.scoped(Layer.build(Sequencer.layerMemoryConfig({ ttl: Config.duration("TTL") })))),
        env
      )
      expect(Exit.isSuccess(seqOk)).toBe(true)
      const metrics = Metrics.layerConfig({ interval: Config.duration("TTL") }).pipe(
        Layer.provideMerge(SseKify.layerTest())
      )
      expect(Exit.isSuccess(yield* run(Effect.exit(Effect.scoped(Layer.build(metrics))), env))).toBe(true)
    }))

  it.effect("envConfig reads every scalar option; nothing set is the defaults ({})", () =>
    Effect.gen(function*() {
      expect(yield* run(SseKify.envConfig, [])).toEqual({})
      const all: ReadonlyArray<readonly [string, string]> = [
        ["SSEKIFY_CHANNEL", "app:sse"],
        ["SSEKIFY_KEEP_ALIVE_MS", "1000"],
        ["SSEKIFY_KEEP_ALIVE_EVENT", "ping"],
        ["SSEKIFY_RETRY_MS", "3000"],
        ["SSEKIFY_RECENT_BUFFER_SIZE", "50"],
        ["SSEKIFY_MAX_PAYLOAD_BYTES", "2048"],
        ["SSEKIFY_RECENT_TTL_MS", "60000"],
        ["SSEKIFY_RECENT_MAX_USERS", "7"],
        ["SSEKIFY_REPLAY_GAP_EVENT", "gap"],
        ["SSEKIFY_REPLAY_OFFLINE", "true"],
        ["SSEKIFY_REPLAY", "memory"],
        ["SSEKIFY_REPLAY_KEY_PREFIX", "r:"],
        ["SSEKIFY_MAX_LAST_EVENT_ID_LENGTH", "64"],
        ["SSEKIFY_ENABLE_SEQ", "false"],
        ["SSEKIFY_INSTANCE_ID", "i1"],
        ["SSEKIFY_MAX_CONNECTIONS", "100"],
        ["SSEKIFY_MAX_CONNECTIONS_PER_USER", "3"],
        ["SSEKIFY_CONNECTION_LIMIT_POLICY", "closeOldest"],
        ["SSEKIFY_CONNECTION_LIMIT_SCOPE", "instance"],
        ["SSEKIFY_MAX_ROOMS_PER_CONNECTION", "8"],
        ["SSEKIFY_MAX_USER_ID_LENGTH", "32"],
        ["SSEKIFY_MAX_ROOM_NAME_LENGTH", "33"],
        ["SSEKIFY_MAX_EVENT_NAME_LENGTH", "34"],
        ["SSEKIFY_MAX_ID_LENGTH", "35"],
        ["SSEKIFY_BUS_SECRET", "0123456789abcdef"],
        ["SSEKIFY_SEQ_START_AT", "1"],
        ["SSEKIFY_SEQ_FIELD_NAME", "n"],
        ["SSEKIFY_SEQ_FRAME_ID_POLICY", "snowflake"],
        ["SSEKIFY_SEQ_REDIS_KEY_PREFIX", "s:"],
        ["SSEKIFY_SEQ_REDIS_TTL_SECONDS", "120"],
        ["SSEKIFY_SEQ_MAX_KEYS", "9"],
        ["SSEKIFY_PRESENCE_HEARTBEAT_MS", "2000"],
        ["SSEKIFY_PRESENCE_TTL_MS", "6000"],
        ["SSEKIFY_PRESENCE_KEY_PREFIX", "p:"],
        ["SSEKIFY_AUTO_TIMESTAMP", "false"],
        ["SSEKIFY_SHUTDOWN_GRACE_MS", "1500"],
        ["SSEKIFY_SHUTDOWN_ANNOUNCE", "false"],
        ["SSEKIFY_SHUTDOWN_EVENT", "bye"]
      ]
      const options = yield* run(SseKify.envConfig, all)
      const { busSecret, ...rest } = options
      expect(Redacted.isRedacted(busSecret)).toBe(true)
      expect(Redacted.value(busSecret as Redacted.Redacted<string>)).toBe("0123456789abcdef")
      expect(String(busSecret)).not.toContain("0123456789abcdef")
      expect(rest).toEqual({
        channel: "app:sse",
        keepAlive: 1000,
        keepAliveEvent: "ping",
        retry: 3000,
        recentBufferSize: 50,
        maxPayloadBytes: 2048,
        recentTTL: 60000,
        recentMaxUsers: 7,
        replayGapEvent: "gap",
        replayOffline: true,
        replay: "memory",
        replayKeyPrefix: "r:",
        maxLastEventIdLength: 64,
        enableSeq: false,
        instanceId: "i1",
        maxConnections: 100,
        maxConnectionsPerUser: 3,
        connectionLimitPolicy: "closeOldest",
        connectionLimitScope: "instance",
        maxRoomsPerConnection: 8,
        maxUserIdLength: 32,
        maxRoomNameLength: 33,
        maxEventNameLength: 34,
        maxIdLength: 35,
        seq: {
          startAt: 1,
          fieldName: "n",
          frameIdPolicy: "snowflake",
          redisKeyPrefix: "s:",
          redisTTL: [120, 0],
          maxKeys: 9
        },
        presence: { heartbeat: 2000, ttl: 6000, keyPrefix: "p:" },
        autoFields: { timestamp: false },
        shutdown: { grace: 1500, announce: false, event: "bye" }
      })
      // and the layer takes all of it (presence needs a store: the memory one)
      const layer = SseKify.layerConfig(SseKify.envConfig).pipe(
        Layer.provide(Layer.merge(Transport.layerNone, Presence.layerMemory))
      )
      expect(Exit.isSuccess(yield* run(Effect.exit(Effect.scoped(Layer.build(layer))), all))).toBe(true)
    }))

  it.effect("envConfig: SSEKIFY_PRESENCE=false wins over presence settings; =true alone turns it on; bad values are ConfigErrors", () =>
    Effect.gen(function*() {
      expect(yield* run(SseKify.envConfig, [["SSEKIFY_PRESENCE", "false"], ["SSEKIFY_PRESENCE_TTL_MS", "1"]])).toEqual({
        presence: false
      })
      expect(yield* run(SseKify.envConfig, [["SSEKIFY_PRESENCE", "true"]])).toEqual({ presence: true })
      for (
        const env of [
          ["SSEKIFY_REPLAY", "disk"],
          ["SSEKIFY_RETRY_MS", "soon"],
          ["SSEKIFY_SEQ_START_AT", "2"],
          ["SSEKIFY_ENABLE_SEQ", "perhaps"],
          ["SSEKIFY_AUTO_TIMESTAMP", "rfc"]
        ] as const
      ) {
        const exit = yield* Effect.exit(run(SseKify.envConfig, [env]))
        expect(Exit.isFailure(exit) && String(exit.cause), env[0]).toContain(env[0])
      }
      // a value the config accepts but the layer refuses is InvalidInput at build
      const layer = SseKify.layerConfig(SseKify.envConfig).pipe(Layer.provide(Transport.layerNone))
      const exit = yield* run(Effect.exit(Effect.scoped(Layer.build(layer))), [["SSEKIFY_RETRY_MS", "-5"]])
      expect(invalidOf(exit)?.field).toBe("retry")
    }))
})
