/**
 * Heartbeats: one ticker per distinct interval, not a timer per connection; each beat
 * writes one shared ping frame to the idle connections of its interval.
 */
import type { Conn } from "./conn.js"
import type { Writer, WriterOwner } from "./writer.js"

export interface HeartbeatHooks {
  /** Starts a repeating ticker; returns the function that stops it. */
  readonly every: (ms: number, tick: () => void) => () => void
  readonly now: () => number
  readonly ping: (now: number) => Uint8Array
}

interface Ticker {
  /** Connections with this interval (they are found by scanning the hub: no set per ticker). */
  count: number
  readonly stop: () => void
}

export class Heartbeats {
  private readonly tickers = new Map<number, Ticker>()

  constructor(
    private readonly conns: ReadonlyMap<string, Conn>,
    private readonly writer: Writer,
    private readonly owner: WriterOwner,
    private readonly hooks: HeartbeatHooks
  ) {}

  add(conn: Conn): void {
    const ms = conn.config.keepAliveMs
    let ticker = this.tickers.get(ms)
    if (ticker === undefined) {
      const stop = this.hooks.every(ms, () => this.beat(ms))
      this.tickers.set(ms, ticker = { count: 0, stop })
    }
    ticker.count++
  }

  remove(conn: Conn): void {
    const ms = conn.config.keepAliveMs
    const ticker = this.tickers.get(ms)
    if (ticker === undefined) return
    if (--ticker.count === 0) {
      this.tickers.delete(ms)
      ticker.stop()
    }
  }

  /** One heartbeat for the connections with interval `ms` (one ping frame for all). */
  private beat(ms: number): void {
    const ticker = this.tickers.get(ms)
    if (ticker === undefined || ticker.count === 0) return
    const ping = this.hooks.ping(this.hooks.now())
    for (const conn of this.conns.values()) {
      // Another interval, or not idle: frames pending or waiting for 'drain'.
      if (conn.config.keepAliveMs !== ms || conn.blocked || conn.count > 0 || conn.closed) continue
      let ok: boolean
      try {
        ok = conn.res.write(ping)
        conn.res.flush?.()
      } catch {
        this.owner.remove(conn, false)
        continue
      }
      this.writer.metrics.sent++
      if (ok === false) this.writer.block(conn)
    }
  }

  /** Number of distinct heartbeat tickers running. */
  get count(): number {
    return this.tickers.size
  }

  /** Stops every ticker (connections stay). */
  stop(): void {
    for (const ticker of this.tickers.values()) ticker.stop()
    this.tickers.clear()
  }
}
