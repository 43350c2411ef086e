/**
 * Business sequence numbers: a per-key `seq` (the key is a message's `requestId` or
 * `streamId` by default) so a client can order and deduplicate the frames of one task
 * or topic.
 *
 * `SseKify.make` takes the `Sequencer` from the context. {@link layerMemory}: per
 * instance. {@link layerStore}: global on the {@link Store} of the context (one
 * `INCR` + `EXPIRE` round trip per `next`; `SequencerRedis.layerStore` on a Redis
 * connection, `Transport.layerMemory`'s counters, a `RedisLike` adapter's
 * `incr`/`expire`, or an explicit `seq.redis`), with the memory counter as the fallback
 * when the store is missing (one `SEQ_KV_FALLBACK` warning) or failing
 * (`lastSeqKvFallbackAt`). The counters live as long as the layer.
 *
 * @since 0.2.0
 */
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import type * as Duration from "effect/Duration"
import { type InvalidInput, type SeqKvFallback, TransportError } from "./Errors.js"
import { eitherEffect } from "./internal/durations.js"
import { Reports } from "./internal/reports.js"
import { SequencerState } from "./internal/sequencer.js"

/**
 * A key/value store for counters (the global `seq`): the store a sequencer is global
 * on. `Sequencer/Redis` offers one on a Redis connection; a `RedisLike` adapter with
 * `incr` (and `expire`) offers one through {@link kvFromIncr}.
 *
 * @since 0.2.0
 * @category models
 */
export interface Kv {
  /** Increments `key` and sets its time to live, returning the new value. */
  readonly incrExpire: (key: string, ttlSeconds: number) => Effect.Effect<number, TransportError>
  /** Sets the time to live of `key`. */
  readonly expire: (key: string, ttlSeconds: number) => Effect.Effect<void, TransportError>
}

/**
 * The store of a global sequence, as a service: what {@link layerStore} (and the
 * default assembled by `SseKify.layer`) takes from the context.
 *
 * @since 0.2.0
 * @category tags
 */
export class Store extends Context.Tag("ssekify/Sequencer/Store")<Store, Kv>() {}

/**
 * A {@link Store} layer.
 *
 * @since 0.2.0
 * @category layers
 */
export const layerStoreOf = (kv: Kv): Layer.Layer<Store> => Layer.succeed(Store, kv)

/**
 * The optional key/value commands of a `RedisLike` adapter (or an explicit `seq.redis`).
 *
 * @since 0.2.0
 * @category models
 */
export interface RedisKvLike {
  incr(key: string): Promise<number> | number
  expire?(key: string, seconds: number): Promise<unknown> | unknown
  pexpire?(key: string, ms: number): Promise<unknown> | unknown
}

const tryKv = <A>(operation: string, f: () => Promise<A> | A): Effect.Effect<A, TransportError> =>
  Effect.tryPromise({
    try: async () => await f(),
    catch: (cause) => new TransportError({ operation, cause })
  })

/**
 * A {@link Kv} over an object with `incr` (and `expire`): a `RedisLike` adapter, its
 * `kv` property, or an explicit `seq.redis` client. `incr` and `expire` are two round
 * trips here; `Sequencer/Redis` does both in one script.
 *
 * @since 0.2.0
 * @category constructors
 */
export const kvFromIncr = (client: RedisKvLike): Kv => ({
  incrExpire: (key, ttlSeconds) =>
    Effect.flatMap(tryKv("incr", () => client.incr(key)), (n) =>
      ttlSeconds > 0 && typeof client.expire === "function"
        ? Effect.as(tryKv("expire", () => client.expire!(key, ttlSeconds)), Number(n))
        : Effect.succeed(Number(n))),
  expire: (key, ttlSeconds) =>
    typeof client.expire === "function" ? Effect.asVoid(tryKv("expire", () => client.expire!(key, ttlSeconds))) : Effect.void
})

/**
 * `seqIncrsLocal`, `seqIncrsRedis` and `lastSeqKvFallbackAt` of `stats()`.
 *
 * @since 0.2.0
 * @category models
 */
export interface SequencerCounters {
  seqIncrsLocal: number
  seqIncrsRedis: number
  lastSeqKvFallbackAt: number
}

/**
 * The sequencer service.
 *
 * @since 0.2.0
 * @category models
 */
export interface SequencerService {
  /** Next value from the in-memory counter (synchronous: the `sendTo*` path). */
  readonly nextLocal: (key: string, final: boolean) => number
  /** Next value, global when a store is configured. Never fails: falls back to memory. */
  readonly next: (key: string, final: boolean) => Effect.Effect<number>
  /** Drops in-memory keys idle longer than the TTL. */
  readonly sweep: Effect.Effect<void>
  readonly counters: Readonly<SequencerCounters>
  /** Keys held in memory. */
  readonly size: () => number
  /**
   * Tells `listener` (until the scope closes) what the sequencer reports in the
   * background: the one `SEQ_KV_FALLBACK` warning, a failing store. `SseKify.make`
   * subscribes the instance's `'error'` events; a sequencer shared by several instances
   * tells each of them.
   */
  readonly subscribeErrors?: ((listener: (warning: SeqKvFallback | TransportError) => void) => Effect.Effect<void, never, Scope.Scope>) | undefined
}

/**
 * The sequencer tag.
 *
 * @since 0.2.0
 * @category tags
 */
export class Sequencer extends Context.Tag("ssekify/Sequencer")<Sequencer, SequencerService>() {}

/**
 * Options of a sequencer.
 *
 * @since 0.2.0
 * @category models
 */
export interface Options {
  /** First value of a key (`seq.startAt`): 0 or 1. Default 0. */
  readonly startAt?: 0 | 1 | undefined
  /** Idle keys expire after this many seconds (`seq.redisTTLSeconds`). Default 86 400. */
  readonly ttlSeconds?: number | undefined
  /**
   * `ttlSeconds` as a Duration (whole seconds, rounded up); give one of the two.
   *
   * @since 0.3.0
   */
  readonly ttl?: Duration.DurationInput | undefined
  /** In-memory keys kept at most (the least recently used go first). Default 100 000. */
  readonly maxKeys?: number | undefined
  /** Prefix of the keys in the store (`seq.redisKeyPrefix`). Default `'ssekify:seq:'`. */
  readonly keyPrefix?: string | undefined
  /** The store for a global sequence. */
  readonly kv?: Kv | undefined
  /** Warn (once, at the first `next`) that no store is configured: a bus is, so `seq` is per instance. */
  readonly expectKv?: boolean | undefined
}

// The seconds given as such are taken as they are (0.2.0); a Duration is rounded up to whole seconds.
const ttlSecondsOf = (options: Options | undefined): Effect.Effect<number, InvalidInput> =>
  options?.ttl === undefined
    ? eitherEffect("ttlSeconds", undefined, "ttlSeconds", options?.ttlSeconds, 86_400)
    : Effect.map(eitherEffect("ttl", options.ttl, "ttlSeconds", options.ttlSeconds, 0), (ms) => Math.ceil(ms / 1000))

/**
 * Makes a sequencer. Time comes from the Effect `Clock`.
 *
 * @since 0.2.0
 * @category constructors
 */
export const make = (options?: Options): Effect.Effect<SequencerService, InvalidInput> =>
  Effect.zipWith(Effect.clock, ttlSecondsOf(options), (clock, ttlSeconds) => {
    const now = () => clock.unsafeCurrentTimeMillis()
    const o = options ?? {}
    const reports = new Reports<SeqKvFallback | TransportError>()
    const state = new SequencerState(
      {
        startAt: o.startAt ?? 0,
        ttlSeconds,
        maxKeys: o.maxKeys ?? 100_000,
        keyPrefix: o.keyPrefix ?? "ssekify:seq:"
      },
      Option.fromNullable(o.kv),
      o.expectKv ?? false,
      now,
      reports.emit
    )
    return {
      nextLocal: (key, final) => state.nextLocal(key, final),
      next: (key, final) => state.next(key, final),
      sweep: Effect.sync(() => void state.sweep(now())),
      counters: state.counters,
      size: () => state.size,
      subscribeErrors: reports.subscribe
    }
  })

/**
 * An in-memory sequencer (per instance): the default of `SseKify.layer` without a
 * {@link Store}. Its state (the counters) lives as long as the layer.
 *
 * @since 0.2.0
 * @category layers
 */
export const layerMemory = (options?: Omit<Options, "kv">): Layer.Layer<Sequencer, InvalidInput> =>
  Layer.effect(Sequencer, make(options))

/**
 * A sequencer global on the {@link Store} in the context (one `INCR` + `EXPIRE` round
 * trip per `next`, memory as the fallback while the store fails).
 *
 * @since 0.2.0
 * @category layers
 */
export const layerStore = (
  options?: Omit<Options, "kv" | "expectKv">
): Layer.Layer<Sequencer, InvalidInput, Store> =>
  Layer.effect(Sequencer, Effect.flatMap(Store, (kv) => make({ ...options, kv })))

/**
 * {@link layerMemory} with options from a `Config`, each option its own config
 * (`Config.Wrap`): `layerMemoryConfig({ ttl: Config.duration("SEQ_TTL") })`.
 *
 * @since 0.3.0
 * @category layers
 */
export const layerMemoryConfig = (
  options: Config.Config.Wrap<Omit<Options, "kv">>
): Layer.Layer<Sequencer, InvalidInput | ConfigError.ConfigError> =>
  Layer.unwrapEffect(Effect.map(Config.unwrap(options), layerMemory))

/**
 * {@link layerStore} with options from a `Config`, each option its own config
 * (`Config.Wrap`).
 *
 * @since 0.3.0
 * @category layers
 */
export const layerStoreConfig = (
  options: Config.Config.Wrap<Omit<Options, "kv" | "expectKv">>
): Layer.Layer<Sequencer, InvalidInput | ConfigError.ConfigError, Store> =>
  Layer.unwrapEffect(Effect.map(Config.unwrap(options), layerStore))
