/**
 * What a reconnecting browser missed: the recent frames (those with an `id`) of each
 * user, so a connection that arrives with `Last-Event-ID` gets the frames after it,
 * before any live frame.
 *
 * The memory layer keeps a ring of the last `recentBufferSize` frames per user,
 * forgets users inactive for `recentTTLMs` (one sweep, scheduled by `SseKify`) and
 * keeps at most `recentMaxUsers` users, evicting the least recently active in O(1).
 *
 * @since 0.2.0
 */
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as FiberSet from "effect/FiberSet"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import type { InvalidInput, TransportError } from "./Errors.js"
import { eitherEffect } from "./internal/durations.js"
import { MemoryReplay, type MemoryReplayOptions } from "./internal/replay.js"
import { RedisReplay } from "./internal/replayRedis.js"
import { Reports } from "./internal/reports.js"

/**
 * Why a reconnect cannot get everything it missed: the id was never seen or was cleared
 * (`unknown`), the user's frames expired (`expired`) or were evicted by the user limit or
 * pushed out of the ring (`evicted`), or frames were sent while the user had no
 * connection and were not kept (`offline`; see `replayOffline`).
 *
 * @since 0.2.0
 * @category models
 */
export type MissReason = "unknown" | "expired" | "evicted" | "offline"

/**
 * The result of a lookup: the frames after the id (possibly none: up to date), or a
 * miss and its reason.
 *
 * @since 0.2.0
 * @category models
 */
export type Lookup =
  | {
    readonly _tag: "Found"
    readonly frames: ReadonlyArray<Uint8Array>
    readonly ids: ReadonlyArray<string>
    /** Frames for the user were sent while it had no connection and were not kept. */
    readonly missed?: boolean | undefined
    /**
     * A store shared by instances (Redis): the order key (send time × 1024 + the
     * sender's counter) of the newest frame it had for the user, the last of `frames`
     * or, when none, the `lastEventId`'s own frame. Live frames at or below it reach the
     * connection through the replay (or the client had them) and are not written again.
     */
    readonly lastOrder?: number | undefined
  }
  | { readonly _tag: "Miss"; readonly reason: MissReason }

/**
 * The replay buffer service.
 *
 * @since 0.2.0
 * @category models
 */
export interface ReplayBufferService {
  /** False when replay is off (`recentBufferSize: 0`): nothing is recorded. */
  readonly enabled: boolean
  /**
   * Records a frame for a user. Synchronous: called on the delivery path. `order` places
   * it among the user's frames in a shared store (publish time × 1024 + the publisher's
   * counter), whichever instance records it.
   */
  readonly record: (userId: string, id: string, frame: Uint8Array, order?: number) => void
  /** Records one frame for several users (a broadcast, a room), each once. */
  readonly recordAll: (userIds: Iterable<string>, id: string, frame: Uint8Array, order?: number) => void
  /** The frames after `lastEventId` for `userId`. */
  readonly lookup: (userId: string, lastEventId: string) => Effect.Effect<Lookup, TransportError>
  /** Present when the store answers synchronously (memory): no live frame can interleave. */
  readonly lookupSync?: ((userId: string, lastEventId: string) => Lookup) | undefined
  /** Forgets one user's frames, or everyone's. */
  readonly clear: (userId?: string) => Effect.Effect<void, TransportError>
  /** Drops the users inactive for longer than the TTL. */
  readonly sweep: Effect.Effect<void>
  /** Users with recorded frames (in this store's view). */
  readonly users: () => number
  /**
   * Tells `listener` (until the scope closes) what fails in the background (a store
   * shared by instances: the appends of a tick). `SseKify.make` subscribes the
   * instance's `'error'` events; a buffer shared by several instances tells each.
   */
  readonly subscribeErrors?: ((listener: (error: TransportError) => void) => Effect.Effect<void, never, Scope.Scope>) | undefined
  /**
   * A frame with an id was for a user who has no connection here (`published`: this
   * instance published it, it did not come off the bus). Memory: record it (with
   * `replayOffline`, for a user who has a buffer) or remember that the user missed
   * something. Redis: the publishing instance records it, so a browser between two
   * instances still gets it; instances that got it off the bus leave it alone.
   */
  readonly offline?: ((userId: string, id: string, frame: Uint8Array, published: boolean, order?: number) => void) | undefined
  /**
   * A store shared by instances (Redis): completes once the frames recorded so far (before
   * the call) are in the store, their append done or failed (reported). An instance
   * publishes a message to one user with an id after it: another instance that subscribes
   * to the user (routed mode) or registers the user's connection meanwhile misses the
   * message on the bus but finds it in the store. Absent: nothing to wait for.
   *
   * @since 0.3.0
   */
  readonly recorded?: (() => Effect.Effect<void>) | undefined
}

/**
 * The replay buffer tag.
 *
 * @since 0.2.0
 * @category tags
 */
export class ReplayBuffer extends Context.Tag("ssekify/ReplayBuffer")<ReplayBuffer, ReplayBufferService>() {}

/**
 * Options of the memory replay buffer.
 *
 * @since 0.2.0
 * @category models
 */
export interface MemoryOptions {
  /** Frames kept per user (`recentBufferSize`). 0 turns replay off. Default 20. */
  readonly size?: number | undefined
  /** Users inactive this many ms are forgotten (`recentTTLMs`); 0: never. Default 30 min. */
  readonly ttlMs?: number | undefined
  /**
   * `ttlMs` as a Duration (`recentTTL`); give one of the two. Zero: never.
   *
   * @since 0.3.0
   */
  readonly ttl?: Duration.DurationInput | undefined
  /** Users kept at most (`recentMaxUsers`). Default 10 000. */
  readonly maxUsers?: number | undefined
  /**
   * Record frames for a user who has no connection but still has a buffer
   * (`replayOffline`), so a reconnect after a short gap gets them. Default false (0.1.6).
   */
  readonly recordOffline?: boolean | undefined
  /**
   * The buffer is shared by several instances in one process (one built layer given to
   * each): a frame is kept once whichever instance records it (by its order key and
   * id), and a frame for a user who has no connection is recorded by the instance that
   * published it, as the Redis buffer does (`recordOffline` does not apply). Default false.
   */
  readonly shared?: boolean | undefined
}

const ttlOf = (options: MemoryOptions | RedisOptions | undefined): Effect.Effect<number, InvalidInput> =>
  eitherEffect("ttl", options?.ttl, "ttlMs", options?.ttlMs, 30 * 60 * 1000)

/**
 * A memory replay buffer. Time comes from the Effect `Clock` (so `TestClock` drives
 * TTLs in tests).
 *
 * @since 0.2.0
 * @category constructors
 */
export const makeMemory = (options?: MemoryOptions): Effect.Effect<ReplayBufferService, InvalidInput> =>
  Effect.zipWith(Effect.clock, ttlOf(options), (clock, ttlMs) => {
    const resolved: MemoryReplayOptions = {
      size: Math.max(0, Math.floor(options?.size ?? 20)),
      ttlMs,
      maxUsers: Math.max(0, Math.floor(options?.maxUsers ?? 10_000)),
      recordOffline: options?.recordOffline ?? false,
      shared: options?.shared ?? false
    }
    const store = new MemoryReplay(resolved)
    const now = () => clock.unsafeCurrentTimeMillis()
    const lookupSync = (userId: string, lastEventId: string) => store.lookup(userId, lastEventId, now())
    return {
      enabled: store.enabled,
      record: (userId, id, frame, order) => store.record(userId, id, frame, now(), undefined, order),
      recordAll: (userIds, id, frame, order) => store.recordAll(userIds, id, frame, now(), order),
      lookupSync,
      lookup: (userId, lastEventId) => Effect.sync(() => lookupSync(userId, lastEventId)),
      clear: (userId) => Effect.sync(() => store.clear(userId)),
      sweep: Effect.sync(() => void store.sweep(now())),
      users: () => store.users,
      offline: (userId, id, frame, published, order) => store.offline(userId, id, frame, now(), published, order)
    }
  })

/**
 * The memory replay buffer: the default of `SseKify.layer` (from `recentBufferSize`,
 * `recentTTLMs`, `recentMaxUsers`, `replayOffline`). Its rings live as long as the
 * layer: two instances given the same built layer share them (a reconnect to either
 * replays).
 *
 * @since 0.2.0
 * @category layers
 */
export const layerMemory = (options?: MemoryOptions): Layer.Layer<ReplayBuffer, InvalidInput> =>
  Layer.effect(ReplayBuffer, makeMemory(options))

/**
 * {@link layerMemory} with options from a `Config`, each option its own config
 * (`Config.Wrap`): `layerMemoryConfig({ size: Config.integer("REPLAY_SIZE"), ttl: Config.duration("REPLAY_TTL") })`.
 *
 * @since 0.3.0
 * @category layers
 */
export const layerMemoryConfig = (
  options: Config.Config.Wrap<MemoryOptions>
): Layer.Layer<ReplayBuffer, InvalidInput | ConfigError.ConfigError> =>
  Layer.unwrapEffect(Effect.map(Config.unwrap(options), layerMemory))

/**
 * The list commands a store needs for a Redis replay buffer (a {@link Store} service: `ReplayBuffer/Redis` offers one).
 *
 * @since 0.2.0
 * @category models
 */
export interface ListStore {
  /**
   * Adds each value to its key's collection with its score (an identical value is kept
   * once), keeps the `maxLength` highest-scored, sets the TTL; one round trip.
   */
  readonly appendCapped: (
    entries: ReadonlyArray<readonly [key: string, value: Uint8Array, score: number]>,
    maxLength: number,
    ttlMs: number
  ) => Effect.Effect<void, TransportError>
  /** The items of a collection, lowest score first. */
  readonly list: (key: string) => Effect.Effect<ReadonlyArray<Uint8Array>, TransportError>
  readonly del: (keys: ReadonlyArray<string>) => Effect.Effect<void, TransportError>
}

/**
 * A store shared by instances that a replay buffer can be kept in, as a service:
 * `ReplayBuffer/Redis` offers one on a Redis connection (`RedisTransport.layer` and
 * the facade's `redis` option provide it). `replay: 'redis'` needs it.
 *
 * @since 0.2.0
 * @category tags
 */
export class Store extends Context.Tag("ssekify/ReplayBuffer/Store")<Store, ListStore>() {}

/**
 * Options of the Redis replay buffer.
 *
 * @since 0.2.0
 * @category models
 */
export interface RedisOptions {
  /** Frames kept per user (`recentBufferSize`). 0 turns replay off. Default 20. */
  readonly size?: number | undefined
  /** A user's frames expire this many ms after the last one (`recentTTLMs`); 0: never. Default 30 min. */
  readonly ttlMs?: number | undefined
  /**
   * `ttlMs` as a Duration (`recentTTL`); give one of the two. Zero: never.
   *
   * @since 0.3.0
   */
  readonly ttl?: Duration.DurationInput | undefined
  /** Key prefix; keys are `<prefix>{<userId>}`. Default `'ssekify:bus:replay:'`. */
  readonly keyPrefix?: string | undefined
}

/**
 * A replay buffer in Redis: a browser that reconnects to another instance still gets
 * what it missed. Frames recorded in one tick go to Redis in one round trip; lookups
 * are asynchronous (live frames arriving meanwhile are held and deduplicated).
 *
 * @since 0.2.0
 * @category constructors
 */
export const makeRedis = (
  store: ListStore,
  options?: RedisOptions
): Effect.Effect<ReplayBufferService, InvalidInput, Scope.Scope> =>
  Effect.gen(function*() {
    const ttlMs = yield* ttlOf(options)
    const run = yield* FiberSet.makeRuntime<never, void, never>()
    const reports = new Reports<TransportError>()
    const replay: RedisReplay = new RedisReplay(
      {
        size: Math.max(0, Math.floor(options?.size ?? 20)),
        ttlMs,
        keyPrefix: options?.keyPrefix ?? "ssekify:bus:replay:"
      },
      store,
      (effect) => void run(Effect.catchAll(effect, (error) => Effect.sync(() => reports.emit(error))))
    )
    // a publish waiting for its record is not left hanging when the appends stop
    yield* Effect.addFinalizer(() => Effect.sync(() => replay.release()))
    return {
      enabled: replay.enabled,
      record: (userId, id, frame, order) => replay.record(userId, id, frame, undefined, order),
      recordAll: (userIds, id, frame, order) => {
        const stamp = replay.nextStamp()
        for (const userId of userIds) replay.record(userId, id, frame, stamp, order)
      },
      lookupSync: undefined,
      recorded: () => replay.recorded(),
      offline: (userId, id, frame, published, order) => {
        if (published) replay.record(userId, id, frame, undefined, order)
      },
      lookup: (userId, lastEventId) => replay.lookup(userId, lastEventId),
      clear: (userId) => replay.clear(userId),
      sweep: Effect.void,
      users: () => replay.users,
      subscribeErrors: reports.subscribe
    }
  })

/**
 * A replay buffer kept in the {@link Store} of the context (see {@link makeRedis}); its
 * pending appends and background fibers belong to the layer's scope.
 *
 * @since 0.2.0
 * @category layers
 */
export const layerStore = (options?: RedisOptions): Layer.Layer<ReplayBuffer, InvalidInput, Store> =>
  Layer.scoped(ReplayBuffer, Effect.flatMap(Store, (store) => makeRedis(store, options)))

/**
 * {@link layerStore} with options from a `Config`, each option its own config
 * (`Config.Wrap`).
 *
 * @since 0.3.0
 * @category layers
 */
export const layerStoreConfig = (
  options: Config.Config.Wrap<RedisOptions>
): Layer.Layer<ReplayBuffer, InvalidInput | ConfigError.ConfigError, Store> =>
  Layer.unwrapEffect(Effect.map(Config.unwrap(options), layerStore))
