/**
 * `ssekify/prometheus`: a `prom-client` collector for plain Node users (`prom-client`
 * is an optional peer dependency: `npm i prom-client`).
 *
 * ```js
 * const client = require('prom-client')
 * const { registerPrometheus } = require('ssekify/prometheus')
 *
 * registerPrometheus(sse) // sse = new SSEKify(...); the global registry by default
 * app.get('/metrics', async (_req, res) => {
 *   res.type(client.register.contentType).send(await client.register.metrics())
 * })
 * ```
 *
 * Every field of `stats()` becomes a gauge or a counter read at scrape time
 * (`ssekify_connections`, `ssekify_sent_total`, ...), plus the connections' queues now
 * (`ssekify_queued_frames`, `ssekify_queue_depth_max`, `ssekify_blocked_connections`,
 * `ssekify_connections_by_queue_depth{le}`) and the delivery-latency histogram
 * (`ssekify_delivery_latency_seconds`), fed by the hub once per flush tick and once
 * per drained blocked queue — not per frame or per connection.
 *
 * @since 0.2.0
 */
import * as Effect from "effect/Effect"
import { Counter, Gauge, Histogram, register as globalRegistry, type Registry } from "prom-client"
import type { SSEKify } from "./facade.js"
import {
  DEPTH_BOUNDS,
  LATENCY_BOUNDS,
  LATENCY_METRIC,
  QUEUE_METRICS,
  type QueueSnapshot,
  serviceOf,
  STAT_METRICS,
  statValue
} from "./internal/metrics.js"
import type { SseKifyService, Stats } from "./SseKify.js"

/**
 * Options of {@link registerPrometheus}.
 *
 * @since 0.2.0
 * @category models
 */
export interface PrometheusOptions {
  /** The registry the metrics are registered on. Default: prom-client's global `register`. */
  readonly registry?: Registry | undefined
  /** Prefix of every metric name. Default `'ssekify_'`. */
  readonly prefix?: string | undefined
  /**
   * Labels with fixed values on every metric (e.g. `{ instance: sse.instanceId }`), so
   * that several instances can share a registry. Default: none.
   */
  readonly labels?: Readonly<Record<string, string>> | undefined
  /** Buckets of the latency histogram, in seconds. Default: 50 µs to 30 s. */
  readonly latencyBuckets?: ReadonlyArray<number> | undefined
}

/**
 * What {@link registerPrometheus} returns.
 *
 * @since 0.2.0
 * @category models
 */
export interface PrometheusCollector {
  /** The names of the metrics registered. */
  readonly names: ReadonlyArray<string>
  /** Removes the metrics from the registry and stops observing latency. */
  readonly unregister: () => void
}

/**
 * What a collector reads: an `SSEKify` instance, an `SseKify` service, or anything
 * with a `stats()` method (then only the `stats()` metrics are available).
 *
 * @since 0.2.0
 * @category models
 */
export type PrometheusSource = SSEKify | SseKifyService | { readonly stats: () => Stats }

const readStats = (source: PrometheusSource): () => Stats => {
  const stats = (source as { readonly stats?: unknown }).stats
  // an `SSEKify` instance or anything with stats(); a service's `stats` is an effect
  if (typeof stats === "function") return () => (stats as () => Stats).call(source)
  if (Effect.isEffect(stats)) return () => Effect.runSync(stats as Effect.Effect<Stats>)
  throw new TypeError("registerPrometheus: expected an SSEKify instance, an SseKify service or an object with stats()")
}

/**
 * Registers ssekify's metrics on a prom-client registry. Throws when a metric of the
 * same name is already registered there (use `prefix` or `labels` and another
 * registry for a second instance, or `unregister` first).
 *
 * @since 0.2.0
 * @category constructors
 */
export const registerPrometheus = (source: PrometheusSource, options?: PrometheusOptions): PrometheusCollector => {
  const registry = options?.registry ?? globalRegistry
  const prefix = options?.prefix ?? "ssekify_"
  const labels = options?.labels ?? {}
  const labelNames = Object.keys(labels)
  const stats = readStats(source)
  const service = serviceOf(source)

  // One read of stats() and of the queues per scrape: prom-client runs every collect()
  // of a scrape in one synchronous pass.
  let cachedStats: Stats | undefined
  let cachedQueues: QueueSnapshot | undefined
  const clear = () => {
    cachedStats = undefined
    cachedQueues = undefined
  }
  const currentStats = () => {
    if (cachedStats === undefined) {
      cachedStats = stats()
      queueMicrotask(clear)
    }
    return cachedStats
  }
  const currentQueues = (): QueueSnapshot => {
    if (cachedQueues === undefined) {
      cachedQueues = service!.unsafeQueueSnapshot()
      queueMicrotask(clear)
    }
    return cachedQueues
  }

  const names: Array<string> = []
  const common = { registers: [registry], labelNames }
  const add = <M>(make: () => M, name: string): M => {
    const metric = make()
    names.push(name)
    return metric
  }
  const unregisterAll = () => {
    for (const name of names) registry.removeSingleMetric(name)
  }

  try {
    for (const def of STAT_METRICS) {
      const name = prefix + def.name
      if (def.kind === "counter") {
        add(() =>
          new Counter({
            name,
            help: def.help,
            ...common,
            collect(this: Counter<string>) {
              this.reset()
              this.inc(labels, statValue(currentStats(), def))
            }
          }), name)
      } else {
        add(() =>
          new Gauge({
            name,
            help: def.help,
            ...common,
            collect(this: Gauge<string>) {
              this.set(labels, statValue(currentStats(), def))
            }
          }), name)
      }
    }

    if (service !== undefined) {
      const queueGauge = (def: { readonly name: string; readonly help: string }, read: (q: QueueSnapshot) => number) => {
        const name = prefix + def.name
        add(() =>
          new Gauge({
            name,
            help: def.help,
            ...common,
            collect(this: Gauge<string>) {
              this.set(labels, read(currentQueues()))
            }
          }), name)
      }
      queueGauge(QUEUE_METRICS.frames, (q) => q.frames)
      queueGauge(QUEUE_METRICS.bytes, (q) => q.bytes)
      queueGauge(QUEUE_METRICS.depthMax, (q) => q.depthMax)
      queueGauge(QUEUE_METRICS.blocked, (q) => q.blocked)
      const byDepthName = prefix + QUEUE_METRICS.byDepth.name
      add(() =>
        new Gauge({
          name: byDepthName,
          help: QUEUE_METRICS.byDepth.help,
          registers: [registry],
          labelNames: [...labelNames, "le"],
          collect(this: Gauge<string>) {
            const q = currentQueues()
            for (let i = 0; i < DEPTH_BOUNDS.length; i++) this.set({ ...labels, le: String(DEPTH_BOUNDS[i]) }, q.byDepth[i]!)
            this.set({ ...labels, le: "+Inf" }, q.connections)
          }
        }), byDepthName)
    }
  } catch (error) {
    unregisterAll()
    throw error
  }

  let stopLatency: (() => void) | undefined
  if (service !== undefined) {
    const latencyName = prefix + LATENCY_METRIC.name
    let histogram: Histogram<string>
    try {
      histogram = add(() =>
        new Histogram({
          name: latencyName,
          help: LATENCY_METRIC.help,
          buckets: [...(options?.latencyBuckets ?? LATENCY_BOUNDS)],
          ...common
        }), latencyName)
    } catch (error) {
      unregisterAll()
      throw error
    }
    const child = labelNames.length === 0 ? histogram : histogram.labels(labels)
    stopLatency = service.unsafeObserveLatency((seconds) => child.observe(seconds))
  }

  let done = false
  return {
    names,
    unregister: () => {
      if (done) return
      done = true
      stopLatency?.()
      unregisterAll()
    }
  }
}
