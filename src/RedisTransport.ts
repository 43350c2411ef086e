/**
 * The Redis backend in one layer: ssekify instances in several processes exchange
 * messages through Redis Pub/Sub and share the global `seq` counters, the replay store
 * (`replay: 'redis'`) and the presence store (`presence`).
 *
 * {@link layer} is one `RedisConnection` (publisher, subscriber and KV ioredis
 * connections of a URL, client, Cluster or Sentinel) with every Redis backend on it:
 * `TransportRedis.layer` (`Transport`), `SequencerRedis.layerStore` (`Sequencer.Store`),
 * `ReplayBufferRedis.layerStore` (`ReplayBuffer.Store`) and `PresenceRedis.layerStore`
 * (`Presence.Store`). `SseKify.layer` picks the stores up from the context. Compose
 * the sub-modules yourself to take only some of them.
 *
 * Built on ioredis (an optional peer dependency: `npm i ioredis`). Redis down at start
 * or mid-traffic never fails the layer or crashes the process (see `RedisConnection`).
 *
 * ```ts
 * import { Layer } from "effect"
 * import { SseKify } from "ssekify"
 * import { RedisTransport } from "ssekify/redis"
 *
 * const Live = SseKify.layer({ channel: "app:sse" }).pipe(
 *   Layer.provide(RedisTransport.layer({ url: "redis://127.0.0.1:6379" }))
 * )
 * ```
 *
 * @since 0.2.0
 */
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import { InvalidInput } from "./Errors.js"
import { connectionOf } from "./internal/redis/connection.js"
import * as Presence from "./Presence.js"
import * as PresenceRedis from "./Presence/Redis.js"
import * as RedisConnection from "./RedisConnection.js"
import * as ReplayBuffer from "./ReplayBuffer.js"
import * as ReplayBufferRedis from "./ReplayBuffer/Redis.js"
import * as Sequencer from "./Sequencer.js"
import * as SequencerRedis from "./Sequencer/Redis.js"
import { fromRedisLike, layerRedisLike, type RedisLike, Transport, type TransportService } from "./Transport.js"
import * as TransportRedis from "./Transport/Redis.js"

export type {
  ClientOptions,
  ClusterConnectionOptions,
  CommonOptions,
  Options,
  SentinelOptions,
  UrlOptions
} from "./RedisConnection.js"

/**
 * `RedisConnection.config`: the connection read from the environment.
 *
 * @since 0.2.0
 * @category config
 */
export const config = RedisConnection.config

/**
 * `RedisConnection.parseHostPorts`.
 *
 * @since 0.2.0
 * @category config
 */
export const parseHostPorts = RedisConnection.parseHostPorts

/**
 * The stores of one Redis connection (counters, replay lists, presence), for direct use.
 *
 * @since 0.2.0
 * @category models
 */
export interface RedisKv extends Sequencer.Kv, ReplayBuffer.ListStore {
  readonly presence: Presence.PresenceStore
}

/**
 * What {@link make} returns: the transport, and the stores of its connection (`kv`,
 * always `Some`; typed here, never looked for by `SseKify`).
 *
 * @since 0.2.0
 * @category models
 */
export interface RedisTransportService extends TransportService {
  readonly kv: Option.Option<RedisKv>
}

/**
 * Every Redis service of one connection.
 *
 * @since 0.2.0
 * @category models
 */
export type Services = Transport | Sequencer.Store | ReplayBuffer.Store | Presence.Store

const storesOf = (connection: RedisConnection.RedisConnectionService): RedisKv => ({
  ...SequencerRedis.makeStoreWith(connection),
  ...ReplayBufferRedis.makeStoreWith(connection),
  presence: PresenceRedis.makeStoreWith(connection)
})

const onConnection = (
  connection: RedisConnection.RedisConnectionService,
  routing?: TransportRedis.RoutingOptions
): Effect.Effect<RedisTransportService, never, Scope.Scope> =>
  Effect.map(
    TransportRedis.makeWith(connection, routing),
    (transport) => ({ ...transport, kv: Option.some(storesOf(connection)) })
  )

/**
 * The options of {@link make} and {@link layer}: the connection's, plus how the
 * transport routes (`routing: "user"`, `sharded`; see `TransportRedis.RoutingOptions`).
 *
 * @since 0.3.0
 * @category models
 */
export type LayerOptions = RedisConnection.Options & TransportRedis.RoutingOptions

/**
 * Opens a connection and returns the transport with the connection's stores; the
 * connection is closed when the scope closes.
 *
 * @since 0.2.0
 * @category constructors
 */
export const make = (options: LayerOptions): Effect.Effect<RedisTransportService, never, Scope.Scope> =>
  Effect.flatMap(RedisConnection.make(options), (connection) => onConnection(connection, options))

/**
 * Every Redis backend on the `RedisConnection` of the context.
 *
 * @since 0.2.0
 * @category layers
 */
export const layerServices: Layer.Layer<Services, never, RedisConnection.RedisConnection> = Layer.mergeAll(
  TransportRedis.layer,
  SequencerRedis.layerStore,
  ReplayBufferRedis.layerStore,
  PresenceRedis.layerStore
)

/**
 * {@link layerServices} with the transport routed as `routing` says.
 *
 * @since 0.3.0
 * @category layers
 */
export const layerServicesWith = (
  routing: TransportRedis.RoutingOptions
): Layer.Layer<Services, never, RedisConnection.RedisConnection> =>
  Layer.mergeAll(
    TransportRedis.layerWith(routing),
    SequencerRedis.layerStore,
    ReplayBufferRedis.layerStore,
    PresenceRedis.layerStore
  )

const routingIn = (options: TransportRedis.RoutingOptions | undefined): TransportRedis.RoutingOptions => ({
  ...(options?.routing !== undefined ? { routing: options.routing } : {}),
  ...(options?.sharded !== undefined ? { sharded: options.sharded } : {})
})

/**
 * One connection and every Redis backend on it; `routing: "user"` routes per user and
 * room (sharded Pub/Sub on a Cluster unless `sharded: false`).
 *
 * ```ts
 * RedisTransport.layer({ url: "redis://127.0.0.1:6379" })
 * RedisTransport.layer({ url: "redis://127.0.0.1:6379", routing: "user" })
 * RedisTransport.layer({ client: existingIORedisClient })
 * RedisTransport.layer({ cluster: [{ host: "10.0.0.1", port: 7000 }], password })
 * RedisTransport.layer({ sentinel: { sentinels: [{ host: "10.0.0.5", port: 26379 }], name: "mymaster" } })
 * ```
 *
 * @since 0.2.0
 * @category layers
 */
export const layer = (options: LayerOptions): Layer.Layer<Services> =>
  layerServicesWith(routingIn(options)).pipe(Layer.provide(RedisConnection.layer(options)))

/**
 * {@link layer} with options from a `Config`: each option its own config, as
 * `Config.Wrap` allows (`layerConfig({ url: Config.redacted("MY_REDIS_URL") })`), or
 * one `Config` of the whole options. Without an argument, {@link config}: the
 * `REDIS_*` variables.
 *
 * ```ts
 * RedisTransport.layerConfig({ url: Config.redacted("REDIS_URL"), commandTimeout: Config.duration("REDIS_TIMEOUT") })
 * RedisTransport.layerConfig() // REDIS_URL / REDIS_CLUSTER_NODES / REDIS_SENTINELS, REDIS_PASSWORD
 * ```
 *
 * @since 0.2.0
 * @category layers
 */
export const layerConfig = (
  options: Config.Config.Wrap<LayerOptions> = RedisConnection.config
): Layer.Layer<Services, ConfigError.ConfigError> =>
  Layer.unwrapEffect(Effect.map(Config.unwrap(options), layer))

/**
 * {@link layer} on the `REDIS_*` variables (see `RedisConnection.config`), plus the
 * common options the environment does not give (what `layerConfig(options)` did in
 * 0.2.0) and the routing.
 *
 * @since 0.3.0
 * @category layers
 */
export const layerFromEnv = (
  options?: RedisConnection.CommonOptions & TransportRedis.RoutingOptions
): Layer.Layer<Services, ConfigError.ConfigError> =>
  layerConfig(Config.map(RedisConnection.config, (fromEnv): LayerOptions => ({ ...options, ...fromEnv })))

/**
 * The options of {@link fromAdapter} and {@link layerAdapter}.
 *
 * @since 0.3.0
 * @category models
 */
export interface AdapterOptions extends TransportRedis.RoutingOptions {
  /** Close the adapter when the scope closes. */
  readonly closeOnRelease?: boolean
}

const foreignAdapter = () =>
  new InvalidInput({
    field: "routing",
    reason: "'user' needs the Redis transport (a Redis URL, createIORedisAdapter(...) or RedisTransport.layer), not a RedisLike adapter"
  })

/** The routing of `options` when they say one, else the one the adapter was made with. */
const adapterRouting = (adapter: RedisLike, options: AdapterOptions | undefined): TransportRedis.RoutingOptions =>
  options?.routing !== undefined ? routingIn(options) : routingIn(connectionOf(adapter)?.routing)

/**
 * A transport on a `RedisLike` adapter. An adapter made by `createIORedisAdapter`
 * carries its connection: the full Redis transport is built on it (bounded `publish`,
 * deduplicated error reporting) with its stores. Any other adapter gets the generic
 * `Transport.fromRedisLike` (`kv`: none).
 *
 * With `closeOnRelease`, the adapter's `close()` runs when the scope closes (what the
 * original `shutdown()` did); otherwise the adapter stays open.
 *
 * `routing: "user"` (here, or given to `createIORedisAdapter`; here wins) routes per
 * user and room; it needs an adapter made by `createIORedisAdapter`: the effect dies
 * with `InvalidInput` for any other.
 *
 * @since 0.2.0
 * @category constructors
 */
export const fromAdapter = (
  adapter: RedisLike,
  options?: AdapterOptions
): Effect.Effect<RedisTransportService, never, Scope.Scope> =>
  Option.match(RedisConnection.fromAdapter(adapter), {
    onNone: () =>
      options?.routing === "user"
        ? Effect.die(foreignAdapter())
        : Effect.map(fromRedisLike(adapter, options), (t) => ({ ...t, kv: Option.none() })),
    onSome: (connection) =>
      Effect.gen(function*() {
        if (options?.closeOnRelease && typeof adapter.close === "function") {
          const close = adapter.close.bind(adapter)
          // a user's adapter may throw or reject on close: neither may fail the scope's release
          yield* Effect.addFinalizer(() => Effect.ignore(Effect.tryPromise(async () => close())))
        }
        return yield* Effect.flatMap(connection, (c) => onConnection(c, adapterRouting(adapter, options)))
      })
  })

/**
 * The transport of a `RedisLike` adapter, with the stores it has: on a
 * `createIORedisAdapter` adapter, every Redis backend on its connection (`Transport`,
 * `Sequencer.Store`, `ReplayBuffer.Store`, `Presence.Store`); on any other,
 * `Transport.layerRedisLike` (a `Sequencer.Store` when the adapter has `incr` /
 * `expire`). The layer's type names what every adapter gives.
 *
 * @throws InvalidInput with `routing: "user"` on an adapter not made by
 * `createIORedisAdapter` (it cannot subscribe per user in one command).
 *
 * @since 0.2.0
 * @category layers
 */
export const layerAdapter = (
  adapter: RedisLike,
  options?: AdapterOptions
): Layer.Layer<Transport> =>
  Option.match(RedisConnection.fromAdapter(adapter), {
    onNone: () => {
      if (options?.routing === "user") throw foreignAdapter()
      return layerRedisLike(adapter, options)
    },
    onSome: () =>
      Layer.scopedContext(
        Effect.flatMap(fromAdapter(adapter, options), (t) =>
          Option.match(t.kv, {
            onNone: () => Effect.succeed(Context.make(Transport, t)),
            onSome: (kv) =>
              Effect.succeed(
                Context.make(Transport, t).pipe(
                  Context.add(Sequencer.Store, kv),
                  Context.add(ReplayBuffer.Store, kv),
                  Context.add(Presence.Store, kv.presence)
                )
              )
          }))
      )
  })

/**
 * `true` when `adapter` was made by `createIORedisAdapter` (so {@link fromAdapter}
 * builds the full Redis transport on its connection).
 *
 * @since 0.2.0
 * @category guards
 */
export const isIORedisAdapter = (adapter: unknown): boolean => connectionOf(adapter) !== undefined

/**
 * The {@link RedisKv} of a transport made by {@link make} or {@link fromAdapter}.
 *
 * @since 0.2.0
 * @category accessors
 */
export const redisKv = (transport: RedisTransportService): Option.Option<RedisKv> => transport.kv
