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
import * as Layer from "effect/Layer"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type {
  ConnectionHandle,
  Endpoint,
  NodeResponse,
  Options,
  QueueSnapshot,
  RegisterOptions,
  SendOptions,
  ShutdownOptions,
  SseKifyEvent,
  SseKifyEventMap,
  Stats
} from "./internal/domain.js"
import {
  InvalidInput,
  type LimitExceeded,
  type SendError,
  type SseKifyError,
  type ShuttingDown,
  type TransportError
} from "./Errors.js"
import * as internalEnv from "./internal/envConfig.js"
import * as internal from "./internal/sseKify.js"
import type { SubscribeOptions, Subscription } from "./internal/subscribe.js"
import type { ClusterQuery, InstanceQuery, PresenceError } from "./Presence.js"
import * as ReplayBuffer from "./ReplayBuffer.js"
import * as Sequencer from "./Sequencer.js"
import { createMemoryBus, layerMemory, type MemoryBus, Transport } from "./Transport.js"

export type { SubscribeOptions, Subscription } from "./internal/subscribe.js"
export type {
  Admission,
  AutoField,
  AutoFieldsOptions,
  TraceIdField,
  ConnectionSink,
  Endpoint,
  FrameIdPolicy,
  Options,
  QueueSnapshot,
  SendOptions,
  SeqOptions,
  ShutdownOptions,
  SseKifyEvent,
  SseKifyEventMap,
  Stats
} from "./internal/domain.js"

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
  /**
   * A subscription to the events (of the given types only, else all) for the lifetime
   * of the current `Scope`: once this effect has completed, every event emitted is in
   * the queue, also one emitted before the consumer first takes (`events` / `eventsOf`
   * subscribe only when the stream starts running, e.g. some time after a
   * `forkScoped`). The queue is unbounded unless `options.capacity` bounds it (then a
   * new event replaces the oldest waiting one, counted in `dropped`); it is shut down and
   * the listener removed when the scope closes. Types not asked for cost nothing (their
   * payload is not built).
   *
   * ```ts
   * const errors = yield* service.subscribe(["error"])
   * yield* Effect.ignore(service.sendToUser("", "x"))
   * const event = yield* Queue.take(errors) // the INVALID_INPUT error, never missed
   * ```
   */
  readonly subscribe: {
    <K extends keyof SseKifyEventMap>(
      types: ReadonlyArray<K>,
      options?: SubscribeOptions
    ): Effect.Effect<Subscription<Extract<SseKifyEvent, { readonly type: K }>>, never, Scope.Scope>
    (types?: undefined, options?: SubscribeOptions): Effect.Effect<Subscription<SseKifyEvent>, never, Scope.Scope>
  }
  /**
   * Turns a Node response into an SSE connection for the lifetime of the current
   * `Scope` (the primary form in the Effect API): closing the scope removes the
   * connection everywhere and ends the response; the client leaving first removes it at
   * once, and the scope's finalizer then has nothing to do. Refusals as
   * `registerConnection`.
   */
  readonly connect: (
    userId: string,
    res: NodeResponse,
    options?: RegisterOptions
  ) => Effect.Effect<ConnectionHandle, InvalidInput | ShuttingDown | LimitExceeded, Scope.Scope>
  /**
   * `registerConnection` without an effect, for skins whose API is synchronous (the
   * `SSEKify` facade): a refusal is answered on the response (400 / 429 / 503) and
   * returned, and nothing is reported (the caller decides, see `unsafeReport`).
   */
  readonly unsafeRegisterConnection: (
    userId: string,
    res: NodeResponse,
    options?: RegisterOptions
  ) => Either.Either<ConnectionHandle, InvalidInput | ShuttingDown | LimitExceeded>
  /**
   * `sendToUser` without an effect (as `Queue.unsafeOffer`): the number of connections
   * reached, or the error; nothing is reported (see `unsafeReport`).
   */
  readonly unsafeSendToUser: (userId: string, data: unknown, opts?: SendOptions) => number | SendError
  /** `sendToAll` without an effect; nothing is reported. */
  readonly unsafeSendToAll: (data: unknown, opts?: SendOptions) => number | SendError
  /** `sendToRoom` without an effect; nothing is reported. */
  readonly unsafeSendToRoom: (room: string, data: unknown, opts?: SendOptions) => number | SendError
  /** Reports an error as an `'error'` event (counted in `stats().errorCount`). */
  readonly unsafeReport: (error: SseKifyError) => void
  /**
   * Calls `listener` synchronously with every event `wants` takes (all when omitted)
   * until the returned function is called. Events `wants` refuses are not built.
   */
  readonly unsafeSubscribe: (
    listener: (event: SseKifyEvent) => void,
    wants?: (type: keyof SseKifyEventMap) => boolean
  ) => () => void
  /** The connections' write queues now (for metrics). */
  readonly unsafeQueueSnapshot: () => QueueSnapshot
  /**
   * Calls `observer` with each delivery-latency sample, in seconds (see
   * `Metrics.deliveryLatency`), until the returned function is called. No clock is
   * read while nobody observes.
   */
  readonly unsafeObserveLatency: (observer: (seconds: number) => void) => () => void
  /**
   * For SSE endpoints built on the service (`ssekify/platform` is one): the
   * registration path of `registerConnection` split into admit, then attach on the
   * endpoint's sink; and the instance's shutdown, for endpoints that tie it to their server.
   */
  readonly endpoint: Endpoint
}

/**
 * The service tag.
 *
 * @since 0.2.0
 * @category tags
 */
export class SseKify extends Context.Tag("ssekify/SseKify")<SseKify, SseKifyService>() {}

/**
 * Turns a Node response into an SSE connection for the lifetime of the current scope
 * (see `SseKifyService.connect`): closing the scope removes the connection everywhere
 * and ends the response; a client leaving first removes it at once.
 *
 * ```ts
 * Effect.scoped(Effect.gen(function*() {
 *   const handle = yield* SseKify.connect("alice", res, { rooms: ["news"] })
 *   yield* Effect.never // the connection lives until this scope closes
 * }))
 * ```
 *
 * @since 0.2.0
 * @category constructors
 */
export const connect = (
  userId: string,
  res: NodeResponse,
  options?: RegisterOptions
): Effect.Effect<ConnectionHandle, InvalidInput | ShuttingDown | LimitExceeded, SseKify | Scope.Scope> =>
  Effect.flatMap(SseKify, (sse) => sse.connect(userId, res, options))

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
  options?: LayerOptions
): Effect.Effect<
  SseKifyService,
  InvalidInput,
  Transport | ReplayBuffer.ReplayBuffer | Sequencer.Sequencer | Scope.Scope
> => internal.make(options)

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
): Layer.Layer<ReplayBuffer.ReplayBuffer | Sequencer.Sequencer, InvalidInput, Transport> => internal.layerStores(options)

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
 * The service with options from a `Config`: each option its own config, as
 * `Config.Wrap` allows (`layerConfig({ channel: Config.string("SSE_CHANNEL"), busSecret:
 * Config.redacted("SSE_BUS_SECRET") })`), or one `Config` of the whole options
 * (`layerConfig(SseKify.envConfig)`).
 *
 * @since 0.2.0
 * @category layers
 */
export const layerConfig = (
  config: Config.Config.Wrap<LayerOptions>
): Layer.Layer<SseKify, InvalidInput | ConfigError.ConfigError, Transport> =>
  Layer.unwrapEffect(Effect.map(Config.unwrap(config), (options) => layer(options)))

/**
 * Every scalar option from the environment (or any `ConfigProvider`); unset variables
 * keep the defaults. Times are milliseconds (seconds for `*_SECONDS`), given to the
 * layer as `DurationInput`s (so a negative one is `InvalidInput` when the layer is built).
 *
 * | variable | option |
 * | --- | --- |
 * | `SSEKIFY_CHANNEL` | `channel` |
 * | `SSEKIFY_KEEP_ALIVE_MS` | `keepAlive` |
 * | `SSEKIFY_KEEP_ALIVE_EVENT` | `keepAliveEvent` |
 * | `SSEKIFY_RETRY_MS` | `retry` |
 * | `SSEKIFY_RECENT_BUFFER_SIZE` | `recentBufferSize` |
 * | `SSEKIFY_MAX_PAYLOAD_BYTES` | `maxPayloadBytes` |
 * | `SSEKIFY_RECENT_TTL_MS` | `recentTTL` |
 * | `SSEKIFY_RECENT_MAX_USERS` | `recentMaxUsers` |
 * | `SSEKIFY_REPLAY_GAP_EVENT` | `replayGapEvent` |
 * | `SSEKIFY_REPLAY_OFFLINE` | `replayOffline` |
 * | `SSEKIFY_REPLAY` (`memory` / `redis`) | `replay` |
 * | `SSEKIFY_REPLAY_KEY_PREFIX` | `replayKeyPrefix` |
 * | `SSEKIFY_MAX_LAST_EVENT_ID_LENGTH` | `maxLastEventIdLength` |
 * | `SSEKIFY_ENABLE_SEQ` | `enableSeq` |
 * | `SSEKIFY_INSTANCE_ID` | `instanceId` |
 * | `SSEKIFY_MAX_CONNECTIONS`, `SSEKIFY_MAX_CONNECTIONS_PER_USER` | `maxConnections`, `maxConnectionsPerUser` |
 * | `SSEKIFY_CONNECTION_LIMIT_POLICY`, `SSEKIFY_CONNECTION_LIMIT_SCOPE` | `connectionLimitPolicy`, `connectionLimitScope` |
 * | `SSEKIFY_MAX_ROOMS_PER_CONNECTION`, `SSEKIFY_MAX_USER_ID_LENGTH`, `SSEKIFY_MAX_ROOM_NAME_LENGTH`, `SSEKIFY_MAX_EVENT_NAME_LENGTH`, `SSEKIFY_MAX_ID_LENGTH` | the `max*Length` limits |
 * | `SSEKIFY_BUS_SECRET` (read as `Redacted`) | `busSecret` |
 * | `SSEKIFY_PRESENCE`, `SSEKIFY_PRESENCE_HEARTBEAT_MS`, `SSEKIFY_PRESENCE_TTL_MS`, `SSEKIFY_PRESENCE_KEY_PREFIX` | `presence` (`false` wins; a setting alone turns it on) |
 * | `SSEKIFY_SEQ_START_AT`, `SSEKIFY_SEQ_FIELD_NAME`, `SSEKIFY_SEQ_FRAME_ID_POLICY`, `SSEKIFY_SEQ_REDIS_KEY_PREFIX`, `SSEKIFY_SEQ_REDIS_TTL_SECONDS`, `SSEKIFY_SEQ_MAX_KEYS` | `seq.*` |
 * | `SSEKIFY_AUTO_TIMESTAMP` (`iso` / `epochMs` / `false`) | `autoFields.timestamp` |
 * | `SSEKIFY_SHUTDOWN_GRACE_MS`, `SSEKIFY_SHUTDOWN_ANNOUNCE`, `SSEKIFY_SHUTDOWN_EVENT` | `shutdown.*` |
 *
 * @since 0.2.0
 * @category config
 */
export const envConfig: Config.Config<LayerOptions> = internalEnv.envConfig

/**
 * The app-facing layer: {@link layer} with the options of {@link envConfig}. Needs a
 * `Transport`.
 *
 * @since 0.2.0
 * @category layers
 */
export const SseKifyLive: Layer.Layer<SseKify, InvalidInput | ConfigError.ConfigError, Transport> = layerConfig(envConfig)

const testShutdown = (shutdown: ShutdownOptions | undefined): ShutdownOptions =>
  shutdown?.grace !== undefined || shutdown?.graceMs !== undefined ? shutdown : { ...shutdown, graceMs: 0 }

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
  layer({ ...options, shutdown: testShutdown(options?.shutdown) }).pipe(
    Layer.provide(Layer.suspend(() => layerMemory(bus ?? createMemoryBus())))
  )
