/**
 * Per-key `seq` counters: a bounded in-memory map (insertion order = activity order,
 * so idle keys expire and the oldest are evicted in O(1)), and a global counter on a
 * key/value store (`INCR` + `EXPIRE` in one round trip) that falls back to memory.
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { SeqKvFallback, type TransportError } from "../Errors.js"
import type { Kv, SequencerCounters, SequencerService } from "../Sequencer.js"

export interface SequencerOptions {
  /** First value of a key: 0 or 1. */
  readonly startAt: number
  /** Idle keys expire after this long (seconds); also the TTL of the Redis keys. */
  readonly ttlSeconds: number
  /** Keys kept in memory at most. */
  readonly maxKeys: number
  /** Prefix of the keys in the key/value store. */
  readonly keyPrefix: string
}


/** TTL given to a key after its final frame: the stream is over. */
const FINAL_TTL_SECONDS = 60

interface Entry {
  value: number
  lastAt: number
}

/** What the engine uses of a sequencer (any `Sequencer` service). */
export type SequencerImpl = Pick<SequencerService, "nextLocal" | "next" | "counters">

/** The state of one sequencer: its in-memory counters and, optionally, a global store. */
export class SequencerState {
  private readonly local = new Map<string, Entry>()
  readonly counters: SequencerCounters = { seqIncrsLocal: 0, seqIncrsRedis: 0, lastSeqKvFallbackAt: 0 }
  private warnedNoKv = false
  private kvFailing = false

  constructor(
    readonly options: SequencerOptions,
    /** The store for a global sequence; none = per instance. */
    readonly kv: Option.Option<Kv>,
    /** A bus is configured (so a missing store deserves the one warning). */
    private readonly expectsKv: boolean,
    private readonly now: () => number,
    private readonly warn: (error: SeqKvFallback | TransportError) => void
  ) {}

  get size(): number {
    return this.local.size
  }

  /** Next value of `key` from the in-memory counter. `final` drops the key after it. */
  nextLocal(key: string, final: boolean): number {
    const now = this.now()
    let entry = this.local.get(key)
    if (entry !== undefined) {
      this.local.delete(key)
      // Expired but not swept yet: a new stream, as Redis would see it.
      const ttlMs = this.options.ttlSeconds * 1000
      if (ttlMs > 0 && now - entry.lastAt > ttlMs) entry = undefined
    }
    if (entry === undefined) entry = { value: this.options.startAt - 1, lastAt: now }
    entry.value++
    entry.lastAt = now
    const value = entry.value
    this.counters.seqIncrsLocal++
    if (final) return value
    this.local.set(key, entry)
    if (this.local.size > this.options.maxKeys) {
      const oldest = this.local.keys().next()
      if (!oldest.done) this.local.delete(oldest.value)
    }
    return value
  }

  /**
   * Next value of `key`, global when a key/value store is configured: one `INCR` +
   * `EXPIRE` round trip. Without a store: memory, with one `SEQ_KV_FALLBACK` warning
   * when a bus is configured. A failing store: memory for that call,
   * `lastSeqKvFallbackAt` set, one warning per outage.
   */
  next(key: string, final: boolean): Effect.Effect<number> {
    if (Option.isNone(this.kv)) {
      if (this.expectsKv && !this.warnedNoKv) {
        this.warnedNoKv = true
        this.counters.lastSeqKvFallbackAt = this.now()
        this.warn(new SeqKvFallback({ reason: "the Redis adapter offers no incr/expire (KV) commands" }))
      }
      return Effect.sync(() => this.nextLocal(key, final))
    }
    const kv = this.kv.value
    const redisKey = this.options.keyPrefix + key
    const ttl = final ? FINAL_TTL_SECONDS : this.options.ttlSeconds
    return kv.incrExpire(redisKey, ttl).pipe(
      Effect.map((n) => {
        this.counters.seqIncrsRedis++
        this.kvFailing = false
        return this.options.startAt === 0 ? n - 1 : n
      }),
      Effect.catchAll((error) =>
        Effect.sync(() => {
          this.counters.lastSeqKvFallbackAt = this.now()
          if (!this.kvFailing) {
            this.kvFailing = true
            this.warn(error)
          }
          return this.nextLocal(key, final)
        })
      )
    )
  }

  /** Drops in-memory keys idle for longer than the TTL; returns how many. */
  sweep(now: number): number {
    const ttlMs = this.options.ttlSeconds * 1000
    if (ttlMs <= 0) return 0
    let n = 0
    for (const [key, entry] of this.local) {
      if (now - entry.lastAt <= ttlMs) break
      this.local.delete(key)
      n++
    }
    return n
  }
}
