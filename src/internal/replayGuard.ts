/**
 * The replay window of a signed bus: which signed messages a receiver has already
 * accepted, per publisher boot.
 *
 * A signed message carries its publisher's `origin`, a boot nonce `b` (random at each
 * start), a counter `c` (1, 2, 3 … per boot) and its send time `at`, all covered by the
 * HMAC. The receiver accepts a message once:
 *
 * - its `at` is within `maxAgeMs` of the receiver's clock (either way, for clock skew);
 * - per stream (`origin` + boot), like IPsec's anti-replay window: the highest counter
 *   seen and a bitmap of the `WINDOW` counters below it. A higher counter moves the
 *   window; a lower one inside the window is accepted once (messages of one publisher
 *   may arrive out of order, e.g. across a Redis Cluster's nodes during a failover); one
 *   below the window is refused.
 * - at most `maxStreams` streams are kept, least recently used evicted first.
 *
 * Cost: one Map lookup and a few bit operations per message (the Map entry is moved to
 * the end only when the stream differs from the previous message's). Only accepted
 * messages change the state, and a stream is created only by an accepted message: an
 * attacker without the key can replay only captured messages younger than `maxAgeMs`,
 * so it cannot flush the LRU with streams of its own. Replay protection holds as long as
 * fewer than `maxStreams` publisher boots published on the channel within `maxAgeMs`
 * (a stream evicted while its messages are younger than that forgets them).
 */

/** Counters remembered below the highest one seen, per stream. */
export const WINDOW = 1024
const WORDS = WINDOW >>> 5

/** Publisher boots remembered (LRU). */
export const MAX_STREAMS = 4096

class Stream {
  /** The highest counter accepted. */
  top: number
  /** Bit `c % WINDOW` set: counter `c` (within `top - WINDOW < c <= top`) was accepted. */
  readonly bits = new Uint32Array(WORDS)
  constructor(top: number) {
    this.top = top
  }
}

const isSet = (bits: Uint32Array, c: number): boolean => {
  const pos = c % WINDOW
  return (bits[pos >>> 5]! & (1 << (pos & 31))) !== 0
}

const set = (bits: Uint32Array, c: number): void => {
  const pos = c % WINDOW
  bits[pos >>> 5]! |= 1 << (pos & 31)
}

/** Clears the bits of counters `from..to` (inclusive, `to - from < WINDOW`), a word at a time where it can. */
const clear = (bits: Uint32Array, from: number, to: number): void => {
  let c = from
  while (c <= to) {
    const pos = c % WINDOW
    if ((pos & 31) === 0 && to - c >= 31) {
      bits[pos >>> 5] = 0
      c += 32
    } else {
      bits[pos >>> 5]! &= ~(1 << (pos & 31))
      c++
    }
  }
}

export class ReplayGuard {
  private readonly streams = new Map<string, Stream>()
  /** The most recently used stream (at the Map's end). */
  private last: string | undefined = undefined

  constructor(
    readonly maxAgeMs: number,
    readonly maxStreams: number = MAX_STREAMS
  ) {}

  /** Streams remembered now. */
  get size(): number {
    return this.streams.size
  }

  /**
   * Accepts (and records) the message, or says why not. `stream` is the publisher's
   * origin and boot nonce; `counter` a non-negative safe integer.
   */
  admit(stream: string, counter: number, at: number, now: number): string | undefined {
    if (at < now - this.maxAgeMs) return `too old (sent ${now - at} ms ago, more than ${this.maxAgeMs} ms)`
    if (at > now + this.maxAgeMs) return `sent in the future (${at - now} ms ahead, more than ${this.maxAgeMs} ms)`
    const s = this.streams.get(stream)
    if (s === undefined) {
      const fresh = new Stream(counter)
      set(fresh.bits, counter)
      this.streams.set(stream, fresh)
      this.last = stream
      if (this.streams.size > this.maxStreams) this.streams.delete(this.streams.keys().next().value!)
      return undefined
    }
    if (counter > s.top) {
      if (counter - s.top >= WINDOW) s.bits.fill(0)
      else clear(s.bits, s.top + 1, counter)
      s.top = counter
    } else if (s.top - counter >= WINDOW) {
      return `outside the replay window (message ${counter}, newest ${s.top}, window ${WINDOW})`
    } else if (isSet(s.bits, counter)) {
      return `replayed (message ${counter} of this publisher was already received)`
    }
    set(s.bits, counter)
    if (stream !== this.last) {
      this.streams.delete(stream)
      this.streams.set(stream, s)
      this.last = stream
    }
    return undefined
  }
}
