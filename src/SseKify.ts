/**
 * The service users call: register SSE connections, send to a user, a room or
 * everyone, publish across instances, observe, shut down.
 *
 * ```ts
 * import { Effect, Layer } from "effect"
 * import { SseKify, SseKifyLive, Transport } from "ssekify"
 *
 * const program = Effect.gen(function*() {
 *   const sse = yield* SseKify.SseKify
 *   yield* sse.sendToUser("alice", { hello: "world" }, { event: "notify" })
 * })
 * program.pipe(Effect.provide(SseKifyLive.pipe(Layer.provide(Transport.layerNone))))
 * ```
 *
 * @since 0.2.0
 */
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import * as FiberSet from "effect/FiberSet"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Redacted from "effect/Redacted"
import * as Runtime from "effect/Runtime"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type { ConnectionHandle, DropPolicy, NodeResponse, RegisterOptions } from "./Connection.js"
import type * as Envelope from "./Envelope.js"
import {
  InvalidInput,
  type LimitExceeded,
  type SendError,
  type SseKifyError,
  type ShuttingDown,
  type TransportError
} from "./Errors.js"
import { Engine, refuse } from "./internal/engine.js"
import * as Presence from "./internal/presence.js"
import {
  type ClusterQuery,
  type ConnectionLimitScope,
  type InstanceQuery,
  type PresenceError,
  type PresenceOptions,
  type Scope as PresenceScope,
  Store as PresenceStore
} from "./Presence.js"
import { resolve } from "./internal/options.js"
import * as ReplayBuffer from "./ReplayBuffer.js"
import * as Sequencer from "./Sequencer.js"
import { createMemoryBus, layerMemory, type MemoryBus, Transport } from "./Transport.js"

/**
 * Options of `sendTo*` and `publish*`.
 *
 * @since 0.2.0
 * @category models
 */
export interface SendOptions {
  /** `event:` line: the name a page listens to with `addEventListener`. */
  readonly event?: string | undefined
  /**
   * `id:` line: echoed by the browser as `Last-Event-ID` when it reconnects. Sent
   * without leading / trailing spaces and tabs (HTTP trims them from the header the
   * browser echoes); an id of only spaces is `InvalidInput`.
   */
  readonly id?: string | undefined
}

/**
 * A frame id policy (`seq.frameIdPolicy`): no generated id (`'none'`, default),
 * `<epochMs>-<instanceId>-<seq>` (`'timestamp'`), a time-ordered 64-bit decimal id
 * (`'snowflake'`), or a function of the data and its `seq`.
 *
 * @since 0.2.0
 * @category models
 */
export type FrameIdPolicy = "none" | "timestamp" | "snowflake" | ((data: unknown, nextSeq: number) => string)

/**
 * An automatically filled field (`autoFields.traceId` / `autoFields.requestId`).
 *
 * @since 0.2.0
 * @category models
 */
export interface AutoField<Mode extends string> {
  /** `'off'`; `'ifMissing'`: add `getter()` when absent; `'require'`: refuse data without it. */
  readonly mode: Mode
  readonly getter?: (() => unknown) | undefined
  /** Field name. Default `'traceId'` / `'requestId'`. */
  readonly fieldName?: string | undefined
}

/**
 * Fields added to plain-object data that lacks them (on a copy; the caller's object
 * is never changed).
 *
 * @since 0.2.0
 * @category models
 */
export interface AutoFieldsOptions {
  /** Send time: ISO 8601 UTC (`'iso'`, default), epoch ms (`'epochMs'`) or none (`false`). */
  readonly timestamp?: "iso" | "epochMs" | false | undefined
  readonly traceId?: AutoField<"off" | "ifMissing"> | undefined
  readonly requestId?: AutoField<"off" | "ifMissing" | "require"> | undefined
}

/**
 * The automatic per-key `seq`.
 *
 * @since 0.2.0
 * @category models
 */
export interface SeqOptions {
  /** The key of a message's stream. Default: `data.requestId || data.streamId`. */
  readonly keyExtractor?: ((data: Readonly<Record<string, unknown>>) => unknown) | undefined
  /** First value: 0 (default) or 1. */
  readonly startAt?: 0 | 1 | undefined
  /** Last frame of a stream (its counter is dropped). Default: `final === true` or `phase` 'done' / 'error'. */
  readonly finalPredicate?: ((data: Readonly<Record<string, unknown>>) => unknown) | undefined
  /** Field name. Default `'seq'`. */
  readonly fieldName?: string | undefined
  /** Generated frame ids. Default `'none'`. An explicit `opts.id` always wins. */
  readonly frameIdPolicy?: FrameIdPolicy | undefined
  /** An explicit key/value client for the global seq (`incr`, `expire`); `null`: none. */
  readonly redis?: Sequencer.RedisKvLike | null | undefined
  /**
   * Prefix of the seq keys in Redis. Default `'ssekify:seq:'` on the default channel,
   * `'<channel>:seq:'` on any other (so tenants on their own channels never share counters).
   */
  readonly redisKeyPrefix?: string | undefined
  /** TTL of a key (Redis and memory), seconds. Default 86 400. */
  readonly redisTTLSeconds?: number | undefined
  /** In-memory keys kept at most. Default 100 000. */
  readonly maxKeys?: number | undefined
}

/**
 * Options of an instance. Every option of the original 0.1.6 keeps its name and
 * default.
 *
 * @since 0.2.0
 * @category models
 */
export interface Options {
  /** Pub/sub channel of the bus. Default `'ssekify:bus'`. */
  readonly channel?: string | undefined
  /** Heartbeat interval (`: ping` comment lines); 0: none. Default 15 000. */
  readonly keepAliveMs?: number | undefined
  /** Also send each heartbeat as a named event a page can listen to (no CR / LF / NUL, at most `maxEventNameLength`). Default: none. */
  readonly keepAliveEvent?: string | undefined
  /** `retry:` sent on connect: the browser's reconnect delay. Default 2 000. */
  readonly retryMs?: number | undefined
  /** Frames with an id kept per user for `Last-Event-ID` replay; 0: off. Default 20. */
  readonly recentBufferSize?: number | undefined
  /** Data → text. Default `JSON.stringify`. */
  readonly serializer?: ((data: unknown) => string | undefined) | undefined
  /** Largest serialized payload in bytes; larger messages are skipped with an `'error'`; 0: no limit. Default 1 MiB. */
  readonly maxPayloadBytes?: number | undefined
  /** Replay buffers of users inactive this long are dropped; 0: never. Default 30 min. */
  readonly recentTTLMs?: number | undefined
  /** Users with a replay buffer at most (least recently active evicted). Default 10 000. */
  readonly recentMaxUsers?: number | undefined
  /**
   * When set, a reconnect that cannot get everything it missed (the `Last-Event-ID` is
   * unknown, expired, evicted, or frames were sent while it was offline and not kept)
   * first gets this event with `{ lastEventId, reason }` (an event name: no CR / LF / NUL,
   * at most `maxEventNameLength`). Default: off (the wire of 0.1.6).
   */
  readonly replayGapEvent?: string | undefined
  /**
   * Keep frames sent to a user (with `sendToUser` / `publish` to the user) while the user
   * has no connection on this instance but still has a replay buffer, so a reconnect after
   * a short gap replays them. Default false: like 0.1.6, such frames are not recorded.
   */
  readonly replayOffline?: boolean | undefined
  /**
   * Where the replay buffer lives: `'memory'` (default, per instance) or `'redis'` (needs
   * the Redis transport: a reconnect to another instance still replays).
   */
  readonly replay?: "memory" | "redis" | undefined
  /** Key prefix of the Redis replay buffer. Default `'<channel>:replay:'`. */
  readonly replayKeyPrefix?: string | undefined
  /** Longest accepted `Last-Event-ID`; longer ones are ignored with an `'error'`. Default 1 024. */
  readonly maxLastEventIdLength?: number | undefined
  /** Automatic fields. Default: `{ timestamp: 'iso' }`. */
  readonly autoFields?: AutoFieldsOptions | undefined
  /** Automatic `seq` for data with a `requestId` / `streamId`. Default true. */
  readonly enableSeq?: boolean | undefined
  readonly seq?: SeqOptions | undefined
  /** This instance's id on the bus (origin dedup; part of `'timestamp'` frame ids, so no CR / LF / NUL). Default: random. */
  readonly instanceId?: string | undefined
  /** Connections this instance accepts at most; more get 503 + `Retry-After`. Default 0: no limit. */
  readonly maxConnections?: number | undefined
  /** Connections one user may hold on this instance. Default 0: no limit. */
  readonly maxConnectionsPerUser?: number | undefined
  /** Beyond `maxConnectionsPerUser`: refuse the new one with 429 (`'reject'`, default) or close the user's oldest (`'closeOldest'`). */
  readonly connectionLimitPolicy?: "reject" | "closeOldest" | undefined
  /** Rooms one connection may join. Default 1 024. */
  readonly maxRoomsPerConnection?: number | undefined
  /** Longest user id. Default 256. */
  readonly maxUserIdLength?: number | undefined
  /** Longest room name. Default 256. */
  readonly maxRoomNameLength?: number | undefined
  /** Longest event name. Default 256. */
  readonly maxEventNameLength?: number | undefined
  /** Longest frame id. Default 1 024. */
  readonly maxIdLength?: number | undefined
  /**
   * Sign bus messages with this key (HMAC-SHA256, at least 16 characters) and drop
   * unsigned or wrongly signed ones: whoever can publish on the Redis channel cannot
   * inject frames. Every instance on the channel needs the same key; instances of
   * 0.1.6 (unsigned) are then refused. Default: unsigned.
   */
  readonly busSecret?: string | Redacted.Redacted<string> | undefined
  /**
   * Cluster-wide presence (needs the Redis transport): `true` or `{ heartbeatMs, ttlMs }`.
   * Enables `{ scope: 'cluster' }` on `isUserOnline` / `getUserConnectionCount` and
   * `connectionLimitScope: 'cluster'`. See the `Presence` module. Default: off.
   */
  readonly presence?: boolean | PresenceOptions | undefined
  /**
   * Where `maxConnectionsPerUser` counts: `'instance'` (default) or `'cluster'` (turns
   * `presence` on; a registration then waits for one Redis round trip, see `Presence`).
   */
  readonly connectionLimitScope?: ConnectionLimitScope | undefined
}

/**
 * `shutdown` options.
 *
 * @since 0.2.0
 * @category models
 */
export interface ShutdownOptions {
  /** Send `{ code: 'SHUTDOWN', at }` to every connection first. Default true. */
  readonly announce?: boolean | undefined
  /** Event name of the announcement. Default `'server:shutdown'`. */
  readonly event?: string | undefined
  /** Wait this long before closing the connections. Default 5 000. */
  readonly graceMs?: number | undefined
}

/**
 * `stats()`: every field of the original, plus replay and bus counters.
 *
 * @since 0.2.0
 * @category models
 */
export interface Stats {
  readonly connections: number
  readonly users: number
  readonly rooms: number
  /** Frames written to connections (one per frame per connection). */
  readonly sent: number
  readonly droppedOldest: number
  readonly droppedNewest: number
  readonly disconnectedByBackpressure: number
  /** Largest queue seen (frames waiting for `'drain'`). */
  readonly queueItemsMax: number
  readonly queueBytesMax: number
  readonly errorCount: number
  readonly seqIncrsLocal: number
  readonly seqIncrsRedis: number
  /** Last fallback of the global seq to memory (epoch ms); 0: never. */
  readonly lastSeqKvFallbackAt: number
  /** Frames written by `Last-Event-ID` replays. */
  readonly replayed: number
  /** Reconnects whose `Last-Event-ID` was not found. */
  readonly replayMisses: number
  /** Messages this instance put on the bus. */
  readonly published: number
  /** Messages from other instances delivered here. */
  readonly received: number
  /**
   * Messages from the bus refused (`BUS_MESSAGE_INVALID`): malformed, over a field
   * limit, unsigned or forged on a signed bus, signed for another channel, replayed or
   * too old.
   */
  readonly busRejected: number
  /** False after `stopAccepting()` / `shutdown()`. */
  readonly accepting: boolean
}

/**
 * The events, by name, and what each carries.
 *
 * @since 0.2.0
 * @category models
 */
export interface SseKifyEventMap {
  readonly connect: { readonly userId: string; readonly connId: string }
  readonly disconnect: { readonly userId: string; readonly connId: string }
  /** A message from another instance arrived (the envelope as published). */
  readonly publish: Envelope.Envelope
  /** Once per delivery call. */
  readonly "message-sent":
    | { readonly scope: "user"; readonly userId: string; readonly count: number }
    | { readonly scope: "all"; readonly count: number }
    | { readonly scope: "room"; readonly room: string; readonly count: number }
  /** Frames dropped from a full queue (`dropPolicy` 'oldest' / 'newest'). */
  readonly drop: { readonly connId: string; readonly userId: string; readonly policy: Exclude<DropPolicy, "disconnect">; readonly frames: number }
  readonly error: SseKifyError | Error
}

/**
 * One event.
 *
 * @since 0.2.0
 * @category models
 */
export type SseKifyEvent = {
  readonly [K in keyof SseKifyEventMap]: { readonly type: K; readonly payload: SseKifyEventMap[K] }
}[keyof SseKifyEventMap]

/**
 * The service.
 *
 * @since 0.2.0
 * @category models
 */
export interface SseKifyService {
  /** This instance's id on the bus. */
  readonly instanceId: string
  /**
   * Turns a Node response into an SSE connection (headers, `retry:`, heartbeats,
   * replay after `Last-Event-ID`). It lives until the client goes or it is closed; see
   * `Connection.scoped` to tie it to a scope. Invalid input is answered with 400, a
   * stopped instance with 503 + `Retry-After`.
   */
  readonly registerConnection: (
    userId: string,
    res: NodeResponse,
    options?: RegisterOptions
  ) => Effect.Effect<ConnectionHandle, InvalidInput | ShuttingDown | LimitExceeded>
  /** Sends to the user's connections on this instance; the number of connections reached. */
  readonly sendToUser: (userId: string, data: unknown, opts?: SendOptions) => Effect.Effect<number, SendError>
  /** Sends to every connection on this instance. */
  readonly sendToAll: (data: unknown, opts?: SendOptions) => Effect.Effect<number, SendError>
  /** Sends to a room's connections on this instance. */
  readonly sendToRoom: (room: string, data: unknown, opts?: SendOptions) => Effect.Effect<number, SendError>
  /**
   * Delivers locally at once and publishes on the bus: to a user, or to everyone when
   * `userId` is omitted (`undefined`). `''`, `null` or any other non-id fails with
   * `InvalidInput` and sends nothing.
   */
  readonly publish: (
    data: unknown,
    userId?: string,
    opts?: SendOptions
  ) => Effect.Effect<void, SendError | TransportError | ShuttingDown>
  /** Delivers locally at once and publishes to a room on every instance. */
  readonly publishToRoom: (
    room: string,
    data: unknown,
    opts?: SendOptions
  ) => Effect.Effect<void, SendError | TransportError | ShuttingDown>
  /** Closes a user's connections, or all when `userId` is omitted; `''` / `null` fail with `InvalidInput`. */
  readonly close: (userId?: string) => Effect.Effect<void, InvalidInput>
  readonly stats: Effect.Effect<Stats>
  /**
   * Connections of a user on this instance; with `{ scope: 'cluster' }` (needs the
   * `presence` option) on every instance, from Redis.
   */
  readonly getUserConnectionCount: {
    (userId: string, query?: InstanceQuery): Effect.Effect<number>
    (userId: string, query: ClusterQuery): Effect.Effect<number, PresenceError>
  }
  readonly getUserConnectionIds: (userId: string) => Effect.Effect<ReadonlyArray<string>>
  readonly getAllUsersConnectionStats: Effect.Effect<Record<string, number>>
  /** Whether a user has a connection on this instance, or with `{ scope: 'cluster' }` anywhere. */
  readonly isUserOnline: {
    (userId: string, query?: InstanceQuery): Effect.Effect<boolean>
    (userId: string, query: ClusterQuery): Effect.Effect<boolean, PresenceError>
  }
  /** Forgets the replay buffer of a user, or of everyone when `userId` is omitted; `''` / `null` fail with `InvalidInput`. */
  readonly clearRecent: (userId?: string) => Effect.Effect<void, TransportError | InvalidInput>
  /** New connections get 503 + `Retry-After`; open ones stay. */
  readonly stopAccepting: Effect.Effect<void>
  /** Stop accepting, announce, wait `graceMs`, close every connection. */
  readonly shutdown: (options?: ShutdownOptions) => Effect.Effect<void>
  /**
   * Completes when the bus subscription is confirmed (at once without a bus, or on the
   * in-memory bus); a failed subscription is reported as an `'error'` and completes too.
   */
  readonly ready: Effect.Effect<void>
  /** Every event (`connect`, `disconnect`, `publish`, `message-sent`, `drop`, `error`). */
  readonly events: Stream.Stream<SseKifyEvent>
  /**
   * The events of the given types only. Frequent events nobody takes (`message-sent`,
   * one per send) then cost nothing: their payload is not even built.
   */
  readonly eventsOf: <K extends keyof SseKifyEventMap>(
    types: ReadonlyArray<K>
  ) => Stream.Stream<Extract<SseKifyEvent, { readonly type: K }>>
}

/**
 * The service tag.
 *
 * @since 0.2.0
 * @category tags
 */
export class SseKify extends Context.Tag("ssekify/SseKify")<SseKify, SseKifyService>() {}

/**
 * Options of the layer: the instance's options plus what happens when the layer's
 * scope closes.
 *
 * @since 0.2.0
 * @category models
 */
export interface LayerOptions extends Options {
  /** The shutdown run when the scope closes. Default: announce, 5 s grace. */
  readonly shutdown?: ShutdownOptions | undefined
}

/** @internal */
export const EngineKey: unique symbol = Symbol.for("ssekify/Engine")

/** @internal */
export interface Internal {
  /** Background timers do not keep the process alive (the facade). */
  readonly unrefTimers?: boolean
}

const fromEither = <A, E>(engine: Engine, either: Either.Either<A, E & (SseKifyError | Error)>): Effect.Effect<A, E> => {
  if (Either.isRight(either)) return Effect.succeed(either.right)
  engine.report(either.left)
  return Effect.fail(either.left)
}

const sendResult = (engine: Engine, result: number | SendError): Effect.Effect<number, SendError> => {
  if (typeof result === "number") return Effect.succeed(result)
  engine.report(result)
  return Effect.fail(result)
}

// Only an option the checks refused is an InvalidInput; anything else thrown while
// reading the options (a getter, a proxy) is a defect, not relabelled.
const resolveOptions = (options: Options | undefined) =>
  Effect.suspend(() => {
    try {
      return Effect.succeed(resolve(options))
    } catch (e) {
      return e instanceof InvalidInput ? Effect.fail(e) : Effect.die(e)
    }
  })

/**
 * Makes the service on the backends of the context, as `RateLimiter.make` takes its
 * store: the `Transport` (the bus), the `ReplayBuffer` and the `Sequencer` (see
 * {@link layerStores} for the defaults built from the options), and, when the options
 * ask for presence, a `Presence.Store`. What the stores report in the background (the
 * seq fallback warning, failed replay appends) becomes this instance's `'error'`
 * events. The scope owns the heartbeat tickers, the housekeeping sweep and the bus
 * subscription, and closing it runs the shutdown.
 *
 * @since 0.2.0
 * @category constructors
 */
export const make = (
  options?: LayerOptions,
  internal?: Internal
): Effect.Effect<
  SseKifyService,
  InvalidInput,
  Transport | ReplayBuffer.ReplayBuffer | Sequencer.Sequencer | Scope.Scope
> =>
  Effect.gen(function*() {
    const resolved = yield* resolveOptions(options)
    const transport = yield* Transport
    const clock = yield* Effect.clock
    const now = () => clock.unsafeCurrentTimeMillis()
    const runFork = yield* FiberSet.makeRuntime<never, void, never>()

    const timers = new Set<NodeJS.Timeout>()
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        for (const timer of timers) clearInterval(timer)
        timers.clear()
      })
    )
    const every = internal?.unrefTimers
      ? (ms: number, tick: () => void) => {
        const timer = setInterval(tick, ms)
        timer.unref()
        timers.add(timer)
        return () => {
          clearInterval(timer)
          timers.delete(timer)
        }
      }
      : (ms: number, tick: () => void) => {
        const fiber = runFork(Effect.forever(Effect.zipRight(Effect.sleep(ms), Effect.sync(tick))))
        return () => fiber.unsafeInterruptAsFork(FiberId.none)
      }

    // The stores: taken from the context; what they report goes to this instance.
    const sequencer = yield* Sequencer.Sequencer
    const replay = yield* ReplayBuffer.ReplayBuffer
    const presenceStore = yield* Effect.serviceOption(PresenceStore)

    const engine = new Engine({
      options: resolved,
      transport,
      replay,
      sequencer,
      now,
      every,
      fork: (effect) => void runFork(effect)
    })
    const e = engine
    if (sequencer.subscribeErrors !== undefined) yield* sequencer.subscribeErrors((warning) => e.report(warning))
    if (replay.subscribeErrors !== undefined) yield* replay.subscribeErrors((error) => e.report(error))
    // Before the shutdown finalizer below, so it is released after the connections closed.
    const presence = yield* Presence.make(e, presenceStore, every, now, refuse)

    // The bus subscription registers its handlers at once (synchronously: an in-process
    // bus sees the next publish) and may wait for the broker's confirmation in the
    // background; `ready` waits for it.
    const layerScope = yield* Effect.scope
    const runtime = yield* Effect.runtime<never>()
    const subscription = Runtime.runFork(runtime)(
      transport.subscribe(resolved.channel, {
        onMessage: (raw) => e.receive(raw),
        onError: (error) => e.report(error)
      }).pipe(Scope.extend(layerScope)),
      { immediate: true }
    )
    yield* Effect.addFinalizer(() => Fiber.interrupt(subscription))
    const ready = Effect.asVoid(Fiber.await(subscription))

    // One housekeeping ticker: replay TTL and idle seq keys.
    const sweepMs = Math.max(10_000, Math.min(resolved.recentTTLMs > 0 ? resolved.recentTTLMs : 60_000, resolved.seqTTLSeconds > 0 ? resolved.seqTTLSeconds * 1000 : 60_000, 60_000))
    const sweepNow = () => Effect.runSync(Effect.zipRight(sequencer.sweep, replay.sweep))
    const stopSweep = every(sweepMs, sweepNow)
    yield* Effect.addFinalizer(() => Effect.sync(stopSweep))

    // The layer's shutdown: also run when the HTTP server serving the platform endpoint
    // starts closing (see `ssekify/platform`), whichever is released first.
    e.layerShutdown = options?.shutdown
    yield* Effect.addFinalizer(() =>
      Effect.suspend(() => (e.closedForGood ? Effect.void : e.shutdown(options?.shutdown))).pipe(
        Effect.ensuring(Effect.sync(() => e.hub.stopTickers()))
      )
    )

    const service: SseKifyService & { readonly [EngineKey]: Engine } = {
      [EngineKey]: e,
      instanceId: e.instanceId,
      registerConnection: (userId, res, opts) => Effect.suspend(() => fromEither(e, e.register(userId, res, opts))),
      sendToUser: (userId, data, opts) => Effect.suspend(() => sendResult(e, e.sendToUser(userId, data, opts))),
      sendToAll: (data, opts) => Effect.suspend(() => sendResult(e, e.sendToAll(data, opts))),
      sendToRoom: (room, data, opts) => Effect.suspend(() => sendResult(e, e.sendToRoom(room, data, opts))),
      // Only an omitted user id means everyone: '' / null are refused by the engine.
      publish: (data, userId, opts) =>
        userId === undefined ? e.publish("all", undefined, data, opts) : e.publish("user", userId, data, opts),
      publishToRoom: (room, data, opts) => e.publish("room", room, data, opts),
      close: (userId) =>
        Effect.suspend(() => {
          const bad = e.close(userId)
          if (bad === undefined) return Effect.void
          e.report(bad)
          return Effect.fail(bad)
        }),
      stats: Effect.sync(() => e.stats()),
      getUserConnectionCount: ((userId: string, query?: { readonly scope?: PresenceScope | undefined }) =>
        query?.scope === "cluster"
          ? Presence.clusterCount(presence, "getUserConnectionCount", userId)
          : Effect.sync(() => e.userConnectionCount(userId))) as SseKifyService["getUserConnectionCount"],
      getUserConnectionIds: (userId) => Effect.sync(() => e.userConnectionIds(userId)),
      getAllUsersConnectionStats: Effect.sync(() => e.allUsersConnectionStats()),
      isUserOnline: ((userId: string, query?: { readonly scope?: PresenceScope | undefined }) =>
        query?.scope === "cluster"
          ? Effect.map(Presence.clusterCount(presence, "isUserOnline", userId), (n) => n > 0)
          : Effect.sync(() => e.userConnectionCount(userId) > 0)) as SseKifyService["isUserOnline"],
      clearRecent: (userId) =>
        Effect.suspend((): Effect.Effect<void, TransportError | InvalidInput> => {
          const bad = userId === undefined ? undefined : e.checkUserId(userId)
          if (bad === undefined) return replay.clear(userId)
          e.report(bad)
          return Effect.fail(bad)
        }),
      stopAccepting: Effect.sync(() => e.stopAccepting()),
      shutdown: (opts) => e.shutdown(opts),
      ready,
      events: eventsOf(e, undefined),
      eventsOf: (types) => eventsOf(e, new Set(types))
    }
    return service
  })

const eventsOf = <E extends SseKifyEvent>(engine: Engine, types: ReadonlySet<string> | undefined): Stream.Stream<E> =>
  Stream.asyncPush<E>(
    (emit) =>
      Effect.acquireRelease(
        Effect.sync(() =>
          engine.subscribe((event) => void emit.single(event as E), types === undefined ? undefined : (type) => types.has(type))
        ),
        (unsubscribe) => Effect.sync(unsubscribe)
      ),
    { bufferSize: "unbounded" }
  )

/**
 * The engine behind a service made by {@link make} (for the `SSEKify` facade).
 *
 * @internal
 */
export const unsafeEngine = (service: SseKifyService): Engine => (service as unknown as { readonly [EngineKey]: Engine })[EngineKey]

/**
 * The stores {@link make} takes, assembled from the options as the default backends:
 *
 * - `Sequencer`: one found in the context, else a sequencer on the `Sequencer.Store` of
 *   the context (global `seq`: `Transport.layerMemory`, a `RedisLike` adapter with
 *   `incr`, `RedisTransport.layer`) or on `seq.redis`, else in memory (with one
 *   `SEQ_KV_FALLBACK` warning when a bus is configured); `seq.redis: null` forces memory.
 * - `ReplayBuffer`: one found in the context, else `replay: 'redis'` on the
 *   `ReplayBuffer.Store` of the context (`InvalidInput` without one), else
 *   `ReplayBuffer.layerMemory` from `recentBufferSize`, `recentTTLMs`,
 *   `recentMaxUsers`, `replayOffline`.
 *
 * Their state belongs to this layer's scope.
 *
 * @since 0.2.0
 * @category layers
 */
export const layerStores = (
  options?: Options
): Layer.Layer<ReplayBuffer.ReplayBuffer | Sequencer.Sequencer, InvalidInput, Transport> =>
  Layer.scopedContext(Effect.gen(function*() {
    const resolved = yield* resolveOptions(options)
    const transport = yield* Transport
    const sequencer = yield* Option.match(yield* Effect.serviceOption(Sequencer.Sequencer), {
      onSome: Effect.succeed,
      onNone: () =>
        Effect.flatMap(Effect.serviceOption(Sequencer.Store), (store) =>
          Sequencer.make({
            startAt: resolved.seqStartAt,
            ttlSeconds: resolved.seqTTLSeconds,
            maxKeys: resolved.seqMaxKeys,
            keyPrefix: resolved.seqKeyPrefix,
            kv: resolved.seqKv === undefined
              ? Option.getOrUndefined(store)
              : resolved.seqKv === null
              ? undefined
              : Sequencer.kvFromIncr(resolved.seqKv),
            expectKv: transport.kind !== "none"
          }))
    })
    const replay = yield* Option.match(yield* Effect.serviceOption(ReplayBuffer.ReplayBuffer), {
      onSome: Effect.succeed,
      onNone: () =>
        resolved.replay === "redis"
          ? Effect.flatMap(Effect.serviceOption(ReplayBuffer.Store), (store) =>
            Option.match(store, {
              onNone: () =>
                Effect.fail(
                  new InvalidInput({
                    field: "replay",
                    reason: "'redis' needs the Redis transport (a Redis URL, createIORedisAdapter(...) or RedisTransport.layer)"
                  })
                ),
              onSome: (store) =>
                ReplayBuffer.makeRedis(store, {
                  size: resolved.recentBufferSize,
                  ttlMs: resolved.recentTTLMs,
                  keyPrefix: resolved.replayKeyPrefix ?? `${resolved.channel}:replay:`
                })
            }))
          : ReplayBuffer.makeMemory({
            size: resolved.recentBufferSize,
            ttlMs: resolved.recentTTLMs,
            maxUsers: resolved.recentMaxUsers,
            recordOffline: resolved.replayOffline
          })
    })
    return Context.make(ReplayBuffer.ReplayBuffer, replay).pipe(Context.add(Sequencer.Sequencer, sequencer))
  }))

/**
 * The service as a layer: {@link make} on {@link layerStores}. Provide a `Transport`
 * layer (`Transport.layerNone` for a single instance, `Transport.layerMemory(bus)`,
 * `RedisTransport.layer(...)`); a `ReplayBuffer`, `Sequencer` or store provided with
 * it is used instead of the default.
 *
 * @since 0.2.0
 * @category layers
 */
export const layer = (options?: LayerOptions): Layer.Layer<SseKify, InvalidInput, Transport> =>
  Layer.scoped(SseKify, make(options)).pipe(Layer.provide(layerStores(options)))

/**
 * The service with options from a `Config` (e.g. `Config.all({ channel: Config.string("SSE_CHANNEL") })`).
 *
 * @since 0.2.0
 * @category layers
 */
export const layerConfig = (
  config: Config.Config<LayerOptions>
): Layer.Layer<SseKify, InvalidInput | ConfigError.ConfigError, Transport> =>
  Layer.unwrapEffect(Effect.map(config, (options) => layer(options)))

/**
 * The options most deployments set, from the environment: `SSEKIFY_CHANNEL`,
 * `SSEKIFY_KEEP_ALIVE_MS`, `SSEKIFY_RETRY_MS`, `SSEKIFY_RECENT_BUFFER_SIZE`,
 * `SSEKIFY_RECENT_TTL_MS`, `SSEKIFY_RECENT_MAX_USERS`, `SSEKIFY_MAX_PAYLOAD_BYTES`,
 * `SSEKIFY_REPLAY_GAP_EVENT`, `SSEKIFY_SHUTDOWN_GRACE_MS`. Unset variables keep the
 * defaults.
 *
 * @since 0.2.0
 * @category config
 */
export const envConfig: Config.Config<LayerOptions> = Config.all({
  channel: Config.option(Config.string("SSEKIFY_CHANNEL")),
  keepAliveMs: Config.option(Config.integer("SSEKIFY_KEEP_ALIVE_MS")),
  retryMs: Config.option(Config.integer("SSEKIFY_RETRY_MS")),
  recentBufferSize: Config.option(Config.integer("SSEKIFY_RECENT_BUFFER_SIZE")),
  recentTTLMs: Config.option(Config.integer("SSEKIFY_RECENT_TTL_MS")),
  recentMaxUsers: Config.option(Config.integer("SSEKIFY_RECENT_MAX_USERS")),
  maxPayloadBytes: Config.option(Config.integer("SSEKIFY_MAX_PAYLOAD_BYTES")),
  replayGapEvent: Config.option(Config.string("SSEKIFY_REPLAY_GAP_EVENT")),
  graceMs: Config.option(Config.integer("SSEKIFY_SHUTDOWN_GRACE_MS"))
}).pipe(
  Config.map(({ graceMs, ...rest }): LayerOptions => {
    const out: Record<string, unknown> = {}
    for (const [key, value] of Object.entries(rest) as Array<[string, Option.Option<unknown>]>) {
      if (Option.isSome(value)) out[key] = value.value
    }
    if (Option.isSome(graceMs)) out.shutdown = { graceMs: graceMs.value }
    return out as LayerOptions
  })
)

/**
 * The app-facing layer: {@link layer} with the options of {@link envConfig}. Needs a
 * `Transport`.
 *
 * @since 0.2.0
 * @category layers
 */
export const SseKifyLive: Layer.Layer<SseKify, InvalidInput | ConfigError.ConfigError, Transport> = layerConfig(envConfig)

/**
 * The service for tests: no shutdown grace (`shutdown.graceMs` 0 unless given), on an
 * in-memory bus (`bus`, else a new one per build: pass one bus to several `layerTest`
 * layers and they talk as instances on Redis would). Needs nothing; its release
 * finishes at once, under `TestClock` too (`it.scoped`, `it.effect`).
 *
 * ```ts
 * it.scoped("notifies alice", () =>
 *   Effect.gen(function*() {
 *     const sse = yield* SseKify.SseKify
 *     expect(yield* sse.sendToUser("alice", { hi: 1 })).toBe(0)
 *   }).pipe(Effect.provide(SseKify.layerTest())))
 * ```
 *
 * @since 0.2.0
 * @category layers
 */
export const layerTest = (options?: LayerOptions, bus?: MemoryBus): Layer.Layer<SseKify, InvalidInput> =>
  layer({ ...options, shutdown: { graceMs: 0, ...options?.shutdown } }).pipe(
    Layer.provide(Layer.suspend(() => layerMemory(bus ?? createMemoryBus())))
  )
