/**
 * The Redis backend of `ReplayBuffer`: the replay store on a `RedisConnection`'s KV
 * connection, so a browser that reconnects to another instance still gets what it
 * missed. One sorted set per user (`<replayKeyPrefix>{<userId>}`), capped and expiring;
 * each key's add + cap + TTL is one Lua script, the keys of a tick are one pipelined
 * round trip.
 *
 * ```ts
 * const Replay = ReplayBufferRedis.layer({ size: 50, keyPrefix: "app:sse:replay:" }).pipe(
 *   Layer.provide(RedisConnection.layer({ url }))
 * )
 * ```
 *
 * @since 0.2.0
 */
import type { InvalidInput } from "../Errors.js"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Scripts from "../internal/redis/scripts.js"
import { RedisConnection, type RedisConnectionService } from "../RedisConnection.js"
import { layerStore as layerOnStore, type ListStore, type RedisOptions, type ReplayBuffer, Store } from "../ReplayBuffer.js"

/**
 * The replay store on `connection` (registers its script on the KV connection).
 *
 * - `appendCapped(entries, maxLength, ttlMs)`: for each `[key, value, score]`, adds the
 *   bytes to the sorted set at `key` (an identical value already there is kept once,
 *   with its first score), keeps the `maxLength` highest-scored items (0: all) and
 *   sets its time to live in ms (0: none); each key atomically, all keys in one round
 *   trip (on a Cluster the keys may live in different slots).
 * - `list(key)`: the items at `key`, lowest score first (empty when missing or expired).
 * - `del(keys)`: deletes the keys (one command per key, pipelined; any slots).
 *
 * @since 0.2.0
 * @category constructors
 */
export const makeStoreWith = (connection: RedisConnectionService): ListStore => {
  const scripts = Scripts.install(connection.kv)
  return {
    appendCapped: (entries, maxLength, ttlMs) =>
      Effect.asVoid(connection.command("appendCapped", () =>
        Promise.all(entries.map(([key, value, score]) => scripts.appendCapped(key, value, score, maxLength, ttlMs))))),
    list: (key) => connection.command("list", (kv) => kv.zrangeBuffer(key, 0, -1)),
    del: (keys) => Effect.asVoid(connection.command("del", (kv) => Promise.all(keys.map((key) => kv.del(key)))))
  }
}

/**
 * The replay store on the `RedisConnection` of the context.
 *
 * @since 0.2.0
 * @category constructors
 */
export const makeStore: Effect.Effect<ListStore, never, RedisConnection> = Effect.map(RedisConnection, makeStoreWith)

/**
 * @since 0.2.0
 * @category layers
 */
export const layerStore: Layer.Layer<Store, never, RedisConnection> = Layer.effect(Store, makeStore)

/**
 * A replay buffer in Redis (`ReplayBuffer.layerStore` on {@link layerStore}).
 *
 * @since 0.2.0
 * @category layers
 */
export const layer = (options?: RedisOptions): Layer.Layer<ReplayBuffer, InvalidInput, RedisConnection> =>
  layerOnStore(options).pipe(Layer.provide(layerStore))
