/**
 * Metrics: the `ssekify/prometheus` collector scraped over a real `/metrics` endpoint
 * (exposition text parsed, every value checked against `stats()` after real
 * deliveries, queue gauges with a client that stops reading, latency samples from the
 * hub), and the Effect `Metrics` layer read with `Metric.value`.
 */
import { HttpRouter, HttpServer } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { describe as describeEffect, expect as expectEffect, it as itEffect } from "@effect/vitest"
import { Context, Effect, Layer, Metric, TestClock } from "effect"
import * as http from "node:http"
import { Registry } from "prom-client"
import { afterEach, describe, expect, it } from "vitest"
import * as HttpSse from "../src/HttpSse.js"
import { SSEKify, SseKify, type Stats, Transport } from "../src/index.js"
import * as Metrics from "../src/Metrics.js"
import { registerPrometheus } from "../src/prometheus.js"
import { connect, request, startServer, until } from "./support/sse.js"

let cleanup: Array<() => Promise<void> | void> = []
afterEach(async () => {
  for (const f of cleanup.reverse()) await f()
  cleanup = []
})

// ---------------------------------------------------------------------------
// exposition text
// ---------------------------------------------------------------------------

interface Sample {
  readonly name: string
  readonly labels: Readonly<Record<string, string>>
  readonly value: number
}

interface Exposition {
  readonly samples: ReadonlyArray<Sample>
  readonly types: ReadonlyMap<string, string>
  readonly help: ReadonlyMap<string, string>
}

/** Parses the Prometheus text format (0.0.4): `# HELP`, `# TYPE` and sample lines. */
const parseExposition = (text: string): Exposition => {
  const samples: Array<Sample> = []
  const types = new Map<string, string>()
  const help = new Map<string, string>()
  for (const line of text.split("\n")) {
    if (line.trim() === "") continue
    const meta = /^# (HELP|TYPE) (\S+) (.*)$/.exec(line)
    if (meta) {
      ;(meta[1] === "HELP" ? help : types).set(meta[2]!, meta[3]!)
      continue
    }
    if (line.startsWith("#")) continue
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line)
    if (!m) throw new Error(`bad exposition line: ${JSON.stringify(line)}`)
    const labels: Record<string, string> = {}
    if (m[2]) {
      for (const pair of m[2].matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[pair[1]!] = pair[2]!
    }
    const raw = m[3]!
    samples.push({ name: m[1]!, labels, value: raw === "+Inf" ? Infinity : raw === "-Inf" ? -Infinity : Number(raw) })
  }
  return { samples, types, help }
}

const value = (e: Exposition, name: string, labels: Record<string, string> = {}): number => {
  const found = e.samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
  if (found.length !== 1) throw new Error(`${name} ${JSON.stringify(labels)}: ${found.length} samples`)
  return found[0]!.value
}

/** stats() field → exposed metric name (without the prefix). */
const STAT_NAMES: ReadonlyArray<[keyof Stats, string, string]> = [
  ["connections", "connections", "gauge"],
  ["users", "users", "gauge"],
  ["rooms", "rooms", "gauge"],
  ["sent", "sent_total", "counter"],
  ["droppedOldest", "dropped_oldest_total", "counter"],
  ["droppedNewest", "dropped_newest_total", "counter"],
  ["disconnectedByBackpressure", "disconnected_by_backpressure_total", "counter"],
  ["queueItemsMax", "queue_items_max", "gauge"],
  ["queueBytesMax", "queue_bytes_max", "gauge"],
  ["errorCount", "errors_total", "counter"],
  ["seqIncrsLocal", "seq_incrs_local_total", "counter"],
  ["seqIncrsRedis", "seq_incrs_redis_total", "counter"],
  ["lastSeqKvFallbackAt", "last_seq_kv_fallback_timestamp_seconds", "gauge"],
  ["replayed", "replayed_total", "counter"],
  ["replayMisses", "replay_misses_total", "counter"],
  ["published", "published_total", "counter"],
  ["received", "received_total", "counter"],
  ["busRejected", "bus_rejected_total", "counter"],
  ["accepting", "accepting", "gauge"]
]

const expected = (stats: Stats, key: keyof Stats): number => {
  const v = stats[key]
  if (typeof v === "boolean") return v ? 1 : 0
  return key === "lastSeqKvFallbackAt" ? v / 1000 : v
}

// ---------------------------------------------------------------------------
// prom-client
// ---------------------------------------------------------------------------

/** An SSEKify app with /sse, /send and a /metrics endpoint on its own registry. */
const setupProm = async (options?: { readonly labels?: Record<string, string> }) => {
  const sse = new SSEKify({ keepAliveMs: 0, autoFields: { timestamp: false }, serializer: (d) => String(d) })
  const registry = new Registry()
  const collector = registerPrometheus(sse, { registry, ...options })
  const server = await startServer(async (req, res) => {
    const url = new URL(req.url ?? "/", "http://x")
    if (url.pathname === "/metrics") {
      const text = await registry.metrics()
      res.writeHead(200, { "content-type": registry.contentType }).end(text)
      return
    }
    if (url.pathname === "/sse") {
      sse.registerConnection(url.searchParams.get("u") ?? "guest", res, {
        rooms: ["lobby"],
        dropPolicy: "oldest",
        maxQueueItems: 5
      })
      return
    }
    res.writeHead(404).end()
  })
  cleanup.push(() => server.close(), () => sse.shutdown({ announce: false, graceMs: 0 }), () => collector.unregister())
  const open = async (user: string, headers?: Record<string, string>) => {
    const c = await connect(`${server.url}/sse?u=${user}`, headers ? { headers } : undefined)
    cleanup.push(() => c.close())
    await c.waitFor((x) => x.text().includes("retry:"))
    return c
  }
  const scrape = async () => {
    const res = await request(`${server.url}/metrics`)
    expect(res.status).toBe(200)
    expect(res.headers["content-type"]).toContain("text/plain")
    return parseExposition(res.body)
  }
  return { collector, open, registry, scrape, server, sse }
}

describe("ssekify/prometheus", () => {
  it("exposes every stats() field, with values equal to stats() after real deliveries", async () => {
    const { collector, open, scrape, sse } = await setupProm()
    const a = await open("alice")
    const b = await open("bob")
    expect(sse.sendToUser("alice", "one", { id: "1" })).toBe(1)
    expect(sse.sendToRoom("lobby", "two")).toBe(2)
    expect(sse.sendToAll("three")).toBe(2)
    await sse.publish("four")
    sse.sendToUser("", "bad") // an InvalidInput: errorCount
    expect(sse.sendToUser("alice", "five", { id: "2" })).toBe(1)
    await a.waitFor((c) => c.messages().length === 5)
    await b.waitFor((c) => c.messages().length === 3)
    // reconnects: after id 1 (replays id 2), and with an unknown id (a miss)
    const replay = await open("alice", { "Last-Event-ID": "1" })
    await replay.waitFor((c) => c.messages().length === 1)
    await open("alice", { "Last-Event-ID": "unknown" })

    const stats = sse.stats()
    expect(stats).toMatchObject({ connections: 4, users: 2, rooms: 1, sent: 9, errorCount: 1, replayed: 1, replayMisses: 1, published: 0 })
    const e = await scrape()
    for (const [key, name, type] of STAT_NAMES) {
      expect([name, value(e, `ssekify_${name}`)]).toEqual([name, expected(stats, key)])
      expect(e.types.get(`ssekify_${name}`)).toBe(type)
      expect(e.help.get(`ssekify_${name}`)?.length).toBeGreaterThan(10)
    }
    // queues: nothing waits, nobody blocked; two connections at depth 0
    expect(value(e, "ssekify_queued_frames")).toBe(0)
    expect(value(e, "ssekify_blocked_connections")).toBe(0)
    expect(value(e, "ssekify_connections_by_queue_depth", { le: "0" })).toBe(4)
    expect(value(e, "ssekify_connections_by_queue_depth", { le: "+Inf" })).toBe(4)
    // latency: the sends left in 3 flush ticks at least (sendToUser..sendToAll in one)
    const count = value(e, "ssekify_delivery_latency_seconds_count")
    expect(count).toBeGreaterThanOrEqual(1)
    expect(value(e, "ssekify_delivery_latency_seconds_bucket", { le: "+Inf" })).toBe(count)
    expect(value(e, "ssekify_delivery_latency_seconds_sum")).toBeGreaterThan(0)
    expect(e.types.get("ssekify_delivery_latency_seconds")).toBe("histogram")
    expect(collector.names).toContain("ssekify_delivery_latency_seconds")

    // counters follow: more deliveries, a second scrape
    for (let i = 0; i < 10; i++) sse.sendToAll(`n${i}`)
    await a.waitFor((c) => c.messages().length === 15)
    const e2 = await scrape()
    expect(value(e2, "ssekify_sent_total")).toBe(sse.stats().sent)
    expect(value(e2, "ssekify_sent_total")).toBe(stats.sent + 40)
  })

  it("shows a blocked client's queue, drops, and the latency of its drained queue", async () => {
    const { open, scrape, sse } = await setupProm()
    const healthy = await open("healthy")
    const slow = await open("slow")
    slow.response.pause()
    const big = "x".repeat(16 * 1024) // 5 of them fit maxQueueBytes (256 KiB): maxQueueItems binds
    let n = 0
    // fill the socket buffers until the slow connection blocks and its queue overflows
    while (sse.stats().droppedOldest < 3) {
      if (n++ > 4_000) throw new Error("no backpressure")
      sse.sendToAll(big)
      await new Promise((r) => setImmediate(r))
    }
    const e = await scrape()
    const stats = sse.stats()
    expect(value(e, "ssekify_blocked_connections")).toBe(1)
    expect(value(e, "ssekify_queued_frames")).toBe(5)
    expect(value(e, "ssekify_queue_depth_max")).toBe(5)
    expect(value(e, "ssekify_queued_bytes")).toBe(5 * Buffer.byteLength(`data: ${big}\n\n`))
    expect(value(e, "ssekify_connections_by_queue_depth", { le: "1" })).toBe(1) // healthy
    expect(value(e, "ssekify_connections_by_queue_depth", { le: "5" })).toBe(2)
    expect(value(e, "ssekify_dropped_oldest_total")).toBe(stats.droppedOldest)
    expect(value(e, "ssekify_queue_items_max")).toBe(5)
    const slowBefore = value(e, "ssekify_delivery_latency_seconds_bucket", { le: "0.25" })
    const countBefore = value(e, "ssekify_delivery_latency_seconds_count")

    // the queue waits at least 300 ms, then drains: one sample above 0.25 s
    const pausedAt = Date.now()
    await until(() => Date.now() - pausedAt >= 300, 2_000, "300 ms")
    slow.response.resume()
    await until(() => healthy.messages().length === n, 10_000, "healthy got all")
    await slow.waitFor((c) => c.messages().length === n - sse.stats().droppedOldest, 10_000, "slow drained")
    const e2 = await scrape()
    expect(value(e2, "ssekify_blocked_connections")).toBe(0)
    expect(value(e2, "ssekify_queued_frames")).toBe(0)
    expect(value(e2, "ssekify_delivery_latency_seconds_count")).toBeGreaterThan(countBefore)
    const above = value(e2, "ssekify_delivery_latency_seconds_count") - value(e2, "ssekify_delivery_latency_seconds_bucket", { le: "0.25" })
    expect(above).toBeGreaterThanOrEqual(1)
    expect(value(e2, "ssekify_delivery_latency_seconds_bucket", { le: "0.25" })).toBeGreaterThanOrEqual(slowBefore)
  })

  it("labels let two instances share a registry; unregister removes the metrics", async () => {
    const registry = new Registry()
    const one = new SSEKify({ keepAliveMs: 0 })
    const two = new SSEKify({ keepAliveMs: 0 })
    cleanup.push(() => one.shutdown({ graceMs: 0, announce: false }), () => two.shutdown({ graceMs: 0, announce: false }))
    const c1 = registerPrometheus(one, { registry, labels: { instance: "one" } })
    expect(() => registerPrometheus(two, { registry })).toThrow(/already been registered/)
    // the failed registration left nothing behind, and the first one still works
    expect(registry.getMetricsAsArray().length).toBe(c1.names.length)
    c1.unregister()
    const a = registerPrometheus(one, { registry, prefix: "a_", labels: { instance: "one" } })
    const b = registerPrometheus(two, { registry, prefix: "b_", labels: { instance: "two" } })
    one.stopAccepting()
    const e = parseExposition(await registry.metrics())
    expect(value(e, "a_accepting", { instance: "one" })).toBe(0)
    expect(value(e, "b_accepting", { instance: "two" })).toBe(1)
    a.unregister()
    b.unregister()
    expect(await registry.metrics()).toBe("\n")
  })

  it("works on anything with stats() (the stats metrics only)", async () => {
    const registry = new Registry()
    const fake = { stats: (): Stats => ({ ...zeroStats, connections: 7, sent: 42, accepting: true }) }
    const collector = registerPrometheus(fake, { registry })
    cleanup.push(() => collector.unregister())
    const e = parseExposition(await registry.metrics())
    expect(value(e, "ssekify_connections")).toBe(7)
    expect(value(e, "ssekify_sent_total")).toBe(42)
    expect(e.samples.some((s) => s.name.startsWith("ssekify_queued"))).toBe(false)
  })
})

const zeroStats: Stats = {
  connections: 0,
  users: 0,
  rooms: 0,
  sent: 0,
  droppedOldest: 0,
  droppedNewest: 0,
  disconnectedByBackpressure: 0,
  queueItemsMax: 0,
  queueBytesMax: 0,
  errorCount: 0,
  seqIncrsLocal: 0,
  seqIncrsRedis: 0,
  lastSeqKvFallbackAt: 0,
  replayed: 0,
  replayMisses: 0,
  published: 0,
  received: 0,
  busRejected: 0,
  accepting: true
}

// ---------------------------------------------------------------------------
// Effect Metrics
// ---------------------------------------------------------------------------

describeEffect("Metrics (Effect)", () => {
  itEffect.scoped("samples stats() and the queues every interval (TestClock) and feeds the latency histogram", () =>
    Effect.gen(function*() {
      const tags = { instance: `test-${Math.random().toString(36).slice(2)}` }
      const tagged = <T, I, O>(m: Metric.Metric<T, I, O>) => Metric.tagged(m, "instance", tags.instance)
      const app = HttpRouter.empty.pipe(HttpRouter.get("/sse", HttpSse.handler({ rooms: ["r"] })))
      const layer = Layer.mergeAll(HttpServer.serve(app), Metrics.layer({ interval: "5 seconds", tags })).pipe(
        Layer.provideMerge(
          SseKify.layer({ keepAliveMs: 0, autoFields: { timestamp: false }, shutdown: { announce: false, graceMs: 0 } }).pipe(
            Layer.provide(Transport.layerNone)
          )
        ),
        Layer.provideMerge(NodeHttpServer.layer(http.createServer, { port: 0, host: "127.0.0.1" }))
      )
      const context = yield* Layer.build(layer)
      const sse = Context.get(context, SseKify.SseKify)
      const address = Context.get(context, HttpServer.HttpServer).address
      const url = address._tag === "TcpAddress" ? `http://127.0.0.1:${address.port}` : ""

      // sampled once at start: no connections
      expectEffect((yield* Metric.value(tagged(Metrics.connections))).value).toBe(0)
      const clients = yield* Effect.acquireRelease(
        Effect.promise(() => Promise.all([connect(`${url}/sse?userId=a`), connect(`${url}/sse?userId=b`)])),
        (cs) => Effect.sync(() => cs.forEach((c) => c.close()))
      )
      yield* Effect.promise(() => Promise.all(clients.map((c) => c.waitFor((x) => x.text().includes("retry:")))))
      yield* Effect.promise(() => until(() => Effect.runSync(sse.stats).connections === 2, 5_000))
      yield* sse.sendToUser("a", "x")
      yield* sse.sendToRoom("r", "y")
      yield* Effect.flip(sse.sendToAll(1n))
      yield* Effect.promise(() => clients[0]!.waitFor((c) => c.messages().length === 2))
      // not sampled yet
      expectEffect((yield* Metric.value(tagged(Metrics.connections))).value).toBe(0)
      yield* TestClock.adjust("5 seconds")
      const stats = yield* sse.stats
      expectEffect((yield* Metric.value(tagged(Metrics.connections))).value).toBe(2)
      expectEffect((yield* Metric.value(tagged(Metrics.users))).value).toBe(2)
      expectEffect((yield* Metric.value(tagged(Metrics.rooms))).value).toBe(1)
      expectEffect((yield* Metric.value(tagged(Metrics.sent))).count).toBe(stats.sent)
      expectEffect(stats.sent).toBe(3)
      expectEffect((yield* Metric.value(tagged(Metrics.errors))).count).toBe(1)
      expectEffect((yield* Metric.value(tagged(Metrics.accepting))).value).toBe(1)
      expectEffect((yield* Metric.value(tagged(Metrics.queuedFrames))).value).toBe(0)
      expectEffect((yield* Metric.value(Metric.tagged(tagged(Metrics.connectionsByQueueDepth), "le", "0"))).value).toBe(2)
      expectEffect((yield* Metric.value(Metric.tagged(tagged(Metrics.connectionsByQueueDepth), "le", "+Inf"))).value).toBe(2)
      const latency = yield* Metric.value(tagged(Metrics.deliveryLatency))
      expectEffect(latency.count).toBeGreaterThanOrEqual(1)
      expectEffect(latency.sum).toBeGreaterThan(0)

      // counters add deltas: more sends, next interval
      for (let i = 0; i < 5; i++) yield* sse.sendToAll(i)
      yield* sse.stopAccepting
      yield* TestClock.adjust("5 seconds")
      expectEffect((yield* Metric.value(tagged(Metrics.sent))).count).toBe(stats.sent + 10)
      expectEffect((yield* Metric.value(tagged(Metrics.accepting))).value).toBe(0)
    }))

  itEffect.scoped("Metrics.make samples on demand", () =>
    Effect.gen(function*() {
      const tags = { instance: `make-${Math.random().toString(36).slice(2)}` }
      const sse = yield* SseKify.SseKify
      const { sample } = yield* Metrics.make({ tags })
      yield* sse.stopAccepting
      expectEffect((yield* Metric.value(Metric.tagged(Metrics.accepting, "instance", tags.instance))).value).toBe(1)
      yield* sample
      expectEffect((yield* Metric.value(Metric.tagged(Metrics.accepting, "instance", tags.instance))).value).toBe(0)
    }).pipe(Effect.provide(SseKify.layer({ shutdown: { announce: false, graceMs: 0 } }).pipe(Layer.provide(Transport.layerNone)))))
})
