/**
 * The write path of one instance: a connection's frames of one tick leave in one
 * `write()` (`setImmediate`), a connection whose `write()` returned `false` queues in its
 * bounded ring until `'drain'`, drops are counted and reported once per tick, and a
 * connection whose replay is being fetched holds its live frames.
 *
 * Plain, synchronous code on purpose (DESIGN.md, fast path): per message per connection
 * only `push`; nothing here throws out of a delivery loop.
 */
import type { BackpressureDisconnect } from "../Errors.js"
import { type Conn, type HubMetrics, kConn, Policy, type SinkResponse } from "./conn.js"
import { FrameRing } from "./ring.js"

/** Average frame size from which a batch is written frame by frame (corked), not concatenated. */
const LARGE_FRAME_BYTES = 2048

type WithConn = SinkResponse & { [kConn]?: Conn | undefined }

// A shared listener (no closure per connection): `this` is the response.
function onResponseDrain(this: WithConn): void {
  const conn = this[kConn]
  if (conn !== undefined) conn.config.hub.drain(conn)
}

/** What the writer needs of the registry: removing a connection whose sink failed. */
export interface WriterOwner {
  remove(conn: Conn, flush: boolean, stalled?: boolean): void
}

export interface WriterHooks {
  /** A connection overflowed under `dropPolicy: 'disconnect'`. */
  readonly onBackpressureDisconnect: (error: BackpressureDisconnect) => void
  /** Frames were dropped from a connection's queue (summed per connection and policy, once per tick). */
  readonly onDrop: (conn: Conn, policy: "oldest" | "newest", frames: number) => void
  /** Builds the error value for a backpressure disconnect (keeps Errors out of the hot path). */
  readonly backpressureError: (conn: Conn) => BackpressureDisconnect
}

export class Writer {
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
  private readonly flushAll = () => this.flushDirty()

  constructor(private readonly owner: WriterOwner, private readonly hooks: WriterHooks) {}

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
        this.owner.remove(conn, false, true)
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
      this.owner.remove(conn, false)
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
      this.owner.remove(conn, false)
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
    // a held frame the replay wrote (the same bytes: recorded by this instance) is not written twice
    const replayed = first.length > 0 ? new Set(first) : undefined
    for (let i = 0; i < held.length; i++) {
      if ((!aligned || orders[i]! > replayedTo) && replayed?.has(held[i]!) !== true) this.push(conn, held[i]!)
    }
  }
}
