/**
 * A bounded FIFO of frames whose memory is bounded by its item limit: a ring buffer
 * (head and tail wrap around a fixed array) that starts small and doubles when full, up
 * to `limit` slots. Used as a connection's queue while its socket waits for `'drain'`,
 * so a stalled client that drops frames for a day keeps at most `limit` slots, never an
 * array that grows by `push` while its head advances.
 *
 * Plain TypeScript, no Effect: it is on the write path.
 */

/** Slots of a new ring (fewer when the limit is lower). */
const INITIAL_CAPACITY = 8

export class FrameRing {
  /** The slots; `undefined` where no frame is (a removed frame is not kept alive). */
  private items: Array<Uint8Array | undefined>
  /** Index of the oldest frame. */
  private head = 0
  /** Frames in the ring. */
  size = 0
  /** The most slots the ring will ever have: the item limit, rounded up, at least 1. */
  readonly limit: number

  constructor(maxItems: number) {
    this.limit = Math.max(1, Math.ceil(maxItems))
    this.items = new Array<Uint8Array | undefined>(Math.min(INITIAL_CAPACITY, this.limit)).fill(undefined)
  }

  /** Slots allocated (at most `limit`). */
  get capacity(): number {
    return this.items.length
  }

  /** Appends `frame`; returns false (and keeps nothing) when the ring holds `limit` frames. */
  push(frame: Uint8Array): boolean {
    let items = this.items
    if (this.size === items.length) {
      if (items.length >= this.limit) return false
      items = this.grow()
    }
    let tail = this.head + this.size
    if (tail >= items.length) tail -= items.length
    items[tail] = frame
    this.size++
    return true
  }

  /** Removes and returns the oldest frame (undefined when empty). */
  shift(): Uint8Array | undefined {
    if (this.size === 0) return undefined
    const items = this.items
    const frame = items[this.head]
    items[this.head] = undefined
    this.head = this.head + 1 === items.length ? 0 : this.head + 1
    this.size--
    return frame
  }

  /** The `i`-th oldest frame (0: the oldest); `i` must be below `size`. */
  at(i: number): Uint8Array {
    let index = this.head + i
    if (index >= this.items.length) index -= this.items.length
    return this.items[index]!
  }

  /** The frames, oldest first, as a new array. */
  toArray(): Array<Uint8Array> {
    const out = new Array<Uint8Array>(this.size)
    for (let i = 0; i < this.size; i++) out[i] = this.at(i)
    return out
  }

  private grow(): Array<Uint8Array | undefined> {
    const old = this.items
    const next = new Array<Uint8Array | undefined>(Math.min(old.length * 2, this.limit)).fill(undefined)
    for (let i = 0; i < this.size; i++) {
      let index = this.head + i
      if (index >= old.length) index -= old.length
      next[i] = old[index]
    }
    this.items = next
    this.head = 0
    return next
  }
}
