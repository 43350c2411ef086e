/**
 * The in-process registry and the write path.
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
import type { BackpressureDisconnect } from "../Errors.js"
import { FrameRing } from "./ring.js"

/** What the hub needs of a response: a Node `ServerResponse` satisfies it. */
export interface SinkResponse {
  write(chunk: Uint8Array): boolean
  end(): unknown
  on(event: "close" | "error", listener: (...args: Array<any>) => void): unknown
  /** The hub listens to `'drain'` only while a connection waits for it. */
  once(event: "drain", listener: (...args: Array<any>) => void): unknown
  readonly writableEnded?: boolean
  readonly writableFinished?: boolean
  readonly destroyed?: boolean
  readonly writableHighWaterMark?: number
  /** Set by compression middleware; called after a heartbeat. */
  flush?: () => void
  /** Node responses: a connection closed for backpressure is destroyed, not ended. */
  destroy?: () => unknown
  /** Node responses: several large frames are written corked, not copied into one chunk. */
  cork?: () => void
  uncork?: () => void
}

/** Queue overflow policies, as small integers for the hot path. */
export const enum Policy {
  Oldest = 0,
  Newest = 1,
  Disconnect = 2
}

/** How long a connection closed for backpressure may take to finish before it is destroyed. */
const STALLED_END_MS = 2_000

function destroyUnfinished(res: SinkResponse): void {
  if (res.writableFinished !== true && res.destroyed !== true) res.destroy?.()
}

/** Average frame size from which a batch is written frame by frame (corked), not concatenated. */
const LARGE_FRAME_BYTES = 2048

export const kConn: unique symbol = Symbol.for("ssekify/Connection")

type WithConn = SinkResponse & { [kConn]?: Conn | undefined }

/**
 * What connections registered with the same options share (limits, policy, heartbeat
 * interval, high-water mark, hub): one object for many connections, not five fields each.
 */
export interface ConnConfig {
  readonly hub: Hub
  readonly maxItems: number
  readonly maxBytes: number
  readonly policy: Policy
  readonly keepAliveMs: number
  readonly highWaterMark: number
}

/** One SSE connection. A data record: the hub holds the logic. */
export class Conn {
  /** Rooms this connection is in (allocated on the first join). */
  rooms: Set<string> | undefined = undefined
  /** This tick's batch (frames not yet written while not `blocked`); kept empty between ticks. */
  frames: Array<Uint8Array> | undefined = undefined
  /** While `blocked`: the bounded queue (created on its first frame, let go after `'drain'`). */
  queue: FrameRing | undefined = undefined
  /** Frames and bytes pending: in `frames` while not blocked, in `queue` while blocked. */
  count = 0
  bytes = 0
  /** `write()` returned false: waiting for `'drain'`. */
  blocked = false
  /** Got a frame this tick (its first was written at once): in the hub's list to flush at the tick's end. */
  dirty = false
  closed = false
  /** Frames held back while a replay is being fetched (see `Hub.hold`). */
  held: Array<Uint8Array> | undefined = undefined
  /** The order keys of the `held` frames (same positions). */
  heldOrders: Array<number> | undefined = undefined
  /**
   * Order key (send time × 1024 + counter, as the replay store orders a user's frames)
   * of the newest frame this connection already has from a replay out of a shared store:
   * a live frame at or below it is not written again (see `Hub.holdOrSkip`). `Infinity`
   * while that replay is fetched (live frames are held), `-Infinity` (every frame is
   * live) otherwise: the delivery paths test `order <= replayedTo`, one compare.
   */
  replayedTo = Number.NEGATIVE_INFINITY
  /** Metrics hook: when the blocked queue got its first frame (`performance.now()`); 0: not measured. */
  queuedAt = 0

  constructor(
    readonly id: string,
    readonly userId: string,
    readonly res: SinkResponse,
    readonly config: ConnConfig
  ) {}
}

export interface HubMetrics {
  sent: number
  droppedOldest: number
  droppedNewest: number
  disconnectedByBackpressure: number
  queueItemsMax: number
  queueBytesMax: number
}

export interface HubHooks {
  /** A connection was removed (client gone, closed, or disconnected by backpressure). */
  readonly onDisconnect: (conn: Conn) => void
  /** A connection overflowed under `dropPolicy: 'disconnect'`. */
  readonly onBackpressureDisconnect: (error: BackpressureDisconnect) => void
  /** Frames were dropped from a connection's queue (summed per connection and policy, once per tick). */
  readonly onDrop: (conn: Conn, policy: "oldest" | "newest", frames: number) => void
  /** Builds the error value for a backpressure disconnect (keeps Errors out of the hot path). */
  readonly backpressureError: (conn: Conn) => BackpressureDisconnect
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

// Shared listeners (no closure per connection): `this` is the response.
function onResponseClose(this: WithConn): void {
  const conn = this[kConn]
  if (conn !== undefined) conn.config.hub.remove(conn, false)
}

function onResponseDrain(this: WithConn): void {
  const conn = this[kConn]
  if (conn !== undefined) conn.config.hub.drain(conn)
}

export class Hub {
  readonly conns = new Map<string, Conn>()
  /** user id → its connections (one connection is stored as itself, more as an array). */
  readonly users = new Map<string, Conn | Array<Conn>>()
  readonly rooms = new Map<string, Set<Conn>>()
  readonly metrics: HubMetrics = {
    sent: 0,
    droppedOldest: 0,
    droppedNewest: 0,
    disconnectedByBackpressure: 0,
    queueItemsMax: 0,
    queueBytesMax: 0
  }
  private dirty: Array<Conn> = []
  private drops = new Map<Conn, [oldest: number, newest: number]>()
  /** During a tick's flush: concatenated chunks by their first frame (see `concat`). */
  private chunkCache: Map<Uint8Array, Array<{ readonly frames: Array<Uint8Array>; readonly bytes: number; readonly chunk: Uint8Array }>> | undefined =
    undefined
  private dropReportScheduled = false
  private flushScheduled = false
  /**
   * Metrics hook (set by the `Metrics` / `prometheus` modules): called with the
   * milliseconds from a tick's first `push` to the last `write()` of that tick's
   * flush, and from a blocked queue's first frame to its `write()` after `'drain'`.
   * Undefined (the default): no clock is read.
   */
  observeLatency: ((ms: number) => void) | undefined = undefined
  /** Metrics hook: `performance.now()` at the first `push` of the pending tick; 0: not measured. */
  private tickStart = 0
  private readonly tickers = new Map<number, Ticker>()
  private readonly flushAll = () => this.flushDirty()

  constructor(private readonly hooks: HubHooks) {}

  get connectionCount(): number {
    return this.conns.size
  }

  // ---------------------------------------------------------------------------
  // registry
  // ---------------------------------------------------------------------------

  add(conn: Conn): void {
    this.conns.set(conn.id, conn)
    const existing = this.users.get(conn.userId)
    if (existing === undefined) this.users.set(conn.userId, conn)
    else if (Array.isArray(existing)) existing.push(conn)
    else this.users.set(conn.userId, [existing, conn])
    const res = conn.res as WithConn
    res[kConn] = conn
    res.on("close", onResponseClose)
    res.on("error", onResponseClose)
    if (conn.config.keepAliveMs > 0) this.addToTicker(conn)
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
    if (members === undefined) this.rooms.set(room, members = new Set())
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
      if (members.size === 0) this.rooms.delete(room)
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
      this.flush(conn)
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
    if (entry === conn) this.users.delete(conn.userId)
    else if (Array.isArray(entry)) {
      // A new array, not a splice: a delivery loop over this user's connections may be
      // the caller (a backpressure disconnect), and must not skip the next connection.
      const rest = entry.filter((c) => c !== conn)
      if (rest.length === 1) this.users.set(conn.userId, rest[0]!)
      else if (rest.length === 0) this.users.delete(conn.userId)
      else this.users.set(conn.userId, rest)
    }
    if (conn.rooms !== undefined) {
      for (const room of conn.rooms) {
        const members = this.rooms.get(room)
        if (members !== undefined) {
          members.delete(conn)
          if (members.size === 0) this.rooms.delete(room)
        }
      }
    }
    if (conn.config.keepAliveMs > 0) this.removeFromTicker(conn)
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

  // ---------------------------------------------------------------------------
  // write path
  // ---------------------------------------------------------------------------

  /**
   * Hands one frame to a connection. Returns whether the connection took it (false:
   * closed, dropped as newest, or disconnected by backpressure).
   */
  push(conn: Conn, frame: Uint8Array): boolean {
    if (conn.closed) return false
    if (conn.held !== undefined) {
      conn.held.push(frame)
      return true
    }
    if (conn.blocked) return this.enqueue(conn, frame)
    // Counted now, as the original counted a successful write.
    this.metrics.sent++
    if (!conn.dirty) {
      conn.dirty = true
      this.dirty.push(conn)
      if (!this.flushScheduled) {
        this.flushScheduled = true
        if (this.observeLatency !== undefined) this.tickStart = performance.now()
        setImmediate(this.flushAll)
      }
      // A Node response (it has `cork`) gets its first frame of the tick at once, as a
      // plain `write()` would: a lone message waits for nothing; the frames after it in
      // the same tick are coalesced (below). A stream sink (`ssekify/platform`) wakes its
      // body's fiber on every write: it gets all of the tick's frames in one chunk.
      if (conn.res.cork !== undefined) {
        this.writeNow(conn, frame)
        return true
      }
    }
    let frames = conn.frames
    if (frames === undefined) conn.frames = frames = []
    frames.push(frame)
    conn.count++
    conn.bytes += frame.length
    // Past the high-water mark `write()` would have returned false: write now, so
    // backpressure starts where it would have without coalescing.
    if (conn.bytes >= conn.config.highWaterMark) this.flush(conn)
    return true
  }

  /**
   * Hands a replay to a connection: written whole, in one write, whatever its length
   * (it is bounded by `recentBufferSize`), not frame by frame against the queue's item
   * limit, which would drop its middle as soon as the first write filled the buffer.
   */
  pushAll(conn: Conn, frames: ReadonlyArray<Uint8Array>): void {
    if (frames.length === 0 || conn.closed) return
    if (conn.held !== undefined || conn.blocked) {
      for (let i = 0; i < frames.length; i++) this.push(conn, frames[i]!)
      return
    }
    let list = conn.frames
    if (list === undefined) conn.frames = list = []
    for (let i = 0; i < frames.length; i++) {
      list.push(frames[i]!)
      conn.bytes += frames[i]!.length
    }
    conn.count += frames.length
    this.metrics.sent += frames.length
    this.flush(conn)
  }

  /**
   * Drops are reported once per connection and policy per tick (an unpaced burst may
   * drop thousands of frames: one event says how many), after the frames of the tick.
   */
  private noteDrop(conn: Conn, policy: 0 | 1, frames: number): void {
    let pending = this.drops.get(conn)
    if (pending === undefined) {
      this.drops.set(conn, pending = [0, 0])
      if (!this.dropReportScheduled) {
        this.dropReportScheduled = true
        setImmediate(this.reportDrops)
      }
    }
    pending[policy] += frames
  }

  private readonly reportDrops = (): void => {
    this.dropReportScheduled = false
    const drops = this.drops
    this.drops = new Map()
    for (const [conn, [oldest, newest]] of drops) {
      if (oldest > 0) this.hooks.onDrop(conn, "oldest", oldest)
      if (newest > 0) this.hooks.onDrop(conn, "newest", newest)
    }
  }

  /**
   * The first `count` frames of `frames` as one buffer; during a tick's flush, the same
   * sequence of frames (same objects, same order) gets the same buffer.
   */
  private concat(frames: Array<Uint8Array>, count: number, bytes: number): Uint8Array {
    const cache = this.chunkCache
    const first = frames[0]!
    if (cache !== undefined) {
      const candidates = cache.get(first)
      if (candidates !== undefined) {
        for (let c = 0; c < candidates.length; c++) {
          const candidate = candidates[c]!
          if (candidate.bytes !== bytes || candidate.frames.length !== count) continue
          let same = true
          for (let i = 1; i < count; i++) {
            if (candidate.frames[i] !== frames[i]) {
              same = false
              break
            }
          }
          if (same) return candidate.chunk
        }
      }
    }
    const list = frames.length === count ? frames : frames.slice(0, count)
    const chunk = Buffer.concat(list, bytes)
    if (cache !== undefined) {
      // the batch array is emptied and reused after the write: the cache keeps a copy
      const entry = { frames: list === frames ? list.slice() : list, bytes, chunk }
      const candidates = cache.get(first)
      if (candidates === undefined) cache.set(first, [entry])
      else if (candidates.length < 8) candidates.push(entry)
    }
    return chunk
  }

  /**
   * While blocked: the bounded queue and its policy. Returns whether the frame was
   * queued. Does not throw, whatever the frame's size and the limits.
   */
  private enqueue(conn: Conn, frame: Uint8Array): boolean {
    const size = frame.length
    const config = conn.config
    if (conn.count >= config.maxItems || conn.bytes + size > config.maxBytes) {
      if (config.policy === Policy.Disconnect) {
        this.metrics.disconnectedByBackpressure++
        const error = this.hooks.backpressureError(conn)
        this.remove(conn, false, true)
        this.hooks.onBackpressureDisconnect(error)
        return false
      }
      // 'newest' (dropping), or a frame that would not fit even an empty queue: evicting
      // the queued frames would not make room, the new frame itself is the one lost.
      if (config.policy === Policy.Newest || size > config.maxBytes || config.maxItems <= 0) {
        this.metrics.droppedNewest++
        this.noteDrop(conn, 1, 1)
        return false
      }
      // 'oldest' (sliding): evict from the head until the new frame fits.
      const queue = conn.queue
      let dropped = 0
      if (queue !== undefined) {
        while (queue.size > 0 && (conn.count >= config.maxItems || conn.bytes + size > config.maxBytes)) {
          conn.count--
          conn.bytes -= queue.shift()!.length
          dropped++
        }
      }
      if (dropped > 0) {
        this.metrics.droppedOldest += dropped
        this.noteDrop(conn, 0, dropped)
      }
    }
    let queue = conn.queue
    if (queue === undefined) conn.queue = queue = new FrameRing(config.maxItems)
    if (!queue.push(frame)) {
      // not reached (the checks above keep `count` below the limit): still a drop, not a throw
      this.metrics.droppedNewest++
      this.noteDrop(conn, 1, 1)
      return false
    }
    if (conn.count === 0 && this.observeLatency !== undefined) conn.queuedAt = performance.now()
    conn.count++
    conn.bytes += size
    if (conn.count > this.metrics.queueItemsMax) this.metrics.queueItemsMax = conn.count
    if (conn.bytes > this.metrics.queueBytesMax) this.metrics.queueBytesMax = conn.bytes
    return true
  }

  /** Writes one frame now (nothing of `conn` is pending). */
  private writeNow(conn: Conn, frame: Uint8Array): void {
    let ok: boolean
    try {
      ok = conn.res.write(frame)
    } catch {
      this.remove(conn, false)
      return
    }
    if (ok === false) this.block(conn)
  }

  /** Writes this tick's batch of `conn` in one call (frames counted as sent when pushed). */
  flush(conn: Conn): void {
    const count = conn.count
    if (count === 0 || conn.closed || conn.blocked) return
    const frames = conn.frames!
    const bytes = conn.bytes
    conn.count = 0
    conn.bytes = 0
    const ok = this.writeFrames(conn, frames, count, bytes)
    // emptied, not replaced: most connections that batch once batch again
    frames.length = 0
    if (!ok) this.block(conn)
  }

  /**
   * Writes `count` frames in one call: one frame as is, small frames concatenated into
   * one chunk, large ones corked. Returns `write()`'s answer; a sink that throws is
   * removed (and the answer is true: nothing is to wait for).
   */
  private writeFrames(conn: Conn, frames: Array<Uint8Array>, count: number, bytes: number): boolean {
    const res = conn.res
    try {
      if (count === 1) return res.write(frames[0]!)
      if (bytes < count * LARGE_FRAME_BYTES || res.cork === undefined) {
        // Small frames: one chunk (one chunked-encoding frame, one buffer for writev).
        return res.write(this.concat(frames, count, bytes))
      }
      // Large frames: copying them into one chunk costs more than it saves; the
      // corked writes still leave in one writev, each frame's shared buffer as is.
      res.cork()
      let ok = true
      for (let i = 0; i < count; i++) ok = res.write(frames[i]!)
      res.uncork!()
      return ok
    } catch {
      this.remove(conn, false)
      return true
    }
  }

  /**
   * `write()` returned false: frames queue until `'drain'`. The listener is attached
   * only now (most connections never wait, and a listener per connection costs memory).
   */
  block(conn: Conn): void {
    if (conn.blocked || conn.closed) return
    conn.blocked = true
    conn.res.once("drain", onResponseDrain)
  }

  /**
   * `'drain'`: write what queued meanwhile, in one call (counted as sent now), and let
   * go of the queue.
   */
  drain(conn: Conn): void {
    if (conn.closed) return
    conn.blocked = false
    const queue = conn.queue
    conn.queue = undefined
    const count = conn.count
    if (count === 0 || queue === undefined) return
    const bytes = conn.bytes
    conn.count = 0
    conn.bytes = 0
    this.metrics.sent += count
    const ok = this.writeFrames(conn, queue.toArray(), count, bytes)
    if (conn.queuedAt !== 0) {
      this.observeLatency?.(performance.now() - conn.queuedAt)
      conn.queuedAt = 0
    }
    if (!ok) this.block(conn)
  }

  private flushDirty(): void {
    this.flushScheduled = false
    const list = this.dirty
    this.dirty = []
    // Connections that got the same frames this tick (a broadcast, a room) share one
    // concatenated chunk instead of one copy each.
    this.chunkCache = new Map()
    for (let i = 0; i < list.length; i++) {
      const conn = list[i]!
      conn.dirty = false
      if (!conn.blocked) this.flush(conn)
    }
    this.chunkCache = undefined
    if (this.tickStart !== 0) {
      this.observeLatency?.(performance.now() - this.tickStart)
      this.tickStart = 0
    }
  }

  /**
   * Holds live frames for `conn` (kept in order with their order keys, unbounded only for
   * the short time a replay is being fetched) until `release` writes the replay and then
   * what was held. While held, `conn.replayedTo` is `Infinity`: every live frame comes
   * through `holdOrSkip`.
   */
  hold(conn: Conn): void {
    if (conn.closed || conn.held !== undefined) return
    conn.held = []
    conn.heldOrders = []
    conn.replayedTo = Number.POSITIVE_INFINITY
  }

  /**
   * A live frame for a connection with `order <= conn.replayedTo`: held while its replay
   * is fetched, else skipped (the replay wrote it). True: the connection has or will
   * have it.
   */
  holdOrSkip(conn: Conn, frame: Uint8Array, order: number): boolean {
    if (conn.closed) return false
    if (conn.held !== undefined) {
      conn.held.push(frame)
      conn.heldOrders!.push(order)
    }
    return true
  }

  /**
   * Writes the replay `first`, then the held frames newer than `replayedTo` (the order
   * key of the newest frame the replay's store had for the user: the held frames at or
   * below it were in `first`, or the client had them), and from now on skips live frames
   * at or below it. `-Infinity`: no replay to compare with, every held frame is written.
   */
  release(conn: Conn, first: ReadonlyArray<Uint8Array>, replayedTo = Number.NEGATIVE_INFINITY): void {
    const held = conn.held
    const orders = conn.heldOrders
    conn.held = undefined
    conn.heldOrders = undefined
    conn.replayedTo = replayedTo
    if (conn.closed) return
    this.pushAll(conn, first)
    if (held === undefined) return
    // (orders and frames are pushed together; were they ever not, nothing is skipped)
    const aligned = orders !== undefined && orders.length === held.length
    for (let i = 0; i < held.length; i++) {
      if (!aligned || orders[i]! > replayedTo) this.push(conn, held[i]!)
    }
  }

  // ---------------------------------------------------------------------------
  // heartbeats: one ticker per distinct interval
  // ---------------------------------------------------------------------------

  private addToTicker(conn: Conn): void {
    const ms = conn.config.keepAliveMs
    let ticker = this.tickers.get(ms)
    if (ticker === undefined) {
      const stop = this.hooks.every(ms, () => this.beat(ms))
      this.tickers.set(ms, ticker = { count: 0, stop })
    }
    ticker.count++
  }

  private removeFromTicker(conn: Conn): void {
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
        this.remove(conn, false)
        continue
      }
      this.metrics.sent++
      if (ok === false) this.block(conn)
    }
  }

  /** Number of distinct heartbeat tickers running (for tests and stats). */
  get tickerCount(): number {
    return this.tickers.size
  }

  /** Stops every ticker (connections stay). */
  stopTickers(): void {
    for (const ticker of this.tickers.values()) ticker.stop()
    this.tickers.clear()
  }
}
