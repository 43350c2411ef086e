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
 * ```ts
 * const Bus = TransportRedis.layer.pipe(Layer.provide(RedisConnection.layer({ url })))
 * ```
 *
 * @since 0.2.0
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import * as Internal from "../internal/redis/transport.js"
import { RedisConnection, type RedisConnectionService } from "../RedisConnection.js"
import { Transport, type TransportService } from "../Transport.js"

/**
 * The transport on `connection`; its listeners are removed when the scope closes (the
 * connection itself belongs to whoever acquired it).
 *
 * @since 0.2.0
 * @category constructors
 */
export const makeWith = (connection: RedisConnectionService): Effect.Effect<TransportService, never, Scope.Scope> =>
  Effect.map(
    Effect.acquireRelease(Effect.sync(() => Internal.make(connection)), (built) => Effect.sync(built.release)),
    (built) => built.service
  )

/**
 * The transport on the `RedisConnection` of the context.
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
