/**
 * The Redis transport: ssekify instances in several processes exchange messages through
 * Redis Pub/Sub, and share a key/value store for the global `seq`.
 *
 * Built on ioredis (an optional peer dependency: `npm i ioredis`) with three separate
 * connections: a publisher, a subscriber (a connection in subscriber mode can run no
 * other command) and a KV connection. Works with a single node (`url`), an existing
 * client (`client`, duplicated: ssekify never closes a client it was given), a Redis
 * Cluster (`cluster`) and Sentinel (`sentinel`).
 *
 * Failure behaviour:
 *
 * - Redis down at start or mid-traffic never fails the layer or crashes the process:
 *   the connections reconnect for ever (every second at most), and the subscriber
 *   resubscribes by itself.
 * - `publish` and the KV commands never queue for later: while the connection is away
 *   they wait at most `offlineTimeout` (1 s) for it and then fail with `TransportError`;
 *   a command in flight when the socket closes fails at once; a socket that hangs fails
 *   after `commandTimeout` (2 s).
 * - the subscriber's connection errors go to the subscriptions' `onError`: the loss of
 *   the connection once, then each distinct error once per outage.
 *
 * ```ts
 * import { Layer } from "effect"
 * import { RedisTransport, SseKify } from "ssekify"
 *
 * const Live = SseKify.layer({ channel: "app:sse" }).pipe(
 *   Layer.provide(RedisTransport.layer({ url: "redis://127.0.0.1:6379" }))
 * )
 * ```
 *
 * @since 0.2.0
 */
import * as Config from "effect/Config"
import * as ConfigError from "effect/ConfigError"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import type { Cluster, ClusterNode, ClusterOptions, Redis, RedisOptions } from "ioredis"
import * as Clients from "./internal/redis/clients.js"
import { settingsOf, timingOf } from "./internal/redis/options.js"
import * as Shared from "./internal/redis/shared.js"
import * as Internal from "./internal/redis/transport.js"
import { isListStore, type ListStore } from "./ReplayBuffer.js"
import { fromRedisLike, type Kv, type RedisLike, Transport, type TransportService } from "./Transport.js"

// ---------------------------------------------------------------------------
// options
// ---------------------------------------------------------------------------

/**
 * Connect to a single node by URL: `redis://[[user]:password@]host[:port][/db]`
 * (`rediss://` for TLS). A `Redacted` URL keeps its password out of logs.
 *
 * @since 0.2.0
 * @category models
 */
export interface UrlOptions {
  readonly url: string | Redacted.Redacted<string>
}

/**
 * Use an existing ioredis client (`Redis` or `Cluster`): the transport opens its own
 * three connections with `duplicate()` (same address, credentials and TLS) and never
 * closes the client it was given.
 *
 * @since 0.2.0
 * @category models
 */
export interface ClientOptions {
  readonly client: Redis | Cluster
}

/**
 * Connect to a Redis Cluster through some of its nodes.
 *
 * Pub/Sub on a Cluster is classic `PUBLISH` / `SUBSCRIBE` (broadcast over the cluster
 * bus). The KV commands touch one key each, so they run on any slot layout; operations
 * over several keys must give their keys one hash tag (`{tag}`).
 *
 * @since 0.2.0
 * @category models
 */
export interface ClusterConnectionOptions {
  /** Startup nodes: `{ host, port }`, `"host:port"` or a port. */
  readonly cluster: ReadonlyArray<ClusterNode>
  /** ioredis Cluster options (the nodes' own options go in `redisOptions`). */
  readonly clusterOptions?: ClusterOptions | undefined
}

/**
 * Connect to the master of a Sentinel-monitored set: the connections ask the sentinels
 * for the master, and ask again after a failover.
 *
 * @since 0.2.0
 * @category models
 */
export interface SentinelOptions {
  readonly sentinel: {
    /** The sentinels' addresses. */
    readonly sentinels: ReadonlyArray<{ readonly host: string; readonly port: number }>
    /** The master's name (`sentinel monitor <name> …`). */
    readonly name: string
    /** The sentinels' own password, when they require one. */
    readonly sentinelPassword?: Redacted.Redacted<string> | undefined
  }
}

/**
 * What every form of the options accepts.
 *
 * @since 0.2.0
 * @category models
 */
export interface CommonOptions {
  /**
   * ioredis options for every connection (for a Cluster: the options of its nodes).
   * The options that give each connection its role (offline queue, retries per
   * request, resubscription, connection name) are set by the transport.
   */
  readonly redisOptions?: RedisOptions | undefined
  /** The data nodes' password (`AUTH`); never logged. Default: none, or the URL's. */
  readonly password?: Redacted.Redacted<string> | undefined
  /** The ACL user name. Default: none, or the URL's. */
  readonly username?: string | undefined
  /**
   * How long `publish` and the KV commands wait for a connection that is
   * (re)connecting before they fail with `TransportError`. Default: 1 second.
   */
  readonly offlineTimeout?: Duration.DurationInput | undefined
  /** How long a publish or KV command may wait for its reply. Default: 2 seconds. */
  readonly commandTimeout?: Duration.DurationInput | undefined
  /**
   * How long `subscribe` waits for Redis to confirm a new subscription. After that it
   * returns anyway, `onError` is told, and the subscription completes in the background
   * when Redis is reachable. Default: 2 seconds.
   */
  readonly subscribeTimeout?: Duration.DurationInput | undefined
  /**
   * The prefix of the connections' names (`CLIENT SETNAME`): `<name>:pub`, `<name>:sub`,
   * `<name>:kv`, so they are easy to find in `CLIENT LIST`. Default: `"ssekify"`.
   */
  readonly connectionName?: string | undefined
}

/**
 * The options of {@link make} and {@link layer}: where to connect, plus
 * {@link CommonOptions}.
 *
 * @since 0.2.0
 * @category models
 */
export type Options = (UrlOptions | ClientOptions | ClusterConnectionOptions | SentinelOptions) & CommonOptions

const sourceOf = (options: Options): Clients.Source => {
  if ("url" in options) {
    const url = typeof options.url === "string" ? options.url : Redacted.value(options.url)
    return { _tag: "Url", url }
  }
  if ("client" in options) return { _tag: "Client", client: options.client }
  if ("cluster" in options) {
    return { _tag: "Cluster", nodes: options.cluster, options: options.clusterOptions ?? {} }
  }
  const s = options.sentinel
  return {
    _tag: "Options",
    options: {
      sentinels: s.sentinels.map((a) => ({ host: a.host, port: a.port })),
      name: s.name,
      ...(s.sentinelPassword !== undefined ? { sentinelPassword: Redacted.value(s.sentinelPassword) } : {})
    }
  }
}

// ---------------------------------------------------------------------------
// constructors
// ---------------------------------------------------------------------------

const onConnections = (
  connections: Clients.Connections,
  timing: Internal.Timing
): Effect.Effect<TransportService, never, Scope.Scope> =>
  Effect.map(
    Effect.acquireRelease(
      Effect.sync(() => Internal.make(connections, timing)),
      (built) => Effect.sync(built.release)
    ),
    (built) => built.service
  )

/**
 * Opens the publisher, subscriber and KV connections and returns the transport; the
 * connections are closed (`QUIT`, then disconnect) when the scope closes.
 *
 * It does not wait for Redis: the transport is returned at once and connects in the
 * background (so an unreachable Redis at start is reported by `publish` and `onError`,
 * not by a failed layer). Dies with a clear message when `ioredis` is not installed.
 *
 * @since 0.2.0
 * @category constructors
 */
export const make = (options: Options): Effect.Effect<TransportService, never, Scope.Scope> =>
  Effect.gen(function*() {
    const source = sourceOf(options)
    const settings = settingsOf(options)
    const connections = yield* Effect.acquireRelease(
      Effect.try({ try: () => Clients.openAll(source, settings), catch: (error) => error }).pipe(Effect.orDie),
      (connections) => Effect.promise(() => Clients.closeAll(connections))
    )
    return yield* onConnections(connections, timingOf(options))
  })

/**
 * The transport as a layer.
 *
 * ```ts
 * RedisTransport.layer({ url: "redis://127.0.0.1:6379" })
 * RedisTransport.layer({ client: existingIORedisClient })
 * RedisTransport.layer({ cluster: [{ host: "10.0.0.1", port: 7000 }], password })
 * RedisTransport.layer({ sentinel: { sentinels: [{ host: "10.0.0.5", port: 26379 }], name: "mymaster" } })
 * ```
 *
 * @since 0.2.0
 * @category layers
 */
export const layer = (options: Options): Layer.Layer<Transport> => Layer.scoped(Transport, make(options))

/**
 * A transport on a `RedisLike` adapter. An adapter made by `createIORedisAdapter`
 * carries its ioredis connections (under a hidden symbol): the full Redis transport is
 * built on them (atomic one-round-trip `incrExpire`, bounded `publish`, error
 * reporting). Any other adapter gets the generic `Transport.fromRedisLike`.
 *
 * With `closeOnRelease`, the adapter's `close()` runs when the scope closes (what the
 * original `shutdown()` did); otherwise the adapter stays open and only the
 * transport's listeners are removed.
 *
 * @since 0.2.0
 * @category constructors
 */
export const fromAdapter = (
  adapter: RedisLike,
  options?: { readonly closeOnRelease?: boolean }
): Effect.Effect<TransportService, never, Scope.Scope> => {
  const carried = Shared.connectionsOf(adapter)
  if (carried === undefined) return fromRedisLike(adapter, options)
  return Effect.gen(function*() {
    if (options?.closeOnRelease && typeof adapter.close === "function") {
      const close = adapter.close.bind(adapter)
      // a user's adapter may throw or reject on close: neither may fail the scope's release
      yield* Effect.addFinalizer(() => Effect.ignore(Effect.tryPromise(async () => close())))
    }
    return yield* onConnections(carried.connections, carried.timing)
  })
}

/**
 * {@link fromAdapter} as a layer.
 *
 * @since 0.2.0
 * @category layers
 */
export const layerAdapter = (
  adapter: RedisLike,
  options?: { readonly closeOnRelease?: boolean }
): Layer.Layer<Transport> => Layer.scoped(Transport, fromAdapter(adapter, options))

/**
 * `true` when `adapter` was made by `createIORedisAdapter` (so {@link fromAdapter}
 * builds the full Redis transport on its connections).
 *
 * @since 0.2.0
 * @category guards
 */
export const isIORedisAdapter = (adapter: unknown): boolean => Shared.connectionsOf(adapter) !== undefined

/**
 * The key/value store of the Redis transport: the `Kv` of every transport plus scored,
 * capped collections, for a replay buffer kept in Redis (so a browser that reconnects
 * to another instance still gets what it missed).
 *
 * - `appendCapped(entries, maxLength, ttlMs)`: for each `[key, value, score]`, adds the
 *   bytes to the sorted set at `key` (an identical value already there is kept once,
 *   with its first score), keeps the `maxLength` highest-scored items (0: all) and
 *   sets its time to live in ms (0: none); each key atomically (one script), all keys
 *   in one round trip (pipelined; on a Cluster the keys may live in different slots).
 *   Order comes from the scores, not from which instance's write arrived first.
 * - `list(key)`: the items at `key`, lowest score first (empty when missing or expired).
 * - `del(keys)`: deletes the keys (one command per key, pipelined; any slots).
 *
 * @since 0.2.0
 * @category models
 */
export interface RedisKv extends Kv, ListStore {}

/**
 * The {@link RedisKv} of a transport, when it is a Redis transport (made by {@link make},
 * {@link layer} or {@link fromAdapter} on an ioredis adapter).
 *
 * @since 0.2.0
 * @category accessors
 */
export const redisKv = (transport: TransportService): Option.Option<RedisKv> =>
  Option.filter(transport.kv, (kv): kv is RedisKv => isListStore(kv))

// ---------------------------------------------------------------------------
// config
// ---------------------------------------------------------------------------

const hostPort = /^(?:\[([^\]]+)\]|([^:\s]+))(?::(\d{1,5}))?$/

/**
 * Parses a comma-separated list of `host:port` (`[v6addr]:port` for IPv6; a missing
 * port is `defaultPort`).
 *
 * @since 0.2.0
 * @category config
 */
export const parseHostPorts = (
  text: string,
  defaultPort: number
): Either.Either<Array<{ host: string; port: number }>, string> => {
  const out: Array<{ host: string; port: number }> = []
  for (const raw of text.split(",")) {
    const item = raw.trim()
    if (item === "") continue
    const m = hostPort.exec(item)
    const port = m?.[3] === undefined ? defaultPort : Number(m[3])
    if (m === null || !(port > 0 && port < 65536)) return Either.left(`invalid host:port "${item}"`)
    out.push({ host: (m[1] ?? m[2])!, port })
  }
  return out.length === 0 ? Either.left("no host:port given") : Either.right(out)
}

const hostPorts = (name: string, defaultPort: number) =>
  Config.string(name).pipe(
    Config.mapOrFail((text) =>
      Either.mapLeft(parseHostPorts(text, defaultPort), (reason) => ConfigError.InvalidData([name], reason))
    )
  )

/**
 * The connection read from the environment (or any `ConfigProvider`):
 *
 * - `REDIS_CLUSTER_NODES` (comma-separated `host:port`): a Cluster; else
 * - `REDIS_SENTINELS` (comma-separated `host:port`, port 26379 by default) with
 *   `REDIS_SENTINEL_MASTER` (the master's name, default `mymaster`) and an optional
 *   `REDIS_SENTINEL_PASSWORD`: Sentinel; else
 * - `REDIS_URL`: a single node (read as `Redacted`: the URL may hold a password).
 * - `REDIS_PASSWORD` (optional, `Redacted`): the data nodes' password, for all three.
 *
 * @since 0.2.0
 * @category config
 */
export const config: Config.Config<Options> = Config.all({
  cluster: Config.option(hostPorts("REDIS_CLUSTER_NODES", 6379)),
  sentinels: Config.option(hostPorts("REDIS_SENTINELS", 26379)),
  master: Config.withDefault(Config.string("REDIS_SENTINEL_MASTER"), "mymaster"),
  sentinelPassword: Config.option(Config.redacted("REDIS_SENTINEL_PASSWORD")),
  password: Config.option(Config.redacted("REDIS_PASSWORD"))
}).pipe(
  Config.zipWith(Config.option(Config.redacted("REDIS_URL")), (env, url) => ({ env, url })),
  Config.mapOrFail(({ env, url }): Either.Either<Options, ConfigError.ConfigError> => {
    const common: CommonOptions = Option.match(env.password, {
      onNone: () => ({}),
      onSome: (password) => ({ password })
    })
    if (Option.isSome(env.cluster)) return Either.right({ cluster: env.cluster.value, ...common })
    if (Option.isSome(env.sentinels)) {
      return Either.right({
        sentinel: {
          sentinels: env.sentinels.value,
          name: env.master,
          ...(Option.isSome(env.sentinelPassword) ? { sentinelPassword: env.sentinelPassword.value } : {})
        },
        ...common
      })
    }
    if (Option.isSome(url)) return Either.right({ url: url.value, ...common })
    return Either.left(
      ConfigError.MissingData(["REDIS_URL"], "Expected REDIS_URL, REDIS_CLUSTER_NODES or REDIS_SENTINELS to be set")
    )
  })
)

/**
 * The transport configured from the environment (see {@link config}); `options` adds
 * the common options (timeouts, ioredis options) that the environment does not give.
 *
 * @since 0.2.0
 * @category layers
 */
export const layerConfig = (options?: CommonOptions): Layer.Layer<Transport, ConfigError.ConfigError> =>
  Layer.scoped(
    Transport,
    Effect.flatMap(config, (fromEnv) => make({ ...options, ...fromEnv }))
  )
