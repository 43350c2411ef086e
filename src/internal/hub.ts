/**
 * The in-process registry: connections by id, user and room; adding and removing a
 * connection everywhere. The write path is `Writer` (writer.ts), the heartbeats
 * `Heartbeats` (heartbeat.ts); the hub owns one of each.
 *
 * Plain, synchronous code on purpose (DESIGN.md, fast path): a connection owns no
 * fiber, stream, timer or closure. Frames sent to one connection within one tick are
 * coalesced and leave in one `write()` at the end of the tick (`setImmediate`); when `write()` returns
 * `false` the frames wait in a bounded per-connection queue (items and bytes) until
 * `'drain'`, then everything queued leaves in one call.
 *
 * The queue is a ring (`FrameRing`) created on the first frame that has to wait and let
 * go after `'drain'`: its memory is bounded by the item limit whatever the number of
 * frames dropped, and an idle or healthy connection has none. A frame that cannot fit an
 * empty queue (larger than `maxQueueBytes`, or `maxQueueItems` 0) is dropped itself under
 * 'oldest' and 'newest' (counted and reported as a 'newest' drop: it is the newest frame
 * that is lost, evicting the queue would not make room) and disconnects under
 * 'disconnect'. Nothing here throws out of a delivery loop.
 */
import { Conn, type HubMetrics, kConn, type SinkResponse } from "./conn.js"
import { type HeartbeatHooks, Heartbeats } from "./heartbeat.js"
import type { Routes } from "./routes.js"
import { Writer, type WriterHooks } from "./writer.js"

export { Conn, type ConnConfig, type HubMetrics, kConn, Policy, type SinkResponse } from "./conn.js"

/** How long a connection closed for backpressure may take to finish before it is destroyed. */
const STALLED_END_MS = 2_000

function destroyUnfinished(res: SinkResponse): void {
  if (res.writableFinished !== true && res.destroyed !== true) res.destroy?.()
}

type WithConn = SinkResponse & { [kConn]?: Conn | undefined }

export interface HubHooks extends WriterHooks, HeartbeatHooks {
  /** A connection was removed (client gone, closed, or disconnected by backpressure). */
  readonly onDisconnect: (conn: Conn) => void
}

// A shared listener (no closure per connection): `this` is the response.
function onResponseClose(this: WithConn): void {
  const conn = this[kConn]
  if (conn !== undefined) conn.config.hub.remove(conn, false)
}

export class Hub {
  readonly conns = new Map<string, Conn>()
  /** user id → its connections (one connection is stored as itself, more as an array). */
  readonly users = new Map<string, Conn | Array<Conn>>()
  readonly rooms = new Map<string, Set<Conn>>()
  /** The write path (per message per connection: `writer.push`). */
  readonly writer: Writer
  readonly heartbeats: Heartbeats
  /** Routed mode: told of a user's first and last connection, a room's first and last member. */
  routes: Routes | undefined = undefined

  constructor(private readonly hooks: HubHooks) {
    this.writer = new Writer(this, hooks)
    this.heartbeats = new Heartbeats(this.conns, this.writer, this, hooks)
  }

  /** The write counters (`stats()`). */
  get metrics(): HubMetrics {
    return this.writer.metrics
  }

  /**
   * Metrics hook (see `Writer.observeLatency`): the delivery latency in milliseconds;
   * undefined: no clock is read.
   */
  get observeLatency(): ((ms: number) => void) | undefined {
    return this.writer.observeLatency
  }

  set observeLatency(observer: ((ms: number) => void) | undefined) {
    this.writer.observeLatency = observer
  }

  get connectionCount(): number {
    return this.conns.size
  }

  // ---------------------------------------------------------------------------
  // registry
  // ---------------------------------------------------------------------------

  add(conn: Conn): void {
    this.conns.set(conn.id, conn)
    const existing = this.users.get(conn.userId)
    if (existing === undefined) {
      this.users.set(conn.userId, conn)
      this.routes?.userUp(conn.userId)
    } else if (Array.isArray(existing)) existing.push(conn)
    else this.users.set(conn.userId, [existing, conn])
    const res = conn.res as WithConn
    res[kConn] = conn
    res.on("close", onResponseClose)
    res.on("error", onResponseClose)
    if (conn.config.keepAliveMs > 0) this.heartbeats.add(conn)
  }

  /** Connections of a user, as a list (empty when none). */
  connectionsOf(userId: string): ReadonlyArray<Conn> {
    const entry = this.users.get(userId)
    if (entry === undefined) return []
    return Array.isArray(entry) ? entry : [entry]
  }

  userConnectionCount(userId: string): number {
    const entry = this.users.get(userId)
    if (entry === undefined) return 0
    return Array.isArray(entry) ? entry.length : 1
  }

  join(conn: Conn, room: string): boolean {
    if (conn.closed) return false
    let members = this.rooms.get(room)
    if (members === undefined) {
      this.rooms.set(room, members = new Set())
      this.routes?.roomUp(room)
    }
    members.add(conn)
    if (conn.rooms === undefined) conn.rooms = new Set()
    conn.rooms.add(room)
    return true
  }

  leave(conn: Conn, room: string): boolean {
    if (conn.closed) return false
    const members = this.rooms.get(room)
    if (members !== undefined) {
      members.delete(conn)
      if (members.size === 0) {
        this.rooms.delete(room)
        this.routes?.roomDown(room)
      }
    }
    conn.rooms?.delete(room)
    return true
  }

  /**
   * Removes a connection everywhere and ends its response. With `flush`, frames of
   * this tick that were not written yet leave first (a server-side close right after
   * a send still delivers the send). With `stalled` (a backpressure disconnect), the
   * response is ended and, if it has not finished `STALLED_END_MS` later, destroyed:
   * a client that only fell behind in a burst still gets what was written, one that
   * stopped reading does not keep its socket and kernel buffers until it times out.
   */
  remove(conn: Conn, flush: boolean, stalled = false): void {
    if (conn.closed) return
    if (flush && !conn.blocked && conn.count > 0) {
      this.writer.flush(conn)
      // a sink that threw on that write was removed by it: once is enough (one
      // 'disconnect' event, one ticker release)
      if (conn.closed) return
    }
    conn.closed = true
    conn.frames = undefined
    conn.queue = undefined
    conn.held = undefined
    conn.count = 0
    conn.bytes = 0
    this.conns.delete(conn.id)
    const entry = this.users.get(conn.userId)
    if (entry === conn) {
      this.users.delete(conn.userId)
      this.routes?.userDown(conn.userId)
    } else if (Array.isArray(entry)) {
      // A new array, not a splice: a delivery loop over this user's connections may be
      // the caller (a backpressure disconnect), and must not skip the next connection.
      const rest = entry.filter((c) => c !== conn)
      if (rest.length === 1) this.users.set(conn.userId, rest[0]!)
      else if (rest.length === 0) {
        this.users.delete(conn.userId)
        this.routes?.userDown(conn.userId)
      } else this.users.set(conn.userId, rest)
    }
    if (conn.rooms !== undefined) {
      for (const room of conn.rooms) {
        const members = this.rooms.get(room)
        if (members !== undefined) {
          members.delete(conn)
          if (members.size === 0) {
            this.rooms.delete(room)
            this.routes?.roomDown(room)
          }
        }
      }
    }
    if (conn.config.keepAliveMs > 0) this.heartbeats.remove(conn)
    const res = conn.res as WithConn
    try {
      if (res.writableEnded !== true) res.end()
      if (stalled && typeof res.destroy === "function") {
        // One timer for this rare event, not one per connection.
        setTimeout(destroyUnfinished, STALLED_END_MS, res).unref()
      }
    } catch {
      // the socket may already be gone
    }
    this.hooks.onDisconnect(conn)
  }

  /** `'drain'` on a connection's response: the writer lets its queue go. */
  drain(conn: Conn): void {
    this.writer.drain(conn)
  }

  /** Number of distinct heartbeat tickers running (for tests and stats). */
  get tickerCount(): number {
    return this.heartbeats.count
  }

  /** Stops every ticker (connections stay). */
  stopTickers(): void {
    this.heartbeats.stop()
  }
}
