/**
 * Frame id generators for `seq.frameIdPolicy`.
 */

/** 2024-01-01T00:00:00Z: the snowflake epoch (41 bits of ms last until 2093). */
export const SNOWFLAKE_EPOCH = 1_704_067_200_000

const INSTANCE_BITS = 10
const COUNTER_BITS = 12
const MAX_COUNTER = (1 << COUNTER_BITS) - 1

/** 10 bits of instance identity from an instance id (FNV-1a). */
export const instanceBits = (instanceId: string): number => {
  let h = 0x811c9dc5
  for (let i = 0; i < instanceId.length; i++) {
    h ^= instanceId.charCodeAt(i)
    h = Math.imul(h, 0x01000193) >>> 0
  }
  return h & ((1 << INSTANCE_BITS) - 1)
}

/**
 * A time-ordered 64-bit id as a decimal string: 41 bits of milliseconds since
 * {@link SNOWFLAKE_EPOCH}, 10 bits of instance, 12 bits of per-millisecond counter.
 * Monotonic within an instance even when the wall clock steps back (the generator
 * keeps using its last millisecond and borrows the next one when the counter is
 * exhausted).
 */
export class Snowflake {
  private lastMs = -1
  private counter = 0

  constructor(private readonly instance: number, private readonly now: () => number) {}

  next(): string {
    let ms = this.now() - SNOWFLAKE_EPOCH
    if (ms < 0) ms = 0
    if (ms <= this.lastMs) {
      ms = this.lastMs
      if (this.counter >= MAX_COUNTER) {
        ms = this.lastMs + 1
        this.counter = 0
      } else {
        this.counter++
      }
    } else {
      this.counter = 0
    }
    this.lastMs = ms
    const id = (BigInt(ms) << BigInt(INSTANCE_BITS + COUNTER_BITS)) |
      (BigInt(this.instance) << BigInt(COUNTER_BITS)) |
      BigInt(this.counter)
    return id.toString()
  }
}

/**
 * The `'timestamp'` policy: `<epochMs>-<instanceId>-<seq>` (the format of 0.1.6), made
 * unique within an instance. 0.1.6 wrote the same id for two frames of one millisecond
 * with the same `seq` (0 for data without one), and a replay after such an id skipped
 * the other frame. Here the millisecond part never decreases and moves on by one when
 * the `(ms, seq)` pair was used already, so ids stay unique and time-ordered; under a
 * burst it may run a few milliseconds ahead of the clock.
 */
export class TimestampIds {
  private lastMs = -1
  private readonly used = new Set<number>()

  constructor(private readonly instanceId: string, private readonly now: () => number) {}

  next(seq: number): string {
    let ms = this.now()
    if (ms <= this.lastMs) {
      ms = this.lastMs
      if (this.used.has(seq)) {
        ms = this.lastMs + 1
        this.used.clear()
      }
    } else {
      this.used.clear()
    }
    this.lastMs = ms
    this.used.add(seq)
    return `${ms}-${this.instanceId}-${seq}`
  }
}

/** Decodes a snowflake into its parts (for tests and debugging). */
export const decodeSnowflake = (id: string): { readonly ms: number; readonly instance: number; readonly counter: number } => {
  const n = BigInt(id)
  return {
    ms: Number(n >> BigInt(INSTANCE_BITS + COUNTER_BITS)) + SNOWFLAKE_EPOCH,
    instance: Number((n >> BigInt(COUNTER_BITS)) & BigInt((1 << INSTANCE_BITS) - 1)),
    counter: Number(n & BigInt(MAX_COUNTER))
  }
}
