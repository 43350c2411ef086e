/**
 * The replay buffer kept in Redis, so a browser whose connection moves to another
 * instance still gets what it missed.
 *
 * Recording stays synchronous on the delivery path: the frames recorded within one tick
 * are sent to Redis in one round trip (one capped add per user key, pipelined), not one
 * per user and message. Each user's frames are one sorted set (`<prefix>{<userId>}`),
 * capped at `size` items, expiring `ttlMs` after the last add. An item is the frame's
 * order key, id and encoded frame: `<order>/<id byte length>:<id><frame bytes>`, the same
 * bytes on every instance, so the frame recorded by the publisher and by the instances
 * that delivered it is kept once; its score (the order key: publish time × 1024 + the
 * publisher's counter) keeps the publish order whichever instance's write reaches Redis
 * first. The order key in the item tells a lookup the order of what it returns (items
 * without it, `<id byte length>:<id><frame bytes>`, are read too).
 */
import * as Effect from "effect/Effect"
import type { TransportError } from "../Errors.js"
import type { ListStore, Lookup } from "../ReplayBuffer.js"

export interface RedisReplayOptions {
  readonly size: number
  readonly ttlMs: number
  /** Key prefix; the user id goes in a hash tag after it. */
  readonly keyPrefix: string
}

const COLON = 0x3a

const SLASH = 0x2f

export const encodeItem = (id: string, frame: Uint8Array, order: number): Uint8Array => {
  const idBytes = Buffer.from(id, "utf8")
  return Buffer.concat([Buffer.from(`${order}/${idBytes.length}:`, "latin1"), idBytes, frame])
}

const isDigits = (buf: Buffer, from: number, to: number): boolean => {
  if (to <= from) return false
  for (let i = from; i < to; i++) if (buf[i]! < 0x30 || buf[i]! > 0x39) return false
  return true
}

export const decodeItem = (
  item: Uint8Array
): { readonly id: string; readonly frame: Uint8Array; readonly order: number | undefined } | undefined => {
  const buf = Buffer.isBuffer(item) ? item : Buffer.from(item.buffer, item.byteOffset, item.byteLength)
  const colon = buf.indexOf(COLON)
  if (colon <= 0 || colon > 28) return undefined
  const slash = buf.lastIndexOf(SLASH, colon)
  const start = slash < 0 ? 0 : slash + 1
  if (!isDigits(buf, start, colon) || colon - start > 10) return undefined
  let order: number | undefined
  if (slash >= 0) {
    if (!isDigits(buf, 0, slash)) return undefined
    order = Number(buf.toString("latin1", 0, slash))
  }
  const length = Number(buf.toString("latin1", start, colon))
  if (colon + 1 + length > buf.length) return undefined
  return {
    id: buf.toString("utf8", colon + 1, colon + 1 + length),
    frame: buf.subarray(colon + 1 + length),
    order
  }
}

interface Batch {
  done: boolean
  readonly waiters: Array<() => void>
}

export class RedisReplay {
  private pending: Array<readonly [string, Uint8Array, number]> = []
  /** user id → stamp of the last delivery recorded for it in this tick. */
  private stamps = new Map<string, number>()
  private scheduled = false
  /** The waiters of `recorded()` for the records not flushed yet (see `recorded`). */
  private batch: Batch | undefined = undefined
  /** Batches whose `recorded()` waiters are not released yet (released at the latest by `release`). */
  private readonly unreleased = new Set<Batch>()
  private stampCounter = 0
  /** Users this instance recorded (what `clear()` without a user can reach). */
  private readonly known = new Set<string>()

  constructor(
    readonly options: RedisReplayOptions,
    private readonly store: ListStore,
    /** Runs the tick's append in the background. */
    private readonly run: (effect: Effect.Effect<void, TransportError>) => void,
    private readonly now: () => number = Date.now
  ) {}

  get enabled(): boolean {
    return this.options.size > 0
  }

  get users(): number {
    return this.known.size
  }

  key(userId: string): string {
    return `${this.options.keyPrefix}{${userId}}`
  }

  nextStamp(): number {
    return ++this.stampCounter
  }

  record(userId: string, id: string, frame: Uint8Array, stamp?: number, order?: number): void {
    if (!this.enabled) return
    if (stamp !== undefined) {
      if (this.stamps.get(userId) === stamp) return
      this.stamps.set(userId, stamp)
    }
    const score = order ?? this.now() * 1024
    this.pending.push([this.key(userId), encodeItem(id, frame, score), score])
    if (this.known.size < 100_000) this.known.add(userId)
    if (!this.scheduled) {
      this.scheduled = true
      process.nextTick(this.flush)
    }
  }

  /**
   * Completes once the records made so far are in Redis (their append done, or failed:
   * reported). Nothing pending: at once.
   */
  recorded(): Effect.Effect<void> {
    if (!this.scheduled) return Effect.void
    // the batch of now, whenever the effect runs
    let batch = this.batch
    if (batch === undefined) {
      batch = this.batch = { done: false, waiters: [] }
      this.unreleased.add(batch)
    }
    return Effect.async<void>((resume) => {
      if (batch.done) resume(Effect.void)
      else batch.waiters.push(() => resume(Effect.void))
    })
  }

  private readonly flush = (): void => {
    this.scheduled = false
    const entries = this.pending
    const batch = this.batch
    this.pending = []
    this.batch = undefined
    this.stamps = new Map()
    const done = Effect.sync(() => {
      if (batch !== undefined) this.releaseBatch(batch)
    })
    if (entries.length > 0) this.run(Effect.ensuring(this.store.appendCapped(entries, this.options.size, this.options.ttlMs), done))
    else if (batch !== undefined) this.releaseBatch(batch)
  }

  private releaseBatch(batch: Batch): void {
    if (batch.done) return
    batch.done = true
    this.unreleased.delete(batch)
    for (const waiter of batch.waiters) waiter()
  }

  /** Releases every `recorded()` waiter (the store's scope is closing: its appends may never run). */
  release(): void {
    for (const batch of Array.from(this.unreleased)) this.releaseBatch(batch)
  }

  lookup(userId: string, lastEventId: string): Effect.Effect<Lookup, TransportError> {
    return Effect.map(this.store.list(this.key(userId)), (items): Lookup => {
      if (items.length === 0) return { _tag: "Miss", reason: "unknown" }
      const decoded = items.map(decodeItem)
      for (let k = decoded.length - 1; k >= 0; k--) {
        if (decoded[k]?.id === lastEventId) {
          const after = decoded.slice(k + 1).filter((d): d is NonNullable<typeof d> => d !== undefined)
          // items are in score order: the newest order key is the last one known
          let lastOrder: number | undefined
          for (let j = decoded.length - 1; j >= k && lastOrder === undefined; j--) lastOrder = decoded[j]?.order
          return { _tag: "Found", frames: after.map((d) => d.frame), ids: after.map((d) => d.id), lastOrder }
        }
      }
      // A full set has pushed older frames out.
      return { _tag: "Miss", reason: items.length >= this.options.size ? "evicted" : "unknown" }
    })
  }

  clear(userId?: string): Effect.Effect<void, TransportError> {
    if (userId !== undefined) {
      this.known.delete(userId)
      return this.store.del([this.key(userId)])
    }
    const keys = Array.from(this.known, (u) => this.key(u))
    this.known.clear()
    return keys.length === 0 ? Effect.void : this.store.del(keys)
  }
}
