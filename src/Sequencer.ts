/**
 * Business sequence numbers: a per-key `seq` (the key is a message's `requestId` or
 * `streamId` by default) so a client can order and deduplicate the frames of one task
 * or topic.
 *
 * The memory counter is per instance; with a key/value store (the Redis transport's
 * KV connection, a `RedisLike` adapter's `incr`/`expire`, or an explicit
 * `seq.redis`) `next` is global: one `INCR` + `EXPIRE` round trip, with the memory
 * counter as the fallback when the store is missing (one `SEQ_KV_FALLBACK` warning)
 * or failing (`lastSeqKvFallbackAt`).
 *
 * @since 0.2.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type { SeqKvFallback, TransportError } from "./Errors.js"
import { SequencerImpl } from "./internal/sequencer.js"
import { type Kv, Transport } from "./Transport.js"

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
  /** In-memory keys kept at most (the least recently used go first). Default 100 000. */
  readonly maxKeys?: number | undefined
  /** Prefix of the keys in the store (`seq.redisKeyPrefix`). Default `'ssekify:seq:'`. */
  readonly keyPrefix?: string | undefined
  /** The store for a global sequence. */
  readonly kv?: Kv | undefined
  /** Warn (once) when no store is configured. */
  readonly expectKv?: boolean | undefined
  /** Where the fallback warnings go. */
  readonly onWarning?: ((warning: SeqKvFallback | TransportError) => void) | undefined
}

/** @internal */
export const unsafeMakeImpl = (options: Options, now: () => number): SequencerImpl =>
  new SequencerImpl(
    {
      startAt: options.startAt ?? 0,
      ttlSeconds: options.ttlSeconds ?? 86_400,
      maxKeys: options.maxKeys ?? 100_000,
      keyPrefix: options.keyPrefix ?? "ssekify:seq:"
    },
    Option.fromNullable(options.kv),
    options.expectKv ?? false,
    now,
    options.onWarning ?? (() => {})
  )

/** @internal */
export const fromImpl = (impl: SequencerImpl, now: () => number): SequencerService => ({
  nextLocal: (key, final) => impl.nextLocal(key, final),
  next: (key, final) => impl.next(key, final),
  sweep: Effect.sync(() => void impl.sweep(now())),
  counters: impl.counters,
  size: () => impl.size
})

/**
 * Makes a sequencer. Time comes from the Effect `Clock`.
 *
 * @since 0.2.0
 * @category constructors
 */
export const make = (options?: Options): Effect.Effect<SequencerService> =>
  Effect.map(Effect.clock, (clock) => {
    const now = () => clock.unsafeCurrentTimeMillis()
    return fromImpl(unsafeMakeImpl(options ?? {}, now), now)
  })

/**
 * An in-memory sequencer (per instance).
 *
 * @since 0.2.0
 * @category layers
 */
export const layerMemory = (options?: Omit<Options, "kv">): Layer.Layer<Sequencer> =>
  Layer.effect(Sequencer, make(options))

/**
 * A sequencer on the key/value store of the `Transport` in context (global when the
 * transport has one, memory with one warning otherwise).
 *
 * @since 0.2.0
 * @category layers
 */
export const layerTransport = (options?: Omit<Options, "kv">): Layer.Layer<Sequencer, never, Transport> =>
  Layer.effect(
    Sequencer,
    Effect.flatMap(Transport, (transport) =>
      make({ ...options, kv: Option.getOrUndefined(transport.kv), expectKv: transport.kind !== "none" }))
  )
