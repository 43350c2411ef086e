/**
 * What the `Metrics` (Effect) and `prometheus` (prom-client) modules share: the
 * metric names and help texts, the snapshot of the connections' queues, and the
 * delivery-latency observers on a writer, and how to find the service behind a source.
 *
 * Cost model: the `stats()` counters and the queue snapshot are read when sampled
 * (an interval, or a scrape): O(connections) then, nothing on the send path. Latency
 * is observed by the hub once per flush tick (the tick's oldest frame to its last
 * `write()`) and once per `'drain'` of a blocked queue — never per frame or per
 * connection — and only while an observer is registered (otherwise no clock is read).
 */
import type { Conn } from "./conn.js"
import type { QueueSnapshot, Stats } from "./domain.js"

type NumericStat = { [K in keyof Stats]: Stats[K] extends number ? K : never }[keyof Stats]

export interface StatMetric {
  /** The `stats()` field. */
  readonly key: NumericStat | "accepting"
  /** The name after the prefix. */
  readonly name: string
  readonly kind: "counter" | "gauge"
  readonly help: string
  /** Multiplies the value (ms → s). */
  readonly scale?: number
}

/** Every field of `stats()`, as a metric. Counters end in `_total`. */
export const STAT_METRICS: ReadonlyArray<StatMetric> = [
  { key: "connections", name: "connections", kind: "gauge", help: "Open SSE connections on this instance." },
  { key: "users", name: "users", kind: "gauge", help: "Users with at least one open connection." },
  { key: "rooms", name: "rooms", kind: "gauge", help: "Rooms with at least one connection." },
  { key: "sent", name: "sent_total", kind: "counter", help: "Frames written to connections (one per frame per connection, heartbeats included)." },
  { key: "droppedOldest", name: "dropped_oldest_total", kind: "counter", help: "Frames dropped from full queues under dropPolicy 'oldest'." },
  { key: "droppedNewest", name: "dropped_newest_total", kind: "counter", help: "Frames dropped from full queues under dropPolicy 'newest'." },
  { key: "disconnectedByBackpressure", name: "disconnected_by_backpressure_total", kind: "counter", help: "Connections closed by dropPolicy 'disconnect'." },
  { key: "queueItemsMax", name: "queue_items_max", kind: "gauge", help: "Largest queue (frames waiting for 'drain') seen since start." },
  { key: "queueBytesMax", name: "queue_bytes_max", kind: "gauge", help: "Largest queue in bytes seen since start." },
  { key: "errorCount", name: "errors_total", kind: "counter", help: "Errors reported (the 'error' events)." },
  { key: "seqIncrsLocal", name: "seq_incrs_local_total", kind: "counter", help: "seq values taken from the in-memory counter." },
  { key: "seqIncrsRedis", name: "seq_incrs_redis_total", kind: "counter", help: "seq values taken from Redis INCR." },
  {
    key: "lastSeqKvFallbackAt",
    name: "last_seq_kv_fallback_timestamp_seconds",
    kind: "gauge",
    help: "When the global seq last fell back to memory (Unix time, seconds; 0: never).",
    scale: 1 / 1000
  },
  { key: "replayed", name: "replayed_total", kind: "counter", help: "Frames written by Last-Event-ID replays." },
  { key: "replayMisses", name: "replay_misses_total", kind: "counter", help: "Reconnects whose Last-Event-ID was not found." },
  { key: "published", name: "published_total", kind: "counter", help: "Messages this instance put on the bus." },
  { key: "received", name: "received_total", kind: "counter", help: "Messages from other instances delivered here." },
  {
    key: "busRejected",
    name: "bus_rejected_total",
    kind: "counter",
    help: "Messages from the bus refused (BUS_MESSAGE_INVALID): malformed, over a field limit, forged, replayed or too old."
  },
  { key: "accepting", name: "accepting", kind: "gauge", help: "1 while new connections are accepted, 0 after stopAccepting()/shutdown()." }
]

export const statValue = (stats: Stats, metric: StatMetric): number => {
  const value = stats[metric.key]
  const n = typeof value === "boolean" ? (value ? 1 : 0) : value
  return metric.scale === undefined ? n : n * metric.scale
}

/** Gauges over the connections' queues, read when sampled. */
export const QUEUE_METRICS = {
  frames: { name: "queued_frames", help: "Frames waiting in the connections' queues now (this tick's batches and blocked queues)." },
  bytes: { name: "queued_bytes", help: "Bytes waiting in the connections' queues now." },
  depthMax: { name: "queue_depth_max", help: "Frames waiting in the fullest connection queue now." },
  blocked: { name: "blocked_connections", help: "Connections waiting for 'drain' now (their client reads slower than they are sent to)." },
  byDepth: {
    name: "connections_by_queue_depth",
    help: "Connections whose queue holds at most `le` frames now (a cumulative distribution of the current queue depths)."
  }
} as const

/** The `le` bounds of `connections_by_queue_depth` (`+Inf` is the connection count). */
export const DEPTH_BOUNDS: ReadonlyArray<number> = [0, 1, 5, 10, 50, 100, 500, 1000]

export const LATENCY_METRIC = {
  name: "delivery_latency_seconds",
  help: "From a send to the write() of its frame: per flush tick (its oldest frame) and per drained blocked queue."
} as const

/** Seconds: from 50 µs (a tick) to 30 s (a queue blocked by a slow client). */
export const LATENCY_BOUNDS: ReadonlyArray<number> = [
  0.00005,
  0.0001,
  0.00025,
  0.0005,
  0.001,
  0.0025,
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
  10,
  30
]

export type { QueueSnapshot }

/** The queues of `conns` now. */
export const queueSnapshot = (conns: ReadonlyMap<string, Conn>): QueueSnapshot => {
  let frames = 0
  let bytes = 0
  let depthMax = 0
  let blocked = 0
  const byDepth = DEPTH_BOUNDS.map(() => 0)
  for (const conn of conns.values()) {
    const depth = conn.count
    frames += depth
    bytes += conn.bytes
    if (depth > depthMax) depthMax = depth
    if (conn.blocked) blocked++
    for (let i = DEPTH_BOUNDS.length - 1; i >= 0 && depth <= DEPTH_BOUNDS[i]!; i--) byDepth[i]!++
  }
  return { frames, bytes, depthMax, blocked, connections: conns.size, byDepth }
}

// ---------------------------------------------------------------------------
// latency observers
// ---------------------------------------------------------------------------

/** Where latency samples come from: the write path (`Writer.observeLatency`). */
export interface LatencySource {
  observeLatency: ((ms: number) => void) | undefined
}

const observers = new WeakMap<LatencySource, Set<(seconds: number) => void>>()

/**
 * Calls `observer` with each latency sample of `source`, in seconds, until the returned
 * function is called.
 */
export const observeLatency = (source: LatencySource, observer: (seconds: number) => void): () => void => {
  let set = observers.get(source)
  if (set === undefined) observers.set(source, set = new Set())
  const all = set
  all.add(observer)
  source.observeLatency = (ms) => {
    const seconds = ms / 1000
    for (const o of all) o(seconds)
  }
  return () => {
    all.delete(observer)
    if (all.size === 0) source.observeLatency = undefined
  }
}

// ---------------------------------------------------------------------------
// the service behind a source
// ---------------------------------------------------------------------------

/** What the metrics read of an `SseKify` service (its public members). */
export interface MetricsSource {
  readonly unsafeQueueSnapshot: () => QueueSnapshot
  readonly unsafeObserveLatency: (observer: (seconds: number) => void) => () => void
}

/** The key under which an `SSEKify` facade holds its service (any bundle: a `Symbol.for` key). */
export const SERVICE_KEY: unique symbol = Symbol.for("ssekify/Service")

const isSource = (value: unknown): value is MetricsSource =>
  typeof value === "object" && value !== null &&
  typeof (value as MetricsSource).unsafeQueueSnapshot === "function" &&
  typeof (value as MetricsSource).unsafeObserveLatency === "function"

/** The service behind an `SSEKify` instance, or an `SseKify` service itself; undefined: neither. */
export const serviceOf = <S extends MetricsSource = MetricsSource>(source: unknown): S | undefined => {
  if (isSource(source)) return source as S
  if (typeof source !== "object" || source === null) return undefined
  const service = (source as { readonly [SERVICE_KEY]?: unknown })[SERVICE_KEY]
  return isSource(service) ? service as S : undefined
}
