/**
 * The Redis backend of `Transport`: Pub/Sub on a `RedisConnection` (its publisher and
 * subscriber connections).
 *
 * - `publish` waits at most `offlineTimeout` for a reconnecting connection and then
 *   fails with `TransportError`; messages published within one tick leave in one
 *   pipeline; on a Cluster every message of a channel goes to one master (in order).
 * - the subscriber's connection errors go to the subscriptions' `onError`: the loss of
 *   the connection once, then each distinct error once per outage; a subscription
 *   Redis does not confirm within `subscribeTimeout` is reported and completes in the
 *   background.
 *
 * - with `routing: "user"` ({@link layerWith}) it also has the routed channels
 *   (`Transport.RoutedChannels`): the per-user and per-room channels the instance holds,
 *   counted, the subscribes and unsubscribes of one tick in one command; on a Redis
 *   Cluster (Redis ≥ 7) they are sharded (`SSUBSCRIBE` / `SPUBLISH`: a message stays on
 *   the master that owns its channel's slot) and follow failovers and slot moves.
 *
 * ```ts
 * const Bus = TransportRedis.layer.pipe(Layer.provide(RedisConnection.layer({ url })))
 * const Routed = TransportRedis.layerWith({ routing: "user" }).pipe(Layer.provide(RedisConnection.layer({ url })))
 * ```
 *
 * @since 0.2.0
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import { isCluster } from "../internal/redis/clients.js"
import * as Internal from "../internal/redis/transport.js"
import { RedisConnection, type RedisConnectionService } from "../RedisConnection.js"
import type * as TransportModule from "../Transport.js"
import { Transport, type TransportService } from "../Transport.js"

/**
 * The routing options of the Redis transport (defined in `Transport`, so the main
 * entry's `createIORedisAdapter` options carry them without importing ioredis' types).
 *
 * @since 0.3.0
 * @category models
 */
export type RoutingOptions = TransportModule.RoutingOptions

const routingOf = (connection: RedisConnectionService, options: RoutingOptions | undefined): Internal.Routing => {
  if (options?.routing !== "user") return { routed: undefined }
  const sharded = options.sharded ?? "auto"
  const on = sharded === "auto" ? isCluster(connection.subscriber) : sharded
  return { routed: on ? "sharded" : "classic" }
}

/**
 * The transport on `connection`; its listeners are removed when the scope closes (the
 * connection itself belongs to whoever acquired it).
 *
 * @since 0.2.0
 * @category constructors
 */
export const makeWith = (
  connection: RedisConnectionService,
  options?: RoutingOptions
): Effect.Effect<TransportService, never, Scope.Scope> =>
  Effect.map(
    Effect.acquireRelease(
      Effect.sync(() => Internal.make(connection, routingOf(connection, options))),
      (built) => Effect.sync(built.release)
    ),
    (built) => built.service
  )

/**
 * The transport on the `RedisConnection` of the context (`routing: "channel"`).
 *
 * @since 0.2.0
 * @category constructors
 */
export const make: Effect.Effect<TransportService, never, RedisConnection | Scope.Scope> = Effect.flatMap(
  RedisConnection,
  makeWith
)

/**
 * @since 0.2.0
 * @category layers
 */
export const layer: Layer.Layer<Transport, never, RedisConnection> = Layer.scoped(Transport, make)

/**
 * The transport on the `RedisConnection` of the context, routed as `options` say
 * (`{ routing: "user" }`: per-user and per-room channels, sharded on a Cluster).
 *
 * @since 0.3.0
 * @category layers
 */
export const layerWith = (options: RoutingOptions): Layer.Layer<Transport, never, RedisConnection> =>
  Layer.scoped(Transport, Effect.flatMap(RedisConnection, (connection) => makeWith(connection, options)))
