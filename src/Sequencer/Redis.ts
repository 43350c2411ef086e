/**
 * The Redis backend of `Sequencer`: the global `seq` counters on a `RedisConnection`'s
 * KV connection, `INCR` + `EXPIRE` in one Lua script (one round trip, atomic; one key,
 * so any Cluster slot). Keys: `<seq.redisKeyPrefix><key>`.
 *
 * ```ts
 * const Seq = Sequencer.layerStore({ startAt: 1 }).pipe(
 *   Layer.provide(SequencerRedis.layerStore),
 *   Layer.provide(RedisConnection.layer({ url }))
 * )
 * ```
 *
 * @since 0.2.0
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Scripts from "../internal/redis/scripts.js"
import { RedisConnection, type RedisConnectionService } from "../RedisConnection.js"
import { type Kv, Store } from "../Sequencer.js"

/**
 * The counter store on `connection` (registers its script on the KV connection).
 *
 * @since 0.2.0
 * @category constructors
 */
export const makeStoreWith = (connection: RedisConnectionService): Kv => {
  const scripts = Scripts.install(connection.kv)
  return {
    incrExpire: (key, ttlSeconds) => connection.command("incrExpire", () => scripts.incrExpire(key, ttlSeconds)),
    expire: (key, ttlSeconds) =>
      Effect.asVoid(connection.command("expire", (kv) => kv.expire(key, Scripts.seconds(ttlSeconds))))
  }
}

/**
 * The counter store on the `RedisConnection` of the context.
 *
 * @since 0.2.0
 * @category constructors
 */
export const makeStore: Effect.Effect<Kv, never, RedisConnection> = Effect.map(RedisConnection, makeStoreWith)

/**
 * @since 0.2.0
 * @category layers
 */
export const layerStore: Layer.Layer<Store, never, RedisConnection> = Layer.effect(Store, makeStore)
