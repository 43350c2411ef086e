/**
 * The Redis backend of `Presence`: the presence store on a `RedisConnection`'s KV
 * connection. One sorted set per user, one member per live connection scored with its
 * expiry (Redis server time); `admit`, `beat` and `count` are Lua scripts touching one
 * key each (any Cluster slot).
 *
 * @since 0.2.0
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Scripts from "../internal/redis/presence.js"
import { type PresenceStore, Store } from "../Presence.js"
import { RedisConnection, type RedisConnectionService } from "../RedisConnection.js"

/**
 * The presence store on `connection` (registers its scripts on the KV connection).
 *
 * @since 0.2.0
 * @category constructors
 */
export const makeStoreWith = (connection: RedisConnectionService): PresenceStore => {
  const scripts = Scripts.install(connection.kv)
  return {
    admit: (key, member, ttlMs, max, closeOldest) =>
      connection.command("presence.admit", () => scripts.admit(key, member, ttlMs, max, closeOldest)),
    beat: (entries, ttlMs) =>
      connection.command("presence.beat", () =>
        Promise.all(entries.map(([key, members]) => scripts.beat(key, members, ttlMs))).then((all) => all.flat())),
    remove: (entries) =>
      Effect.asVoid(connection.command("presence.remove", () =>
        Promise.all(entries.map(([key, members]) => scripts.remove(key, members))))),
    count: (key) => connection.command("presence.count", () => scripts.count(key))
  }
}

/**
 * The presence store on the `RedisConnection` of the context.
 *
 * @since 0.2.0
 * @category constructors
 */
export const makeStore: Effect.Effect<PresenceStore, never, RedisConnection> = Effect.map(RedisConnection, makeStoreWith)

/**
 * @since 0.2.0
 * @category layers
 */
export const layerStore: Layer.Layer<Store, never, RedisConnection> = Layer.effect(Store, makeStore)
