/**
 * One Redis connection set, shared by every Redis backend of an instance: the
 * publisher, subscriber and KV ioredis clients of a URL, an existing client, a Redis
 * Cluster or a Sentinel set, opened once and closed (`QUIT`, then disconnect) when the
 * layer's scope closes.
 *
 * Each Redis backend is a layer on this service: `TransportRedis.layer` (Pub/Sub),
 * `SequencerRedis.layerStore` (the global `seq` counters), `ReplayBufferRedis.layerStore`
 * (the shared replay buffer), `PresenceRedis.layerStore` (cluster-wide presence). Their
 * multi-step work is one Lua script each (`defineCommand`), and every command goes
 * through `Effect.tryPromise` into a `TransportError` (message + cause).
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
 *
 * ```ts
 * import { Layer } from "effect"
 * import { SseKify } from "ssekify"
 * import { RedisConnection, SequencerRedis, TransportRedis } from "ssekify/redis"
 *
 * const Redis = RedisConnection.layer({ url: "redis://127.0.0.1:6379" })
 * const Live = SseKify.layer({ channel: "app:sse" }).pipe(
 *   Layer.provide(Layer.mergeAll(TransportRedis.layer, SequencerRedis.layerStore)),
 *   Layer.provide(Redis)
 * )
 * ```
 *
 * @since 0.2.0
 */
import * as Config from "effect/Config"
import * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import type { Cluster, ClusterNode, ClusterOptions, Redis, RedisOptions } from "ioredis"
import type { ConnectionTuning } from "./internal/redis/tuning.js"
import type { TransportError } from "./Errors.js"
import type * as Clients from "./internal/redis/clients.js"
import { Connection, connectionOf } from "./internal/redis/connection.js"
import { settingsOf, timingOf } from "./internal/redis/options.js"

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
 * Use an existing ioredis client (`Redis` or `Cluster`): the connection opens its own
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
export interface CommonOptions extends ConnectionTuning {
  /**
   * ioredis options for every connection (for a Cluster: the options of its nodes).
   * The options that give each connection its role (offline queue, retries per
   * request, resubscription, connection name) are set by the transport.
   */
  readonly redisOptions?: RedisOptions | undefined
}

/**
 * The options of {@link make} and {@link layer} (and of `RedisTransport`): where to connect, plus
 * {@link CommonOptions}.
 *
 * @since 0.2.0
 * @category models
 */
export type Options = (UrlOptions | ClientOptions | ClusterConnectionOptions | SentinelOptions) & CommonOptions

/** @internal */
export const sourceOf = (options: Options): Clients.Source => {
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
// the service
// ---------------------------------------------------------------------------

/**
 * The connection set: the three ioredis clients, and the gated commands every Redis
 * backend uses.
 *
 * @since 0.2.0
 * @category models
 */
export interface RedisConnectionService {
  /** The publisher connection (commands fail fast while it is away). */
  readonly publisher: Redis | Cluster
  /** The subscriber connection (subscriber mode: no other command). */
  readonly subscriber: Redis | Cluster
  /** The KV connection: counters, replay, presence. */
  readonly kv: Redis | Cluster
  /** `PUBLISH`, waiting at most `offlineTimeout` for a reconnecting connection; one pipeline per tick. */
  readonly publish: (channel: string, message: string) => Effect.Effect<number, TransportError>
  /**
   * Runs a command on the KV connection once it is ready (at most `offlineTimeout`),
   * as an effect failing with a `TransportError` named by `operation` (credentials
   * redacted from the cause).
   */
  readonly command: <A>(operation: string, f: (kv: Redis | Cluster) => Promise<A>) => Effect.Effect<A, TransportError>
  /** How long commands wait for a reconnecting connection, and subscriptions for Redis' confirmation (ms). */
  readonly timing: { readonly offlineTimeoutMs: number; readonly subscribeTimeoutMs: number }
  /** `promise`, or a rejection naming `what` when Redis has not confirmed it within the subscribe timeout. */
  readonly confirm: <A>(what: string, promise: Promise<A>) => Promise<A>
  /**
   * Calls `report` with the connection errors of the given connections, deduplicated
   * per outage (the loss once, then each distinct error once); returns the unwatch.
   */
  readonly watch: (roles: ReadonlyArray<"pub" | "sub" | "kv">, report: (error: Error) => void) => () => void
}

/**
 * The connection tag.
 *
 * @since 0.2.0
 * @category tags
 */
export class RedisConnection extends Context.Tag("ssekify/RedisConnection")<RedisConnection, RedisConnectionService>() {}

const acquire = (open: () => Connection): Effect.Effect<RedisConnectionService, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.try({ try: open, catch: (error) => error }).pipe(Effect.orDie),
    (connection) => Effect.promise(() => connection.close())
  )

/**
 * Opens the publisher, subscriber and KV connections; they are closed when the scope
 * closes. It does not wait for Redis (an unreachable Redis at start is reported by the
 * commands, not by a failed layer). Dies with a clear message when `ioredis` is not
 * installed.
 *
 * @since 0.2.0
 * @category constructors
 */
export const make = (options: Options): Effect.Effect<RedisConnectionService, never, Scope.Scope> =>
  acquire(() => Connection.open(sourceOf(options), settingsOf(options), timingOf(options)))

/**
 * The connection as a layer.
 *
 * ```ts
 * RedisConnection.layer({ url: "redis://127.0.0.1:6379" })
 * RedisConnection.layer({ client: existingIORedisClient })
 * RedisConnection.layer({ cluster: [{ host: "10.0.0.1", port: 7000 }], password })
 * RedisConnection.layer({ sentinel: { sentinels: [{ host: "10.0.0.5", port: 26379 }], name: "mymaster" } })
 * ```
 *
 * @since 0.2.0
 * @category layers
 */
export const layer = (options: Options): Layer.Layer<RedisConnection> => Layer.scoped(RedisConnection, make(options))

/**
 * The connection with options from a `Config` (each field its own config, as
 * `Config.Wrap` allows: `layerConfig({ url: Config.redacted("REDIS_URL") })`).
 *
 * @since 0.2.0
 * @category layers
 */
export const layerConfig = (options: Config.Config.Wrap<Options>): Layer.Layer<RedisConnection, ConfigError.ConfigError> =>
  Layer.scoped(RedisConnection, Effect.flatMap(Config.unwrap(options), make))

/**
 * The connection of an adapter made by `createIORedisAdapter` (the same three
 * clients); `None` for any other adapter. With `closeOnRelease` the adapter is closed
 * when the scope closes; otherwise it stays open.
 *
 * @since 0.2.0
 * @category constructors
 */
export const fromAdapter = (
  adapter: unknown,
  options?: { readonly closeOnRelease?: boolean }
): Option.Option<Effect.Effect<RedisConnectionService, never, Scope.Scope>> =>
  Option.map(Option.fromNullable(connectionOf(adapter)), (connection) =>
    options?.closeOnRelease
      ? acquire(() => connection)
      : Effect.succeed(connection))

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

