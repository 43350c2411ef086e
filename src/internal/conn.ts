/**
 * One SSE connection as a data record (the registry, the writer and the heartbeats hold
 * the logic), the sink it writes to, and the settings connections share.
 */
import type { ConnectionSink } from "./domain.js"
import type { FrameRing } from "./ring.js"

/** What the hub needs of a response: a Node `ServerResponse` satisfies it. */
export type SinkResponse = ConnectionSink

/** Queue overflow policies, as small integers for the hot path. */
export const enum Policy {
  Oldest = 0,
  Newest = 1,
  Disconnect = 2
}

export const kConn: unique symbol = Symbol.for("ssekify/Connection")

/**
 * What a connection's shared listeners (`'close'`, `'drain'`) call: the hub the
 * connection is registered in.
 */
export interface ConnOwner {
  remove(conn: Conn, flush: boolean, stalled?: boolean): void
  drain(conn: Conn): void
}

/**
 * What connections registered with the same options share (limits, policy, heartbeat
 * interval, high-water mark, hub): one object for many connections, not five fields each.
 */
export interface ConnConfig {
  readonly hub: ConnOwner
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
