/**
 * Cluster-wide presence and connection caps (with the Redis transport).
 *
 * Every instance keeps, in Redis, one entry per open connection, in a sorted set per
 * user (`<channel>:presence:<userId>`), scored with an expiry that one heartbeat per
 * instance refreshes. So any instance can answer "is this user online anywhere, on
 * how many connections", and `maxConnectionsPerUser` can hold for the whole cluster.
 * When an instance crashes, its entries stop being refreshed and stop counting within
 * `ttlMs` of its last heartbeat.
 *
 * ```ts
 * const sse = new SSEKify({ redis: process.env.REDIS_URL, presence: true })
 * await sse.isUserOnline("alice", { scope: "cluster" })          // Promise<boolean>
 * await sse.getUserConnectionCount("alice", { scope: "cluster" }) // Promise<number>
 * sse.isUserOnline("alice")                                      // this instance, sync, as before
 *
 * // at most 3 connections per user across every instance
 * new SSEKify({ redis, presence: true, maxConnectionsPerUser: 3, connectionLimitScope: "cluster" })
 * ```
 *
 * Effect: `SseKify.getUserConnectionCount(userId, { scope: "cluster" })` and
 * `SseKify.isUserOnline(userId, { scope: "cluster" })`, failing with
 * `TransportError` (Redis unreachable) or {@link PresenceDisabled}.
 *
 * Cost per instance: one Redis script call per user with connections on the
 * instance every `heartbeatMs` (all written at once: one round trip), one per
 * connect (`admit` with a cluster cap, else batched per tick) and one per disconnect
 * (batched per tick). Memory in Redis: one sorted-set member (about 40 bytes plus the
 * ids) per connection.
 *
 * @since 0.2.0
 */
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type { TransportError } from "./Errors.js"
import { MemoryPresence } from "./internal/presenceMemory.js"

/**
 * The `presence` option: `true` for the defaults, or the timing.
 *
 * @since 0.2.0
 * @category models
 */
export interface PresenceOptions {
  /** How often this instance refreshes its entries, in ms (or `heartbeat`). Default 10 000 ms. */
  readonly heartbeatMs?: number | undefined
  /**
   * How often this instance refreshes its entries, as a Duration (give this or
   * `heartbeatMs`). Default 10 seconds.
   *
   * @since 0.3.0
   */
  readonly heartbeat?: Duration.DurationInput | undefined
  /**
   * How long an entry lives without a refresh: a crashed instance's connections stop
   * counting at most this long after its last heartbeat. At least `2 × heartbeatMs`.
   * Default 30 000 ms, or 3 × the heartbeat when that is longer.
   */
  readonly ttlMs?: number | undefined
  /**
   * `ttlMs` as a Duration (give this or `ttlMs`).
   *
   * @since 0.3.0
   */
  readonly ttl?: Duration.DurationInput | undefined
  /** Prefix of the per-user keys. Default `'<channel>:presence:'`. */
  readonly keyPrefix?: string | undefined
}

/**
 * Where `maxConnectionsPerUser` counts: the connections on this instance
 * (`'instance'`, default) or on every instance (`'cluster'`, needs `presence`).
 *
 * With `'cluster'`, a registration waits for one Redis round trip (an atomic
 * check-and-add) before the SSE headers are written: a connection beyond the cap gets
 * 429 (policy `'reject'`), or the user's oldest connection anywhere is closed (policy
 * `'closeOldest'`: at once when it is on this instance, else by its instance at its
 * next heartbeat, so within `heartbeatMs`). Until the reply, the handle's `join` /
 * `leave` are remembered and applied, and messages for the user do not reach the new
 * connection yet. When Redis does not answer (at most about 3 s), the connection is
 * admitted (fail open) and a `TransportError` is reported.
 *
 * @since 0.2.0
 * @category models
 */
export type ConnectionLimitScope = "instance" | "cluster"

/**
 * Which connections a presence query counts: this instance's (default, synchronous)
 * or the whole cluster's (needs `presence`).
 *
 * @since 0.2.0
 * @category models
 */
export type Scope = "instance" | "cluster"

/**
 * The options of a cluster-wide presence query.
 *
 * @since 0.2.0
 * @category models
 */
export interface ClusterQuery {
  readonly scope: "cluster"
}

/**
 * The options of a presence query on this instance.
 *
 * @since 0.2.0
 * @category models
 */
export interface InstanceQuery {
  readonly scope?: "instance" | undefined
}

/**
 * A cluster-wide query was made on an instance without `presence`.
 *
 * @since 0.2.0
 * @category errors
 */
export class PresenceDisabled extends Data.TaggedError("PresenceDisabled")<{
  readonly operation: string
}> {
  readonly code = "PRESENCE_DISABLED" as const
  readonly level = "error" as const
  override get message(): string {
    return `presence_disabled: ${this.operation} with { scope: 'cluster' } needs the presence option (and the Redis transport)`
  }
}

/**
 * What a cluster-wide query may fail with.
 *
 * @since 0.2.0
 * @category errors
 */
export type PresenceError = TransportError | PresenceDisabled

/**
 * The result of {@link PresenceStore.admit}.
 *
 * @since 0.2.0
 * @category models
 */
export interface Admission {
  /** False: the cap was reached (policy `'reject'`); nothing was added. */
  readonly admitted: boolean
  /** Live connections of the user in the cluster (with the new one when admitted). */
  readonly count: number
  /** Members marked evicted (policy `'closeOldest'`): their instances close them. */
  readonly evicted: ReadonlyArray<string>
}

/**
 * The shared side of presence: one key per user, one member per connection (the
 * {@link Store} service).
 *
 * @since 0.2.0
 * @category models
 */
export interface PresenceStore {
  /**
   * Atomically: counts the live members of `key`; below `max` (or `max` 0) adds
   * `member` with a time to live of `ttlMs`; at `max`, refuses, or with `closeOldest`
   * marks the oldest members evicted and adds it.
   */
  readonly admit: (
    key: string,
    member: string,
    ttlMs: number,
    max: number,
    closeOldest: boolean
  ) => Effect.Effect<Admission, TransportError>
  /**
   * Refreshes (adds) the members of each key for `ttlMs`; returns the members that
   * were marked evicted (they are removed, not refreshed). All keys in one round trip.
   */
  readonly beat: (
    entries: ReadonlyArray<readonly [key: string, members: ReadonlyArray<string>]>,
    ttlMs: number
  ) => Effect.Effect<ReadonlyArray<string>, TransportError>
  /** Removes members (all keys in one round trip). */
  readonly remove: (
    entries: ReadonlyArray<readonly [key: string, members: ReadonlyArray<string>]>
  ) => Effect.Effect<void, TransportError>
  /** Live members of `key`. */
  readonly count: (key: string) => Effect.Effect<number, TransportError>
}

/**
 * The presence store as a service: `Presence/Redis` offers one on a Redis connection
 * (`RedisTransport.layer` and the facade's `redis` option provide it). The `presence`
 * option and `connectionLimitScope: 'cluster'` need it.
 *
 * @since 0.2.0
 * @category tags
 */
export class Store extends Context.Tag("ssekify/Presence/Store")<Store, PresenceStore>() {}

/**
 * A presence store in memory, for instances that share one process (tests, or several
 * `SseKify` layers in one app): the same rules as the Redis store (the cap, `closeOldest`
 * evictions seen by the evicted member's instance at its next beat, entries that expire
 * `ttlMs` after their last beat). Time comes from Effect's `Clock`, so a `TestClock`
 * drives expiry. Build it once and provide it to every instance that shares it.
 *
 * @since 0.2.0
 * @category constructors
 */
export const makeMemoryStore: Effect.Effect<PresenceStore> = Effect.map(Effect.clock, (clock) => {
  const state = new MemoryPresence(() => clock.unsafeCurrentTimeMillis())
  return Store.of({
    admit: (key, member, ttlMs, max, closeOldest) => Effect.sync(() => state.admit(key, member, ttlMs, max, closeOldest)),
    beat: (entries, ttlMs) => Effect.sync(() => state.beat(entries, ttlMs)),
    remove: (entries) => Effect.sync(() => state.remove(entries)),
    count: (key) => Effect.sync(() => state.count(key))
  })
})

/**
 * {@link makeMemoryStore} as a layer: one store per build of the layer (build it once,
 * e.g. with `Layer.build` or by providing one layer value to several instances through
 * `Layer.provide`, so they share it).
 *
 * @since 0.2.0
 * @category layers
 */
export const layerMemory: Layer.Layer<Store> = Layer.effect(Store, makeMemoryStore)
