/**
 * The in-memory replay buffer: a ring of the last `size` frames (with an id) per user.
 *
 * The rings are also linked in order of activity (a touched ring moves to the tail, a
 * few pointer writes), so the least recently active user is the head: LRU eviction and
 * TTL sweeps are O(1) per evicted user, never a sort, and recording a frame does not
 * touch the map. Frames are references to the one encoded `Uint8Array` every
 * connection got, not copies.
 */

import type { Lookup } from "../ReplayBuffer.js"

class Ring {
  readonly ids: Array<string>
  readonly frames: Array<Uint8Array>
  start = 0
  length = 0
  /** Frames pushed out of the ring because it was full. */
  overflowed = false
  lastActive: number
  /** Last record call that reached this ring (dedupes room / broadcast deliveries). */
  stamp = -1
  /** A frame for this user was sent while it had no connection and was not kept. */
  missed = false
  /** Neighbours in the activity order (`prev` is less recently active). */
  prev: Ring | undefined = undefined
  next: Ring | undefined = undefined

  /** The order keys of the frames (a buffer shared by instances only: its dedup). */
  readonly orders: Array<number> | undefined

  constructor(readonly userId: string, readonly capacity: number, now: number, shared: boolean) {
    this.ids = new Array(capacity)
    this.frames = new Array(capacity)
    this.orders = shared ? new Array(capacity) : undefined
    this.lastActive = now
  }

  push(id: string, frame: Uint8Array, order: number): void {
    const cap = this.capacity
    let i: number
    if (this.length < cap) {
      i = (this.start + this.length) % cap
      this.length++
    } else {
      i = this.start
      this.start = (this.start + 1) % cap
      this.overflowed = true
    }
    this.ids[i] = id
    this.frames[i] = frame
    if (this.orders !== undefined) this.orders[i] = order
  }

  /**
   * Whether the frame of order key `order` and id `id` is here (recorded by another
   * instance sharing the buffer). Scans from the newest while the keys are not older:
   * one compare in the usual case.
   */
  has(id: string, order: number): boolean {
    const orders = this.orders
    if (orders === undefined) return false
    const cap = this.capacity
    for (let k = this.length - 1; k >= 0; k--) {
      const i = (this.start + k) % cap
      const o = orders[i]!
      if (o < order) return false
      if (o === order && this.ids[i] === id) return true
    }
    return false
  }

  /** Frames after the last occurrence of `id`, or undefined when `id` is not here. */
  after(id: string): { frames: Array<Uint8Array>; ids: Array<string>; lastOrder: number | undefined } | undefined {
    const cap = this.capacity
    for (let k = this.length - 1; k >= 0; k--) {
      if (this.ids[(this.start + k) % cap] === id) {
        const frames: Array<Uint8Array> = []
        const ids: Array<string> = []
        for (let j = k + 1; j < this.length; j++) {
          const i = (this.start + j) % cap
          frames.push(this.frames[i]!)
          ids.push(this.ids[i]!)
        }
        // a shared buffer: the newest frame's order key (live frames at or below it came with the replay)
        const lastOrder = this.orders === undefined ? undefined : this.orders[(this.start + this.length - 1) % cap]
        return { frames, ids, lastOrder }
      }
    }
    return undefined
  }
}

export interface MemoryReplayOptions {
  /** Frames per user; 0 turns replay off. */
  readonly size: number
  /** Users inactive this long are dropped by `sweep`; 0 = never. */
  readonly ttlMs: number
  /** Users kept at most; the least recently active is evicted first. */
  readonly maxUsers: number
  /** Record frames for users without a connection who still have a ring. */
  readonly recordOffline: boolean
  /**
   * Several instances share the buffer: a frame is kept once whichever of them records
   * it (by its order key and id), and one that came off the bus for a user without a
   * connection is left to its publisher (who records it), as with Redis.
   */
  readonly shared?: boolean | undefined
}

export class MemoryReplay {
  private readonly rings = new Map<string, Ring>()
  /** Least recently active ring. */
  private head: Ring | undefined = undefined
  /** Most recently active ring. */
  private tail: Ring | undefined = undefined
  /** Why a user's ring went away, for the gap signal (bounded: max(1024, maxUsers) names). */
  private readonly gone = new Map<string, "expired" | "evicted">()
  private stamp = 0

  constructor(readonly options: MemoryReplayOptions) {}

  get enabled(): boolean {
    return this.options.size > 0 && this.options.maxUsers > 0
  }

  get users(): number {
    return this.rings.size
  }

  /** A new stamp for one delivery, so a user reached twice records the frame once. */
  nextStamp(): number {
    return ++this.stamp
  }

  /** The user's ring, unless it has expired (then it is dropped, as a sweep would). */
  private live(userId: string, now: number): Ring | undefined {
    const ring = this.rings.get(userId)
    if (ring === undefined) return undefined
    const ttl = this.options.ttlMs
    if (ttl > 0 && now - ring.lastActive > ttl) {
      this.drop(ring)
      this.remember(userId, "expired")
      return undefined
    }
    return ring
  }

  private unlink(ring: Ring): void {
    if (ring.prev === undefined) this.head = ring.next
    else ring.prev.next = ring.next
    if (ring.next === undefined) this.tail = ring.prev
    else ring.next.prev = ring.prev
    ring.prev = ring.next = undefined
  }

  private append(ring: Ring): void {
    ring.prev = this.tail
    ring.next = undefined
    if (this.tail === undefined) this.head = ring
    else this.tail.next = ring
    this.tail = ring
  }

  /** Activity: the ring becomes the most recently active. */
  private touch(ring: Ring, now: number): void {
    ring.lastActive = now
    if (ring !== this.tail) {
      this.unlink(ring)
      this.append(ring)
    }
  }

  private drop(ring: Ring): void {
    this.unlink(ring)
    this.rings.delete(ring.userId)
  }

  record(userId: string, id: string, frame: Uint8Array, now: number, stamp?: number, order = 0): void {
    if (!this.enabled) return
    let ring = this.live(userId, now)
    if (ring === undefined) {
      ring = new Ring(userId, this.options.size, now, this.options.shared === true)
      this.gone.delete(userId)
      this.rings.set(userId, ring)
      this.append(ring)
    } else {
      if (stamp !== undefined && ring.stamp === stamp) return
      this.touch(ring, now)
      if (ring.orders !== undefined && ring.has(id, order)) return
    }
    if (stamp !== undefined) ring.stamp = stamp
    ring.push(id, frame, order)
    if (this.rings.size > this.options.maxUsers) this.evictOldest(now)
  }

  /** Records one frame for many users (each once), with one clock read for all. */
  recordAll(userIds: Iterable<string>, id: string, frame: Uint8Array, now: number, order = 0): void {
    if (!this.enabled) return
    const stamp = this.nextStamp()
    for (const userId of userIds) this.record(userId, id, frame, now, stamp, order)
  }

  /**
   * A frame with an id for a user without a connection on this instance (`published`:
   * this instance published it). Shared: its publisher records it, the others leave it.
   */
  offline(userId: string, id: string, frame: Uint8Array, now: number, published = true, order = 0): void {
    if (!this.enabled) return
    if (this.options.shared === true) {
      if (published) this.record(userId, id, frame, now, undefined, order)
      return
    }
    const ring = this.live(userId, now)
    if (ring === undefined) return
    if (this.options.recordOffline) this.record(userId, id, frame, now)
    else ring.missed = true
  }

  lookup(userId: string, lastEventId: string, now: number): Lookup {
    const ring = this.live(userId, now)
    if (ring === undefined) {
      return { _tag: "Miss", reason: this.gone.get(userId) ?? "unknown" }
    }
    // A reconnect is activity: keep this user's frames.
    this.touch(ring, now)
    const found = ring.after(lastEventId)
    const missed = ring.missed
    ring.missed = false
    if (found === undefined) return { _tag: "Miss", reason: ring.overflowed ? "evicted" : "unknown" }
    const base = found.lastOrder === undefined
      ? { _tag: "Found" as const, frames: found.frames, ids: found.ids }
      : { _tag: "Found" as const, frames: found.frames, ids: found.ids, lastOrder: found.lastOrder }
    return missed ? { ...base, missed: true } : base
  }

  clear(userId?: string): void {
    if (userId === undefined) {
      this.rings.clear()
      this.head = this.tail = undefined
      this.gone.clear()
    } else {
      const ring = this.rings.get(userId)
      if (ring !== undefined) this.drop(ring)
      this.gone.delete(userId)
    }
  }

  /** Drops users inactive for longer than `ttlMs`; returns how many. */
  sweep(now: number): number {
    const ttl = this.options.ttlMs
    if (ttl <= 0) return 0
    let n = 0
    for (let ring = this.head; ring !== undefined && now - ring.lastActive > ttl; ring = this.head) {
      this.drop(ring)
      this.remember(ring.userId, "expired")
      n++
    }
    return n
  }

  private evictOldest(now: number): void {
    const ttl = this.options.ttlMs
    while (this.rings.size > this.options.maxUsers && this.head !== undefined) {
      const ring = this.head
      this.drop(ring)
      // A ring past its TTL that no sweep reached yet expired before it was evicted.
      this.remember(ring.userId, ttl > 0 && now - ring.lastActive > ttl ? "expired" : "evicted")
    }
  }

  private remember(userId: string, reason: "expired" | "evicted"): void {
    this.gone.delete(userId)
    this.gone.set(userId, reason)
    while (this.gone.size > Math.max(1024, this.options.maxUsers)) {
      const oldest = this.gone.keys().next()
      if (oldest.done) return
      this.gone.delete(oldest.value)
    }
  }
}
