/**
 * The cross-instance bus.
 *
 * A `Transport` publishes text messages on a channel and hands the messages of a
 * channel to a subscriber. It is only the bus: the stores a backend may also offer (a
 * counter store for a global `seq`, a replay store, a presence store) are their own
 * services (`Sequencer.Store`, `ReplayBuffer.Store`, `Presence.Store`), provided by the
 * same layer when the backend has them. Layers:
 *
 * - {@link layerNone}: a single instance; `publish` delivers locally only.
 * - {@link layerMemory}: an in-process bus shared by several instances in one process
 *   (for tests: they talk as if Redis were there); also a `Sequencer.Store`, so `seq`
 *   is global across them.
 * - {@link layerRedisLike}: any object with the `RedisLike` shape of the original
 *   (`publish`, `subscribe`, `on('message')`, …), plus a `Sequencer.Store` when the
 *   adapter has `incr` (and `expire`).
 * - `TransportRedis.layer` on a `RedisConnection` (ioredis: separate publisher,
 *   subscriber and KV connections); `RedisTransport.layer(options)` is that with the
 *   connection and the Redis stores.
 *
 * @since 0.2.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import { TransportError } from "./Errors.js"
import * as internalMemoryRouted from "./internal/memoryRouted.js"
import { MemoryBus } from "./internal/memoryBus.js"
import * as Sequencer from "./Sequencer.js"

export type {
  /** The counter store (moved to `Sequencer`; a `Sequencer.Store` service). */
  Kv,
  /** The optional key/value commands of a `RedisLike` adapter (moved to `Sequencer`). */
  RedisKvLike
} from "./Sequencer.js"

/**
 * What a subscriber is given: every message on its channel, and the errors the bus
 * reports (a dropped connection, a failed resubscribe). Errors are not terminal: a
 * transport keeps trying to deliver.
 *
 * @since 0.2.0
 * @category models
 */
export interface Handlers {
  readonly onMessage: (message: string) => void
  readonly onError: (error: TransportError) => void
}

/**
 * How messages travel on the bus:
 *
 * - `"channel"` (the default): one shared channel, the JSON envelope of 0.1.6, so 0.1.6
 *   instances can share it during a rolling upgrade; every instance receives every message.
 * - `"user"`: a per-user message goes on that user's channel ({@link userChannel}), a room
 *   message on the room's ({@link roomChannel}), broadcasts on the shared channel; an
 *   instance subscribes only to the users and rooms it holds, and the frame crosses the bus
 *   encoded once (a new wire format, not readable by 0.1.6). A connection whose user's
 *   channel is not confirmed yet is registered at once (local sends reach it), but its
 *   replay (`Last-Event-ID`) runs, and its `'connect'` event fires, once the channel is
 *   confirmed (or its confirmation failed, reported as a `TransportError`): what another
 *   instance published in between comes from a shared replay store (`replay: 'redis'`: a
 *   message to one user with an id is on the bus only once its record is in Redis). Room
 *   messages are kept only by the instances holding the user's connections, as in the
 *   single-channel mode: a room message published before this instance's subscription
 *   to the room is confirmed is not replayed to a reconnect that joins the room.
 *
 * @since 0.3.0
 * @category models
 */
export type Routing = "channel" | "user"

/**
 * The per-user channel of `userId` in routed mode: `<channel>:u:{<userId>}` (the braces
 * are a Redis Cluster hash tag: the slot depends on the user id only).
 *
 * @since 0.3.0
 * @category routing
 */
export const userChannel = (channel: string, userId: string): string => `${channel}:u:{${userId}}`

/**
 * The per-room channel of `room` in routed mode: `<channel>:r:{<room>}`.
 *
 * @since 0.3.0
 * @category routing
 */
export const roomChannel = (channel: string, room: string): string => `${channel}:r:{${room}}`

/**
 * How the Redis transport routes messages.
 *
 * @since 0.3.0
 * @category models
 */
export interface RoutingOptions {
  /**
   * `"channel"` (the default): one shared channel, readable by 0.1.6 instances.
   * `"user"`: per-user and per-room channels (`Transport.userChannel`,
   * `Transport.roomChannel`) besides the shared channel of broadcasts; an instance
   * receives only the messages of the users and rooms it holds.
   */
  readonly routing?: Routing | undefined
  /**
   * With `routing: "user"`: whether the routed channels use sharded Pub/Sub
   * (`SSUBSCRIBE` / `SPUBLISH`, Redis ≥ 7). `"auto"` (the default): on a Redis Cluster
   * yes, on a single node or Sentinel no. The shared channel of broadcasts stays classic
   * Pub/Sub in every case (every instance listens to it).
   */
  readonly sharded?: boolean | "auto" | undefined
}

/**
 * The dynamic channels of a routed transport (`routing: "user"`). Interest is counted
 * per channel: the first {@link RoutedChannels.add} subscribes, the last
 * {@link RoutedChannels.remove} unsubscribes; the subscribes and unsubscribes of one
 * tick leave in one command per connection (per shard on a Cluster).
 *
 * @since 0.3.0
 * @category models
 */
export interface RoutedChannels {
  /**
   * Adds one interest in each of `channels` (synchronously, when the effect runs: a message
   * published on an in-process bus after that is seen). Completes when the bus has
   * confirmed every one of them; fails with `TransportError` when it does not within the
   * subscribe timeout (the subscription keeps being retried in the background).
   */
  readonly add: (channels: ReadonlyArray<string>) => Effect.Effect<void, TransportError>
  /** Drops one interest in each of `channels`; the last one unsubscribes. */
  readonly remove: (channels: ReadonlyArray<string>) => void
  /**
   * Sets the receiver of the messages of every routed channel (one per transport, removed
   * when the scope closes). Errors are not terminal.
   */
  readonly listen: (
    onMessage: (channel: string, message: string) => void,
    onError: (error: TransportError) => void
  ) => Effect.Effect<void, never, Scope.Scope>
  /** Publishes on a routed channel (on a Cluster with sharded Pub/Sub: `SPUBLISH`). */
  readonly publish: (channel: string, message: string) => Effect.Effect<void, TransportError>
}

/**
 * The transport service.
 *
 * @since 0.2.0
 * @category models
 */
export interface TransportService {
  /** A short name for logs and stats: `none`, `memory`, `redis-like`, `redis`. */
  readonly kind: string
  /** Publishes `message` on `channel`. Fails with `TransportError` when the bus is unreachable. */
  readonly publish: (channel: string, message: string) => Effect.Effect<void, TransportError>
  /**
   * Registers `handlers` for `channel` (synchronously: messages published after this
   * effect ran are seen) and unsubscribes when the scope closes.
   */
  readonly subscribe: (channel: string, handlers: Handlers) => Effect.Effect<void, never, Scope.Scope>
  /**
   * Present when the transport routes per user and room (`routing: "user"`): the engine
   * then publishes per-user and room messages on their own channels, subscribes to the
   * channels of the users and rooms it holds, and uses the routed wire format. Broadcasts
   * stay on the shared channel (`publish` / `subscribe` above).
   */
  readonly routed?: RoutedChannels | undefined
}

/**
 * The transport tag.
 *
 * @since 0.2.0
 * @category tags
 */
export class Transport extends Context.Tag("ssekify/Transport")<Transport, TransportService>() {}

/**
 * No bus: a single instance. `publish` delivers to the local connections only.
 *
 * @since 0.2.0
 * @category layers
 */
export const none: TransportService = {
  kind: "none",
  publish: () => Effect.void,
  subscribe: () => Effect.void
}

/**
 * @since 0.2.0
 * @category layers
 */
export const layerNone: Layer.Layer<Transport> = Layer.succeed(Transport, none)

// ---------------------------------------------------------------------------
// RedisLike: the adapter shape of the original package
// ---------------------------------------------------------------------------

/**
 * The adapter interface of the original ssekify: `publish`, `subscribe` and
 * `on('message' | 'error')` are required; `close` and the key/value commands
 * (`incr`, `expire`, `pexpire` or a `kv` object with them) are optional.
 *
 * @since 0.2.0
 * @category models
 */
export interface RedisLike {
  publish(channel: string, message: string): Promise<unknown> | unknown
  subscribe(channel: string): Promise<unknown> | unknown
  on(event: "message", listener: (channel: string, message: string) => void): unknown
  on(event: "error", listener: (error: unknown) => void): unknown
  close?(): Promise<void> | void
  incr?(key: string): Promise<number> | number
  expire?(key: string, seconds: number): Promise<unknown> | unknown
  pexpire?(key: string, ms: number): Promise<unknown> | unknown
  kv?: Sequencer.RedisKvLike | undefined
}

/**
 * `true` when `value` has the required methods of a {@link RedisLike} adapter.
 *
 * @since 0.2.0
 * @category guards
 */
export const isRedisLike = (value: unknown): value is RedisLike =>
  typeof value === "object" && value !== null &&
  typeof (value as RedisLike).publish === "function" &&
  typeof (value as RedisLike).subscribe === "function" &&
  typeof (value as RedisLike).on === "function"

const tryPromise = <A>(operation: string, f: () => Promise<A> | A): Effect.Effect<A, TransportError> =>
  Effect.tryPromise({
    try: async () => await f(),
    catch: (cause) => new TransportError({ operation, cause })
  })

/**
 * The counter store a `RedisLike` adapter offers, found the way the original did:
 * `incr` + `expire` on the adapter, else its `kv` object with `incr`.
 *
 * @since 0.2.0
 * @category constructors
 */
export const storeOfRedisLike = (adapter: RedisLike): Option.Option<Sequencer.Kv> => {
  if (typeof adapter.incr === "function" && typeof adapter.expire === "function") {
    return Option.some(Sequencer.kvFromIncr(adapter as Sequencer.RedisKvLike))
  }
  if (adapter.kv && typeof adapter.kv.incr === "function") return Option.some(Sequencer.kvFromIncr(adapter.kv))
  return Option.none()
}

/**
 * A transport over a `RedisLike` adapter. Several subscriptions may share one adapter
 * (each filters its channel). With `closeOnRelease`, the adapter's `close()` runs when
 * the layer's scope closes (what `shutdown()` did in the original).
 *
 * @since 0.2.0
 * @category constructors
 */
export const fromRedisLike = (
  adapter: RedisLike,
  options?: { readonly closeOnRelease?: boolean }
): Effect.Effect<TransportService, never, Scope.Scope> =>
  Effect.gen(function*() {
    type Sub = { readonly channel: string; readonly handlers: Handlers }
    const subs = new Set<Sub>()
    let listening = false
    const listen = () => {
      if (listening) return
      listening = true
      adapter.on("message", (channel: string, message: string) => {
        for (const sub of subs) if (sub.channel === channel) sub.handlers.onMessage(message)
      })
      try {
        adapter.on("error", (error: unknown) => {
          const err = new TransportError({ operation: "adapter", cause: error })
          for (const sub of subs) sub.handlers.onError(err)
        })
      } catch {
        // an adapter may not support 'error' listeners
      }
    }
    if (options?.closeOnRelease && typeof adapter.close === "function") {
      yield* Effect.addFinalizer(() => Effect.ignore(tryPromise("close", () => adapter.close!())))
    }
    const service: TransportService = {
      kind: "redis-like",
      publish: (channel, message) => Effect.asVoid(tryPromise("publish", () => adapter.publish(channel, message))),
      subscribe: (channel, handlers) =>
        Effect.gen(function*() {
          const sub: Sub = { channel, handlers }
          listen()
          subs.add(sub)
          yield* Effect.addFinalizer(() => Effect.sync(() => subs.delete(sub)))
          yield* tryPromise("subscribe", () => adapter.subscribe(channel)).pipe(
            Effect.catchAll((error) => Effect.sync(() => handlers.onError(error))),
            Effect.forkScoped
          )
        })
    }
    return service
  })

/**
 * The transport on a `RedisLike` adapter, and its counter store ({@link storeOfRedisLike})
 * as a `Sequencer.Store` when it has one (`seq` is then global, as in the original;
 * the type names only what every adapter gives).
 *
 * @since 0.2.0
 * @category layers
 */
export const layerRedisLike = (
  adapter: RedisLike,
  options?: { readonly closeOnRelease?: boolean }
): Layer.Layer<Transport> =>
  Layer.scopedContext(
    Effect.map(fromRedisLike(adapter, options), (transport) =>
      Option.match(storeOfRedisLike(adapter), {
        onNone: () => Context.make(Transport, transport),
        onSome: (kv) => Context.make(Transport, transport).pipe(Context.add(Sequencer.Store, kv))
      }))
  )

// ---------------------------------------------------------------------------
// In-process bus
// ---------------------------------------------------------------------------

export {
  /**
   * An in-process bus: several instances in one process that share it exchange
   * `publish` / `publishToRoom` as they would through Redis; it also keeps counters, so
   * `seq` is global across them (see `internal/memoryBus.ts`).
   */
  MemoryBus
} from "./internal/memoryBus.js"

/**
 * Creates an in-process bus (the one name: the facade's docs and the Effect API use it).
 *
 * @since 0.2.0
 * @category constructors
 */
export const createMemoryBus = (): MemoryBus => new MemoryBus()

/**
 * Options of the in-process transport.
 *
 * @since 0.3.0
 * @category models
 */
export interface MemoryOptions {
  /** `"user"`: per-user and per-room channels ({@link RoutedChannels}); default `"channel"`. */
  readonly routing?: Routing | undefined
  /**
   * Routed mode only, for tests: called with the channels each {@link RoutedChannels.add}
   * subscribes to for the first time; the bus delivers their messages once the returned
   * promise resolves (as a broker does once it acknowledged the subscribe), and the add
   * completes then. When it rejects, the add fails with a `TransportError` (operation
   * `"subscribe"`) and the channels stay deaf until removed and added again — a broker's
   * slow or failed confirmation that the test controls. Default: confirmed at once
   * (synchronously: a message published after the add is seen).
   */
  readonly confirm?: ((channels: ReadonlyArray<string>) => Promise<void> | void) | undefined
}

/**
 * A transport on an in-process bus. With `routing: "user"` it also has the
 * {@link RoutedChannels} of the bus (see {@link MemoryOptions}).
 *
 * @since 0.2.0
 * @category constructors
 */
export const memory = (bus: MemoryBus, options?: MemoryOptions): TransportService => ({
  kind: "memory",
  publish: (channel, message) => Effect.sync(() => void bus.publish(channel, message)),
  subscribe: (channel, handlers) =>
    Effect.acquireRelease(
      Effect.sync(() => bus.subscribe(channel, handlers.onMessage)),
      (unsubscribe) => Effect.sync(unsubscribe)
    ).pipe(Effect.asVoid),
  routed: options?.routing === "user" ? internalMemoryRouted.make(bus, options.confirm) : undefined
})

/**
 * The counters of an in-process bus as a `Sequencer.Store` (`seq` global across the
 * instances that share the bus). Time is the bus's (`Date.now`).
 *
 * @since 0.2.0
 * @category constructors
 */
export const memoryStore = (bus: MemoryBus): Sequencer.Kv => ({
  incrExpire: (key, ttlSeconds) =>
    Effect.sync(() => {
      const n = bus.incr(key)
      if (ttlSeconds > 0) bus.expire(key, ttlSeconds)
      return n
    }),
  expire: (key, ttlSeconds) => Effect.sync(() => void bus.expire(key, ttlSeconds))
})

/**
 * The in-process bus as a transport, with its counters as the `Sequencer.Store`
 * (`{ routing: "user" }`: routed, see {@link MemoryOptions}).
 *
 * @since 0.2.0
 * @category layers
 */
export const layerMemory = (bus: MemoryBus, options?: MemoryOptions): Layer.Layer<Transport | Sequencer.Store> =>
  Layer.merge(Layer.succeed(Transport, memory(bus, options)), Sequencer.layerStoreOf(memoryStore(bus)))
