/**
 * The in-process bus behind `Transport.layerMemory` and `createMemoryBus` (plain
 * TypeScript: channels of listeners and expiring counters).
 */
import type { RedisLike } from "../Transport.js"

/**
 * An in-process bus: several instances in one process that share it exchange
 * `publish` / `publishToRoom` as they would through Redis (messages are text, each
 * receiver decodes them). It also keeps counters, so `seq` is global across the
 * instances that share it. Delivery is synchronous.
 *
 * @since 0.2.0
 * @category models
 */
export class MemoryBus {
  private readonly channels = new Map<string, Set<(message: string) => void>>()
  private readonly counters = new Map<string, { value: number; expiresAt: number }>()
  /** Messages published on this bus, for tests and stats. */
  published = 0

  /** Delivers `message` to every subscriber of `channel`; returns how many got it. */
  publish(channel: string, message: string): number {
    this.published++
    const set = this.channels.get(channel)
    if (set === undefined) return 0
    let n = 0
    for (const listener of Array.from(set)) {
      listener(message)
      n++
    }
    return n
  }

  /** Adds a listener; returns the function that removes it. */
  subscribe(channel: string, listener: (message: string) => void): () => void {
    let set = this.channels.get(channel)
    if (set === undefined) this.channels.set(channel, set = new Set())
    set.add(listener)
    return () => {
      const current = this.channels.get(channel)
      if (current === undefined) return
      current.delete(listener)
      if (current.size === 0) this.channels.delete(channel)
    }
  }

  /** Number of listeners on `channel`. */
  subscribers(channel: string): number {
    return this.channels.get(channel)?.size ?? 0
  }

  incr(key: string): number {
    const now = Date.now()
    const entry = this.counters.get(key)
    if (entry === undefined || entry.expiresAt <= now) {
      this.counters.set(key, { value: 1, expiresAt: Infinity })
      return 1
    }
    return ++entry.value
  }

  pexpire(key: string, ms: number): number {
    const entry = this.counters.get(key)
    if (entry === undefined) return 0
    entry.expiresAt = Date.now() + ms
    return 1
  }

  expire(key: string, seconds: number): number {
    return this.pexpire(key, seconds * 1000)
  }

  /**
   * A `RedisLike` adapter on this bus, for the `SSEKify` facade:
   * `new SSEKify({ redis: bus.adapter() })`.
   */
  adapter(): RedisLike & { incr(key: string): number; expire(key: string, seconds: number): number } {
    const messageListeners: Array<(channel: string, message: string) => void> = []
    const unsubscribers = new Map<string, () => void>()
    let closed = false
    const self = this
    const adapter = {
      publish: (channel: string, message: string) => {
        if (closed) throw new Error("memory adapter is closed")
        return self.publish(channel, message)
      },
      subscribe: (channel: string) => {
        if (closed || unsubscribers.has(channel)) return
        unsubscribers.set(
          channel,
          self.subscribe(channel, (message) => {
            for (const l of messageListeners) l(channel, message)
          })
        )
      },
      on: (event: string, listener: (...args: Array<any>) => void) => {
        if (event === "message") messageListeners.push(listener as (channel: string, message: string) => void)
        return adapter
      },
      close: () => {
        closed = true
        for (const un of unsubscribers.values()) un()
        unsubscribers.clear()
      },
      incr: (key: string) => self.incr(key),
      expire: (key: string, seconds: number) => self.expire(key, seconds),
      pexpire: (key: string, ms: number) => self.pexpire(key, ms)
    }
    return adapter as RedisLike & { incr(key: string): number; expire(key: string, seconds: number): number }
  }
}

