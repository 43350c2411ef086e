/** Small numeric helpers shared by the driver, the server and the clients. */

/** Monotonic clock in milliseconds (CLOCK_MONOTONIC: the same in every process of this host). */
export function hrMs(): number {
  return Number(process.hrtime.bigint()) / 1e6
}

export function median(xs: ReadonlyArray<number>): number {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b)
  if (v.length === 0) return Number.NaN
  const m = v.length >> 1
  return v.length % 2 === 1 ? (v[m] as number) : ((v[m - 1] as number) + (v[m] as number)) / 2
}

export function quantile(sorted: ReadonlyArray<number>, q: number): number {
  if (sorted.length === 0) return Number.NaN
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))
  return sorted[i] as number
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))
export const immediate = (): Promise<void> => new Promise((r) => setImmediate(r))

/**
 * Log-bucketed latency histogram: 1 % relative resolution from 1 µs to hours,
 * mergeable across processes (sparse pairs on the wire). Exact max is kept aside.
 */
const BASE = Math.log(1.01)
const BUCKETS = 2600

export interface HistogramJSON {
  readonly pairs: ReadonlyArray<readonly [number, number]>
  readonly n: number
  readonly max: number
  readonly sum: number
}

export class Histogram {
  private counts = new Uint32Array(BUCKETS)
  n = 0
  max = 0
  sum = 0

  /** Record a value in milliseconds. */
  record(ms: number): void {
    const v = ms > 0 ? ms : 0
    const us = v * 1000
    let i = us <= 1 ? 0 : Math.ceil(Math.log(us) / BASE)
    if (i >= BUCKETS) i = BUCKETS - 1
    this.counts[i] = (this.counts[i] as number) + 1
    this.n++
    this.sum += v
    if (v > this.max) this.max = v
  }

  reset(): void {
    this.counts.fill(0)
    this.n = 0
    this.max = 0
    this.sum = 0
  }

  toJSON(): HistogramJSON {
    const pairs: Array<[number, number]> = []
    for (let i = 0; i < BUCKETS; i++) {
      const c = this.counts[i] as number
      if (c > 0) pairs.push([i, c])
    }
    return { pairs, n: this.n, max: this.max, sum: this.sum }
  }

  merge(h: HistogramJSON): void {
    for (const [i, c] of h.pairs) this.counts[i] = (this.counts[i] as number) + c
    this.n += h.n
    this.sum += h.sum
    if (h.max > this.max) this.max = h.max
  }

  /** Upper bound of the bucket holding the q-quantile, in ms (≤ 1 % above the true value). */
  quantile(q: number): number {
    if (this.n === 0) return Number.NaN
    const rank = Math.max(1, Math.ceil(q * this.n))
    let acc = 0
    for (let i = 0; i < BUCKETS; i++) {
      acc += this.counts[i] as number
      if (acc >= rank) return Math.min(this.max, Math.pow(1.01, i) / 1000)
    }
    return this.max
  }
}

/** JSON payload of ~`bytes` bytes; `t` first so clients can read it without JSON.parse. */
export function padFor(bytes: number): string {
  // {"t":1234567890.123456,"n":123456,"p":""} is ~42 bytes
  return "x".repeat(Math.max(1, bytes - 42))
}

export interface Payload {
  readonly t: number
  readonly n: number
  readonly p: string
}

/**
 * The user of message `n` among `users` (scenario H): uniform, and the same in every
 * process (a stateless integer hash of `n`), so the driver knows where each message
 * goes without being told.
 */
export function pickUser(n: number, users: number): number {
  let x = (n + 0x9e3779b9) >>> 0
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b) >>> 0
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35) >>> 0
  x = (x ^ (x >>> 16)) >>> 0
  return x % users
}
