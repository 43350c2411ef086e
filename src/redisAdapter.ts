/**
 * `createIORedisAdapter`: the ioredis adapter of the original ssekify, for
 * `new SSEKify({ redis: createIORedisAdapter(url) })`.
 *
 * The adapter keeps three ioredis connections (publisher, subscriber, KV) and offers
 * the `RedisLike` shape (`publish`, `subscribe`, `on('message' | 'error')`, `close`)
 * plus the KV commands (`incr`, `expire`, `pexpire` and the same under `kv`), so
 * `seq` is global across instances. `ioredis` is an optional peer dependency, loaded
 * the first time an adapter is made: without it `createIORedisAdapter` throws an
 * error that says `npm i ioredis`.
 *
 * The adapter is a Promise skin over one `RedisConnection` (the same gates, publish
 * pipeline, Lua scripts and subscribe timeout as the Effect layers), which it carries
 * under a hidden symbol key: given such an adapter, `RedisConnection.fromAdapter` and
 * `RedisTransport.layerAdapter` build every Redis backend on that same connection.
 *
 * @since 0.2.0
 */
import type { Cluster, Redis, RedisOptions } from "ioredis"
import type * as Clients from "./internal/redis/clients.js"
import { SubscriberQueue } from "./internal/redis/subscriberQueue.js"
import { Connection, ConnectionKey } from "./internal/redis/connection.js"
import * as Errors from "./internal/redis/errors.js"
import * as Scripts from "./internal/redis/scripts.js"
import type { CommonOptions } from "./RedisConnection.js"
import type { ConnectionTuning } from "./internal/redis/tuning.js"
import { settingsOf, timingOf } from "./internal/redis/options.js"
import type { RedisKvLike, RedisLike, RoutingOptions } from "./Transport.js"

/**
 * An existing ioredis `Redis` or `Cluster` instance, described by what the adapter
 * reads of it (so this entry's declarations never import `ioredis`, an optional peer).
 *
 * @since 0.3.0
 * @category models
 */
export interface IORedisClientLike {
  readonly status: string
  duplicate(): unknown
}

/**
 * What `createIORedisAdapter` accepts: a Redis URL, ioredis options (an ioredis
 * `RedisOptions` object, including `sentinels` + `name` for Sentinel), or an existing
 * ioredis `Redis` / `Cluster` instance (the adapter duplicates it for its three
 * connections and never closes it). The options are typed `object` here, not
 * `RedisOptions`, so that the main entry type-checks without ioredis installed
 * (`skipLibCheck: false`); `RedisConnection` in `ssekify/redis` has the ioredis types.
 *
 * @since 0.2.0
 * @category models
 */
export type IORedisAdapterInput = string | IORedisClientLike | object

/**
 * The tuning of the adapter's connections (the same as `RedisConnection`'s
 * `CommonOptions`, without the connection target), with `redisOptions` typed `object`
 * (ioredis' `RedisOptions`). Durations in milliseconds or as `Duration` input.
 *
 * @since 0.2.0
 * @category models
 */
export interface IORedisAdapterOptions extends ConnectionTuning, RoutingOptions {
  /** ioredis `RedisOptions` for every connection (for a Cluster: the options of its nodes). */
  readonly redisOptions?: object | undefined
}

// The structural options are the ioredis-typed ones (checked here, where ioredis' types are).
const commonOf = (options: IORedisAdapterOptions): CommonOptions => options as CommonOptions

/**
 * The key of the hidden reference from an adapter to its connection (a registered
 * symbol, `Symbol.for("ssekify/RedisAdapter/connections")`).
 *
 * @internal
 */
export const ConnectionsKey: typeof ConnectionKey = ConnectionKey

/**
 * The adapter returned by {@link createIORedisAdapter}.
 *
 * @since 0.2.0
 * @category models
 */
export interface IORedisAdapter extends RedisLike {
  /** Publishes on `channel`; resolves with the number of receivers. Rejects within about a second while Redis is away. */
  publish(channel: string, message: string): Promise<number>
  /** Subscribes to `channel`; rejects when Redis does not confirm within `subscribeTimeout` (the subscription completes when Redis is back). */
  subscribe(channel: string): Promise<void>
  /** Unsubscribes from `channel`. */
  unsubscribe(channel: string): Promise<void>
  /** `'message'`: `(channel, message)` for every message of a subscribed channel. */
  on(event: "message", listener: (channel: string, message: string) => void): this
  /** `'error'`: connection errors of the three connections, deduplicated per outage. */
  on(event: "error", listener: (error: unknown) => void): this
  /** Removes a listener added with `on`. */
  off(event: "message", listener: (channel: string, message: string) => void): this
  off(event: "error", listener: (error: unknown) => void): this
  /** Closes the three connections (`QUIT`, then disconnect). Idempotent. */
  close(): Promise<void>
  /** `INCR key`. */
  incr(key: string): Promise<number>
  /** `EXPIRE key seconds`. */
  expire(key: string, seconds: number): Promise<number>
  /** `PEXPIRE key ms`. */
  pexpire(key: string, ms: number): Promise<number>
  /** `INCR` then `EXPIRE` (when `ttlSeconds > 0`) in one atomic round trip. */
  incrExpire(key: string, ttlSeconds: number): Promise<number>
  /** The KV commands as one object (the original's `kv` handle). */
  readonly kv: RedisKvLike & {
    incr(key: string): Promise<number>
    expire(key: string, seconds: number): Promise<number>
    pexpire(key: string, ms: number): Promise<number>
  }
  /**
   * The adapter's connection (for `RedisConnection.fromAdapter`).
   *
   * @internal
   */
  readonly [ConnectionKey]: AdapterConnection
}

/**
 * What an adapter carries: its three ioredis clients (`connections`) and their timing.
 *
 * @internal
 */
export interface AdapterConnection {
  readonly connections: { readonly publisher: Redis | Cluster; readonly subscriber: Redis | Cluster; readonly kv: Redis | Cluster }
  readonly timing: { readonly offlineTimeoutMs: number; readonly subscribeTimeoutMs: number }
}

const isClient = (input: unknown): input is Redis | Cluster =>
  typeof input === "object" && input !== null &&
  typeof (input as { duplicate?: unknown }).duplicate === "function" &&
  typeof (input as { status?: unknown }).status === "string"

const sourceOf = (input: IORedisAdapterInput): Clients.Source => {
  if (typeof input === "string") return { _tag: "Url", url: input }
  if (isClient(input)) return { _tag: "Client", client: input }
  if (typeof input === "object" && input !== null) return { _tag: "Options", options: input as RedisOptions }
  throw new TypeError(`createIORedisAdapter: expected a Redis URL, ioredis options or an ioredis instance, got ${typeof input}`)
}

/**
 * Creates an ioredis adapter with separate publisher, subscriber and KV connections.
 *
 * ```ts
 * const sse = new SSEKify({ redis: createIORedisAdapter(process.env.REDIS_URL!) })
 * createIORedisAdapter({ host: "10.0.0.2", port: 6380, password })
 * createIORedisAdapter({ sentinels: [{ host: "10.0.0.5", port: 26379 }], name: "mymaster" })
 * createIORedisAdapter(new Redis.Cluster([{ host: "10.0.0.1", port: 7000 }]))
 * // per-user routing (sharded Pub/Sub on a Cluster, Redis ≥ 7)
 * createIORedisAdapter(process.env.REDIS_URL!, { routing: "user" })
 * ```
 *
 * Throws when `ioredis` is not installed (`npm i ioredis`). Never throws because Redis
 * is unreachable: the connections keep reconnecting, `publish` rejects meanwhile.
 *
 * @since 0.2.0
 * @category constructors
 */
export const createIORedisAdapter = (
  input: IORedisAdapterInput,
  options: IORedisAdapterOptions = {}
): IORedisAdapter => {
  const connection = Connection.open(sourceOf(input), settingsOf(commonOf(options)), timingOf(commonOf(options)))
  if (options.routing !== undefined || options.sharded !== undefined) {
    connection.routing = { routing: options.routing, sharded: options.sharded }
  }
  const { subscriber } = connection
  const scripts = Scripts.install(connection.kv)

  const errorListeners = new Set<(error: unknown) => void>()
  const reportError = (error: Error) => {
    for (const listener of Array.from(errorListeners)) listener(error)
  }
  const unwatch = connection.watch(["pub", "sub", "kv"], reportError)

  const closed = () => Promise.reject(new Error("the ioredis adapter is closed"))
  const kv = {
    incr: (key: string) => connection.kvPromise((c) => c.incr(key)),
    expire: (key: string, seconds: number) => connection.kvPromise((c) => c.expire(key, Scripts.seconds(seconds))),
    pexpire: (key: string, ms: number) => connection.kvPromise((c) => c.pexpire(key, Math.ceil(ms)))
  }
  // a refused SUBSCRIBE may carry the failed AUTH's arguments: redacted, as every command's
  const clean = (error: unknown) => Promise.reject(Errors.sanitize(error))
  // (un)subscribes wait for a ready connection (see SubscriberQueue)
  const queue = new SubscriberQueue(subscriber)

  const adapter = {
    publish: (channel: string, message: string) => connection.publishPromise(channel, message),
    subscribe: (channel: string) => {
      if (connection.closed) return closed()
      const pending = queue.run(() => subscriber.subscribe(channel))
      pending.catch(() => {})
      return connection.confirm(`SUBSCRIBE ${channel}`, pending).then(() => undefined, clean)
    },
    unsubscribe: (channel: string) =>
      connection.closed
        ? Promise.resolve()
        : connection.confirm(`UNSUBSCRIBE ${channel}`, queue.run(() => subscriber.unsubscribe(channel))).then(
          () => undefined,
          clean
        ),
    on: (event: string, listener: (...args: Array<never>) => void) => {
      if (event === "message") subscriber.on("message", listener as (channel: string, message: string) => void)
      else if (event === "error") errorListeners.add(listener as (error: unknown) => void)
      else throw new TypeError(`createIORedisAdapter: unknown event '${event}' (expected 'message' or 'error')`)
      return adapter
    },
    off: (event: string, listener: (...args: Array<never>) => void) => {
      if (event === "message") subscriber.off("message", listener as (channel: string, message: string) => void)
      else if (event === "error") errorListeners.delete(listener as (error: unknown) => void)
      return adapter
    },
    close: () =>
      connection.close().finally(() => {
        unwatch()
        queue.detach()
        errorListeners.clear()
      }),
    ...kv,
    incrExpire: (key: string, ttlSeconds: number) => connection.kvPromise(() => scripts.incrExpire(key, ttlSeconds)),
    kv,
    [ConnectionKey]: connection
  }
  return adapter as unknown as IORedisAdapter
}
