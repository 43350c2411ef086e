/**
 * ssekify as Effect `Metric`s: every field of `stats()`, the connections' queues now,
 * and the delivery latency. Export them with any Effect metrics exporter (e.g.
 * `@effect/opentelemetry`'s Prometheus or OTLP exporters), or read them with
 * `Metric.value`.
 *
 * ```ts
 * import { Layer } from "effect"
 * import { Metrics, SseKifyLive, Transport } from "ssekify"
 *
 * const Live = Metrics.layer({ interval: "10 seconds" }).pipe(
 *   Layer.provideMerge(SseKifyLive),
 *   Layer.provide(Transport.layerNone)
 * )
 * ```
 *
 * What it costs: the `stats()` fields and the queue gauges are sampled every
 * `interval` (O(connections) per sample, nothing on the send path). The latency
 * histogram is fed by the hub once per flush tick and once per drained blocked queue
 * (not per frame, not per connection), and only while a `Metrics` layer (or a
 * `ssekify/prometheus` collector) is registered on the instance.
 *
 * Names follow Prometheus conventions (counters end in `_total`, units in the name).
 * Effect metrics are process-wide: two instances in one process add to the same
 * counters unless given distinct `tags`.
 *
 * @since 0.2.0
 */
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as MetricBoundaries from "effect/MetricBoundaries"
import * as MetricLabel from "effect/MetricLabel"
import type * as Scope from "effect/Scope"
import {
  DEPTH_BOUNDS,
  LATENCY_BOUNDS,
  LATENCY_METRIC,
  QUEUE_METRICS,
  STAT_METRICS,
  type StatMetric,
  statValue
} from "./internal/metrics.js"
import { SseKify, type Stats } from "./SseKify.js"

const PREFIX = "ssekify_"

const help = (name: string): string => STAT_METRICS.find((m) => m.name === name)!.help
const gauge = (name: string, description: string = help(name)) => Metric.gauge(PREFIX + name, { description })
const counter = (name: string) => Metric.counter(PREFIX + name, { description: help(name), incremental: true })

/**
 * `stats().connections`.
 *
 * @since 0.2.0
 * @category metrics
 */
export const connections: Metric.Metric.Gauge<number> = gauge("connections")
/**
 * `stats().users`.
 *
 * @since 0.2.0
 * @category metrics
 */
export const users: Metric.Metric.Gauge<number> = gauge("users")
/**
 * `stats().rooms`.
 *
 * @since 0.2.0
 * @category metrics
 */
export const rooms: Metric.Metric.Gauge<number> = gauge("rooms")
/**
 * `stats().sent`: frames written (one per frame per connection, heartbeats included).
 *
 * @since 0.2.0
 * @category metrics
 */
export const sent: Metric.Metric.Counter<number> = counter("sent_total")
/**
 * `stats().droppedOldest`.
 *
 * @since 0.2.0
 * @category metrics
 */
export const droppedOldest: Metric.Metric.Counter<number> = counter("dropped_oldest_total")
/**
 * `stats().droppedNewest`.
 *
 * @since 0.2.0
 * @category metrics
 */
export const droppedNewest: Metric.Metric.Counter<number> = counter("dropped_newest_total")
/**
 * `stats().disconnectedByBackpressure`.
 *
 * @since 0.2.0
 * @category metrics
 */
export const disconnectedByBackpressure: Metric.Metric.Counter<number> = counter("disconnected_by_backpressure_total")
/**
 * `stats().queueItemsMax`: the largest queue seen since start.
 *
 * @since 0.2.0
 * @category metrics
 */
export const queueItemsMax: Metric.Metric.Gauge<number> = gauge("queue_items_max")
/**
 * `stats().queueBytesMax`.
 *
 * @since 0.2.0
 * @category metrics
 */
export const queueBytesMax: Metric.Metric.Gauge<number> = gauge("queue_bytes_max")
/**
 * `stats().errorCount`.
 *
 * @since 0.2.0
 * @category metrics
 */
export const errors: Metric.Metric.Counter<number> = counter("errors_total")
/**
 * `stats().seqIncrsLocal`.
 *
 * @since 0.2.0
 * @category metrics
 */
export const seqIncrsLocal: Metric.Metric.Counter<number> = counter("seq_incrs_local_total")
/**
 * `stats().seqIncrsRedis`.
 *
 * @since 0.2.0
 * @category metrics
 */
export const seqIncrsRedis: Metric.Metric.Counter<number> = counter("seq_incrs_redis_total")
/**
 * `stats().lastSeqKvFallbackAt`, in seconds (Unix time; 0: never).
 *
 * @since 0.2.0
 * @category metrics
 */
export const lastSeqKvFallback: Metric.Metric.Gauge<number> = gauge("last_seq_kv_fallback_timestamp_seconds")
/**
 * `stats().replayed`.
 *
 * @since 0.2.0
 * @category metrics
 */
export const replayed: Metric.Metric.Counter<number> = counter("replayed_total")
/**
 * `stats().replayMisses`.
 *
 * @since 0.2.0
 * @category metrics
 */
export const replayMisses: Metric.Metric.Counter<number> = counter("replay_misses_total")
/**
 * `stats().published`.
 *
 * @since 0.2.0
 * @category metrics
 */
export const published: Metric.Metric.Counter<number> = counter("published_total")
/**
 * `stats().received`.
 *
 * @since 0.2.0
 * @category metrics
 */
export const received: Metric.Metric.Counter<number> = counter("received_total")
/**
 * `stats().busRejected`.
 *
 * @since 0.2.0
 * @category metrics
 */
export const busRejected: Metric.Metric.Counter<number> = counter("bus_rejected_total")
/**
 * `stats().accepting`: 1 or 0.
 *
 * @since 0.2.0
 * @category metrics
 */
export const accepting: Metric.Metric.Gauge<number> = gauge("accepting")

/**
 * Frames waiting in the connections' queues now.
 *
 * @since 0.2.0
 * @category metrics
 */
export const queuedFrames: Metric.Metric.Gauge<number> = gauge(QUEUE_METRICS.frames.name, QUEUE_METRICS.frames.help)
/**
 * Bytes waiting in the connections' queues now.
 *
 * @since 0.2.0
 * @category metrics
 */
export const queuedBytes: Metric.Metric.Gauge<number> = gauge(QUEUE_METRICS.bytes.name, QUEUE_METRICS.bytes.help)
/**
 * Frames waiting in the fullest connection queue now.
 *
 * @since 0.2.0
 * @category metrics
 */
export const queueDepthMax: Metric.Metric.Gauge<number> = gauge(QUEUE_METRICS.depthMax.name, QUEUE_METRICS.depthMax.help)
/**
 * Connections waiting for `'drain'` now.
 *
 * @since 0.2.0
 * @category metrics
 */
export const blockedConnections: Metric.Metric.Gauge<number> = gauge(QUEUE_METRICS.blocked.name, QUEUE_METRICS.blocked.help)
/**
 * Connections whose queue holds at most `le` frames now, tagged `le` = 0, 1, 5, 10,
 * 50, 100, 500, 1000 and `+Inf` (the current distribution of per-connection queue
 * depths).
 *
 * @since 0.2.0
 * @category metrics
 */
export const connectionsByQueueDepth: Metric.Metric.Gauge<number> = gauge(QUEUE_METRICS.byDepth.name, QUEUE_METRICS.byDepth.help)

/**
 * From a send to the `write()` of its frame, in seconds: one sample per flush tick
 * (the tick's oldest frame, to the tick's last write) and one per blocked queue when
 * `'drain'` lets it go.
 *
 * @since 0.2.0
 * @category metrics
 */
export const deliveryLatency: Metric.Metric.Histogram<number> = Metric.histogram(
  PREFIX + LATENCY_METRIC.name,
  MetricBoundaries.fromIterable(LATENCY_BOUNDS),
  LATENCY_METRIC.help
)

const STAT_EFFECT_METRICS: ReadonlyArray<readonly [StatMetric, Metric.Metric.Gauge<number> | Metric.Metric.Counter<number>]> = (
  [
    ["connections", connections],
    ["users", users],
    ["rooms", rooms],
    ["sent_total", sent],
    ["dropped_oldest_total", droppedOldest],
    ["dropped_newest_total", droppedNewest],
    ["disconnected_by_backpressure_total", disconnectedByBackpressure],
    ["queue_items_max", queueItemsMax],
    ["queue_bytes_max", queueBytesMax],
    ["errors_total", errors],
    ["seq_incrs_local_total", seqIncrsLocal],
    ["seq_incrs_redis_total", seqIncrsRedis],
    ["last_seq_kv_fallback_timestamp_seconds", lastSeqKvFallback],
    ["replayed_total", replayed],
    ["replay_misses_total", replayMisses],
    ["published_total", published],
    ["received_total", received],
    ["bus_rejected_total", busRejected],
    ["accepting", accepting]
  ] as const
).map(([name, metric]) => [STAT_METRICS.find((m) => m.name === name)!, metric] as const)

/**
 * Options of {@link make} and {@link layer}.
 *
 * @since 0.2.0
 * @category models
 */
export interface Options {
  /** How often `stats()` and the queues are sampled. Default 10 seconds. */
  readonly interval?: Duration.DurationInput | undefined
  /** Tags added to every metric (e.g. `{ instance: "a" }`). Default: none. */
  readonly tags?: Readonly<Record<string, string>> | undefined
}

/**
 * What {@link make} returns.
 *
 * @since 0.2.0
 * @category models
 */
export interface Sampler {
  /** Reads `stats()` and the queues now and updates the metrics. */
  readonly sample: Effect.Effect<void>
}

/**
 * Feeds the metrics from the `SseKify` instance for the life of the scope: the latency
 * histogram as deliveries happen, the rest when {@link Sampler.sample} runs (it runs
 * once at once; {@link layer} also runs it every `interval`).
 *
 * @since 0.2.0
 * @category constructors
 */
export const make = (options?: Options): Effect.Effect<Sampler, never, SseKify | Scope.Scope> =>
  Effect.gen(function*() {
    const sse = yield* SseKify
    const tags = Object.entries(options?.tags ?? {}).map(([key, value]) => MetricLabel.make(key, value))
    const depthTags = [...DEPTH_BOUNDS.map(String), "+Inf"].map((le) => [...tags, MetricLabel.make("le", le)])
    let last: Stats | undefined

    const update = (stats: Stats) => {
      for (const [def, metric] of STAT_EFFECT_METRICS) {
        const value = statValue(stats, def)
        if (def.kind === "gauge") {
          metric.unsafeUpdate(value, tags)
        } else {
          const delta = value - (last === undefined ? 0 : statValue(last, def))
          if (delta > 0) metric.unsafeUpdate(delta, tags)
        }
      }
      last = stats
      const q = sse.unsafeQueueSnapshot()
      queuedFrames.unsafeUpdate(q.frames, tags)
      queuedBytes.unsafeUpdate(q.bytes, tags)
      queueDepthMax.unsafeUpdate(q.depthMax, tags)
      blockedConnections.unsafeUpdate(q.blocked, tags)
      for (let i = 0; i < DEPTH_BOUNDS.length; i++) connectionsByQueueDepth.unsafeUpdate(q.byDepth[i]!, depthTags[i]!)
      connectionsByQueueDepth.unsafeUpdate(q.connections, depthTags[DEPTH_BOUNDS.length]!)
    }

    yield* Effect.acquireRelease(
      Effect.sync(() => sse.unsafeObserveLatency((seconds) => deliveryLatency.unsafeUpdate(seconds, tags))),
      (stop) => Effect.sync(stop)
    )
    const sample = Effect.flatMap(sse.stats, (stats) => Effect.sync(() => update(stats)))
    yield* sample
    return { sample }
  })

/**
 * {@link make}, sampling every `interval` (default 10 seconds) and once more when the
 * layer is released.
 *
 * @since 0.2.0
 * @category layers
 */
export const layer = (options?: Options): Layer.Layer<never, never, SseKify> =>
  Layer.scopedDiscard(
    Effect.gen(function*() {
      const { sample } = yield* make(options)
      const interval = Duration.decode(options?.interval ?? "10 seconds")
      yield* Effect.addFinalizer(() => sample)
      yield* Effect.forkScoped(Effect.forever(Effect.zipRight(Effect.sleep(interval), sample)))
    })
  )

/**
 * {@link layer} with options from a `Config`, each option its own config
 * (`Config.Wrap`): `layerConfig({ interval: Config.duration("METRICS_INTERVAL") })`.
 *
 * @since 0.3.0
 * @category layers
 */
export const layerConfig = (
  options: Config.Config.Wrap<Options>
): Layer.Layer<never, ConfigError.ConfigError, SseKify> =>
  Layer.unwrapEffect(Effect.map(Config.unwrap(options), layer))
