/**
 * Scenarios A–G of issue 6 (H, the fleet of issue 16, is in ./fleet.ts). Each scenario declares its cases (what it reports)
 * and runs one repeat for one system, returning one result per case.
 */
import type { ForeignReport } from "./lib/cpuwatch.js"
import { foreign, snapshot } from "./lib/cpuwatch.js"
import { type FleetParams, H, ROUTED_UNAVAILABLE, routedUnavailable } from "./fleet.js"
import type { RedisClusterServer, RedisServer } from "./lib/redis.js"
import { haveRedisServer, startRedis, subscriptions } from "./lib/redis.js"
import { hrMs, sleep } from "./lib/stats.js"
import {
  CLIENT_CORE,
  type ChildEntry,
  type ClientPool,
  type Measured,
  type Metrics,
  pacedThroughput,
  rateLatency,
  Session,
  settleFrames,
  startServer,
  windowed
} from "./harness.js"
import type { DropPolicy, SystemConfig, SystemDef } from "./systems/types.js"
import type { CaseReport } from "./report.js"

export type Unit = "rate" | "bytes" | "us" | "ms" | "pct" | "count" | "ratio"

export interface MetricDef {
  readonly key: string
  readonly label: string
  readonly unit: Unit
  /** what is better; `info` metrics get no ratio against raw */
  readonly better: "higher" | "lower" | "info"
  /** must be a positive number in every report (checked by the quick test) */
  readonly primary?: boolean
}

export interface CaseDef {
  readonly id: string
  readonly scenario: string
  readonly title: string
  readonly metrics: ReadonlyArray<MetricDef>
  /** reported only for systems with `SystemDef.routing` (E.routed, H) */
  readonly routingOnly?: boolean
}

export interface Params {
  readonly repeats: number
  readonly payloadBytes: number
  /** messages sent (paced, unmeasured) after opening, so that every system is measured JIT-warm */
  readonly warmup: number
  readonly A: { readonly conns: number }
  readonly B: { readonly conns: number; readonly messages: number; readonly batch: number }
  readonly C: { readonly conns: number; readonly rates: ReadonlyArray<number>; readonly seconds: number }
  readonly D: { readonly sizes: ReadonlyArray<number>; readonly deliveries: number; readonly minMessages: number }
  readonly E: { readonly conns: number; readonly messages: number; readonly window: number }
  readonly F: {
    readonly conns: number
    readonly messages: number
    readonly stallEvery: number
    readonly big: { readonly conns: number; readonly messages: number; readonly payloadBytes: number }
  }
  readonly G: { readonly conns: number; readonly messages: number; readonly policies: ReadonlyArray<DropPolicy> }
  readonly H: FleetParams
}

export const FULL: Params = {
  repeats: 3,
  payloadBytes: 100,
  warmup: 200,
  A: { conns: 5000 },
  B: { conns: 1000, messages: 2000, batch: 50 },
  C: { conns: 1000, rates: [20, 100], seconds: 10 },
  D: { sizes: [1000, 5000, 10000], deliveries: 2_000_000, minMessages: 200 },
  E: { conns: 500, messages: 2000, window: 50 },
  F: { conns: 1000, messages: 2000, stallEvery: 10, big: { conns: 200, messages: 2000, payloadBytes: 4096 } },
  G: { conns: 1000, messages: 2000, policies: ["oldest", "newest", "disconnect"] },
  H: { instances: 4, usersPerInstance: 250, messages: 20_000, window: 200 }
}

export const QUICK: Params = {
  repeats: 1,
  payloadBytes: 100,
  warmup: 50,
  A: { conns: 400 },
  B: { conns: 200, messages: 200, batch: 50 },
  C: { conns: 200, rates: [20, 100], seconds: 0.5 },
  D: { sizes: [250, 1000], deliveries: 50_000, minMessages: 50 },
  E: { conns: 100, messages: 200, window: 50 },
  F: { conns: 200, messages: 200, stallEvery: 10, big: { conns: 50, messages: 100, payloadBytes: 4096 } },
  G: { conns: 50, messages: 2000, policies: ["oldest", "newest", "disconnect"] },
  H: { instances: 4, usersPerInstance: 50, messages: 400, window: 100 }
}

export interface Ctx {
  readonly p: Params
  readonly entry: ChildEntry
  readonly clients: ClientPool
  readonly pin: boolean
  readonly baseCfg: SystemConfig
  readonly defs: Readonly<Record<string, SystemDef>>
  redis: RedisServer | undefined
  /** scenario H: the bench's 3-master Redis Cluster, or why there is none */
  cluster: RedisClusterServer | string | undefined
}

export interface RunOut {
  readonly caseId: string
  readonly metrics: Metrics
  readonly foreign: ForeignReport | undefined
  readonly notes: ReadonlyArray<string>
  /** why this case could not be measured here (not an error: e.g. "routed mode not available in this build") */
  readonly unavailable?: string
}

export interface Scenario {
  readonly letter: string
  /** a one-word name (`--only` takes it as well as the letter) */
  readonly title: string
  cases(p: Params): ReadonlyArray<CaseDef>
  /** the systems it runs for (default: every system) */
  appliesTo?(def: SystemDef): boolean
  /** a table of its own, printed after the common one */
  summary?(reports: Record<string, CaseReport>, systems: ReadonlyArray<string>): string
  /** why it cannot run here (e.g. no redis-server), or undefined */
  unavailable?(ctx: Ctx): string | undefined
  before?(ctx: Ctx): Promise<void>
  after?(ctx: Ctx): Promise<void>
  run(ctx: Ctx, system: string, repeat: number): Promise<ReadonlyArray<RunOut>>
}

const k = (n: number): string => (n >= 1000 && n % 1000 === 0 ? `${n / 1000}k` : String(n))

const out = (caseId: string, m: Measured): RunOut => ({ caseId, metrics: m.metrics, foreign: m.foreign, notes: m.notes })

async function withSession<T>(
  ctx: Ctx,
  system: string,
  cfg: Partial<SystemConfig>,
  f: (s: Session) => Promise<T>
): Promise<T> {
  const debug = process.env["BENCH_DEBUG"] !== undefined
  const t0 = hrMs()
  const s = await Session.start(ctx.entry, system, { ...ctx.baseCfg, ...cfg }, ctx.clients, ctx.pin)
  const t1 = hrMs()
  try {
    return await f(s)
  } finally {
    const t2 = hrMs()
    await s.close()
    if (debug) {
      const t3 = hrMs()
      process.stderr.write(`    [${system}] start ${(t1 - t0).toFixed(0)} ms, run ${(t2 - t1).toFixed(0)} ms, close ${(t3 - t2).toFixed(0)} ms\n`)
    }
  }
}

/**
 * Memory per idle connection, server side, after GC: open half, measure, open the
 * other half, measure. The per-connection figures are the slope over the second
 * half (the marginal cost, free of whatever the heap or allocator had spare at
 * start); `*All` divide the whole growth by all connections.
 */
async function idle(s: Session, n: number): Promise<Measured> {
  const half = Math.floor(n / 2)
  const second = n - half
  const m0 = await s.rpc.call("mem", { gc: true })
  const snap0 = snapshot()
  const a = await s.open(half)
  await sleep(100)
  const m1 = await s.rpc.call("mem", { gc: true })
  const b = await s.open(second)
  await sleep(100)
  const m2 = await s.rpc.call("mem", { gc: true })
  const snap1 = snapshot()
  if (process.env["BENCH_DEBUG"] !== undefined) {
    const mb = (m: { rss: number; heapUsed: number; heapTotal: number; external: number }): string =>
      `rss ${(m.rss / 1048576).toFixed(1)} heapUsed ${(m.heapUsed / 1048576).toFixed(1)} heapTotal ${(m.heapTotal / 1048576).toFixed(1)} ext ${(m.external / 1048576).toFixed(1)}`
    process.stderr.write(`    mem0 ${mb(m0)}\n    mem1 ${mb(m1)}\n    mem2 ${mb(m2)}\n`)
  }
  return {
    metrics: {
      rssPerConn: (m2.rss - m1.rss) / second,
      heapPerConn: (m2.heapUsed - m1.heapUsed) / second,
      externalPerConn: (m2.external - m1.external) / second,
      rssPerConnAll: (m2.rss - m0.rss) / n,
      heapPerConnAll: (m2.heapUsed - m0.heapUsed) / n,
      openMs: a.ms + b.ms
    },
    foreign: foreign(snap0, snap1),
    notes: []
  }
}

/** Unmeasured paced broadcasts: JIT-warm the server (and clients) before measuring. */
async function warm(ctx: Ctx, s: Session, connections: number, payloadBytes = ctx.p.payloadBytes): Promise<void> {
  await pacedThroughput(s, {
    mode: "all",
    messages: ctx.p.warmup,
    batch: ctx.p.B.batch,
    payloadBytes,
    users: 0,
    connections
  })
}

const RATE: MetricDef = { key: "deliveriesPerSec", label: "deliveries/s", unit: "rate", better: "higher", primary: true }
const CPU_PER: MetricDef = { key: "cpuUsPerDelivery", label: "cpu µs/deliv", unit: "us", better: "lower", primary: true }
const SRV_CPU: MetricDef = { key: "serverCpuPct", label: "server cpu", unit: "pct", better: "info" }
const CLI_CPU: MetricDef = { key: "clientCpuPct", label: "client cpu", unit: "pct", better: "info" }
const BYTES_PER: MetricDef = { key: "bytesPerDelivery", label: "wire B/deliv", unit: "count", better: "info" }
const RSS_PER: MetricDef = { key: "rssPerConn", label: "RSS/conn", unit: "bytes", better: "lower", primary: true }
const HEAP_PER: MetricDef = { key: "heapPerConn", label: "heap/conn", unit: "bytes", better: "lower", primary: true }
const P50: MetricDef = { key: "p50Ms", label: "p50", unit: "ms", better: "lower", primary: true }
const P99: MetricDef = { key: "p99Ms", label: "p99", unit: "ms", better: "lower", primary: true }
const MAX: MetricDef = { key: "maxMs", label: "max", unit: "ms", better: "lower" }

// ---------------------------------------------------------------- A

const A: Scenario = {
  letter: "A",
  title: "idle cost",
  cases: (p) => [
    {
      id: "A",
      scenario: "A",
      title: `A. idle cost: ${p.A.conns} idle connections, server memory per connection after GC (slope over the 2nd half; "all" = total growth / all)`,
      metrics: [
        RSS_PER,
        HEAP_PER,
        { key: "externalPerConn", label: "external/conn", unit: "bytes", better: "info" },
        { key: "rssPerConnAll", label: "RSS/conn all", unit: "bytes", better: "lower" },
        { key: "heapPerConnAll", label: "heap/conn all", unit: "bytes", better: "lower" },
        { key: "openMs", label: "open all", unit: "ms", better: "info" }
      ]
    }
  ],
  run: (ctx, system) => withSession(ctx, system, {}, async (s) => [out("A", await idle(s, ctx.p.A.conns))])
}

// ---------------------------------------------------------------- B

const B_MODES = [
  { id: "B.broadcast", mode: "all", what: "sendToAll" },
  { id: "B.room", mode: "room", what: "sendToRoom, one room holding all" },
  { id: "B.users", mode: "users", what: "sendToUser to each single-connection user" }
] as const

const B: Scenario = {
  letter: "B",
  title: "throughput",
  cases: (p) =>
    B_MODES.map((m) => ({
      id: m.id,
      scenario: "B",
      title: `${m.id}: ${p.B.conns} connections × ${p.B.messages} messages of ~${p.payloadBytes} B (${m.what}), batches of ${p.B.batch}, drain-waited`,
      metrics: [RATE, CPU_PER, SRV_CPU, CLI_CPU, BYTES_PER]
    })),
  run: (ctx, system) =>
    withSession(ctx, system, {}, async (s) => {
      const { conns, messages, batch } = ctx.p.B
      await s.open(conns)
      await warm(ctx, s, conns)
      const res: RunOut[] = []
      for (const m of B_MODES) {
        const r = await pacedThroughput(s, {
          mode: m.mode,
          messages,
          batch,
          payloadBytes: ctx.p.payloadBytes,
          users: conns,
          connections: conns
        })
        res.push(out(m.id, r))
      }
      return res
    })
}

// ---------------------------------------------------------------- C

const C: Scenario = {
  letter: "C",
  title: "latency",
  cases: (p) =>
    p.C.rates.map((rate) => ({
      id: `C.${rate}`,
      scenario: "C",
      title: `C.${rate}: latency, ${p.C.conns} connections, ${rate} broadcasts/s for ${p.C.seconds} s (send → parsed at the client)`,
      metrics: [P50, P99, MAX, { key: "receivedPct", label: "received", unit: "pct", better: "info" }, SRV_CPU, CLI_CPU]
    })),
  run: (ctx, system) =>
    withSession(ctx, system, {}, async (s) => {
      const { conns, rates, seconds } = ctx.p.C
      await s.open(conns)
      await warm(ctx, s, conns)
      const res: RunOut[] = []
      for (const rate of rates) {
        const r = await rateLatency(s, {
          rate,
          messages: Math.round(rate * seconds),
          payloadBytes: ctx.p.payloadBytes,
          connections: conns
        })
        res.push(out(`C.${rate}`, r))
      }
      return res
    })
}

// ---------------------------------------------------------------- D

const dMessages = (p: Params, size: number): number => Math.max(p.D.minMessages, Math.round(p.D.deliveries / size))

const D: Scenario = {
  letter: "D",
  title: "scale",
  cases: (p) =>
    p.D.sizes.map((size, i) => ({
      id: `D.${k(size)}`,
      scenario: "D",
      title:
        `D.${k(size)}: scale, ${size} connections: idle memory, then ${dMessages(p, size)} broadcasts (batches of ${p.B.batch})` +
        (i > 0 ? `; "vs ${k(p.D.sizes[0] as number)}" = same system, same repeat` : ""),
      metrics: [
        RSS_PER,
        HEAP_PER,
        RATE,
        CPU_PER,
        ...(i > 0
          ? [
              { key: "rateVsFirst", label: `rate vs ${k(p.D.sizes[0] as number)}`, unit: "ratio", better: "info" } as const,
              { key: "heapVsFirst", label: `heap vs ${k(p.D.sizes[0] as number)}`, unit: "ratio", better: "info" } as const
            ]
          : []),
        CLI_CPU
      ]
    })),
  run: async (ctx, system) => {
    const res: RunOut[] = []
    let first: Metrics | undefined
    for (const size of ctx.p.D.sizes) {
      const r = await withSession(ctx, system, {}, async (s) => {
        const mem = await idle(s, size)
        await warm(ctx, s, size)
        const thr = await pacedThroughput(s, {
          mode: "all",
          messages: dMessages(ctx.p, size),
          batch: ctx.p.B.batch,
          payloadBytes: ctx.p.payloadBytes,
          users: 0,
          connections: size
        })
        const metrics: Metrics = { ...mem.metrics, ...thr.metrics }
        if (first === undefined) first = metrics
        else {
          metrics["rateVsFirst"] = (metrics["deliveriesPerSec"] as number) / (first["deliveriesPerSec"] as number)
          metrics["heapVsFirst"] = (metrics["heapPerConn"] as number) / (first["heapPerConn"] as number)
        }
        return { caseId: `D.${k(size)}`, metrics, foreign: thr.foreign, notes: [...mem.notes, ...thr.notes] }
      })
      res.push(r)
    }
    return res
  }
}

// ---------------------------------------------------------------- E

const E_REMOTE_METRICS: ReadonlyArray<MetricDef> = [
  RATE,
  P50,
  P99,
  MAX,
  { ...CPU_PER, primary: false },
  { key: "rateVsLocal", label: "rate vs local", unit: "ratio", better: "info" },
  { key: "p99VsLocal", label: "p99 vs local", unit: "ratio", better: "info" }
]

/**
 * One E session: the main instance (connections) and a publisher on the bench's Redis,
 * `routing` on both; warm-up, then the local broadcasts and the published ones. The
 * remote run carries its ratios against the local one. `undefined` when routing was
 * asked for and the build has no routed mode.
 */
async function crossInstance(
  ctx: Ctx,
  system: string,
  repeat: number,
  routing: "channel" | "user"
): Promise<{ local: Measured; remote: Measured } | undefined> {
  const redis = ctx.redis
  if (redis === undefined) throw new Error("no redis-server")
  const channel = `bench:${system}:${repeat}:${routing}:${Date.now()}`
  const cfg: Partial<SystemConfig> = { redisUrl: redis.url, channel, role: "main", routing }
  return withSession(ctx, system, cfg, async (s) => {
    if (routing === "user" && !s.server.routed) return undefined
    const deadline = hrMs() + 10_000
    while ((await subscriptions(redis.port)) < 1) {
      if (hrMs() > deadline) throw new Error("the main instance never subscribed on Redis")
      await sleep(25)
    }
    const pub = await startServer(ctx.entry, system, { ...ctx.baseCfg, ...cfg, role: "publisher" }, ctx.pin ? CLIENT_CORE : undefined)
    try {
      if (routing === "user" && !pub.routed) return undefined
      const { conns, messages, window } = ctx.p.E
      await s.open(conns)
      const o = { messages, window, payloadBytes: ctx.p.payloadBytes, connections: conns }
      const w = { ...o, messages: ctx.p.warmup }
      await windowed(s, s.rpc, "sendWindow", w)
      await windowed(s, pub.rpc, "publishWindow", w)
      const local = await windowed(s, s.rpc, "sendWindow", o)
      const remote = await windowed(s, pub.rpc, "publishWindow", o)
      remote.metrics["rateVsLocal"] = (remote.metrics["deliveriesPerSec"] as number) / (local.metrics["deliveriesPerSec"] as number)
      remote.metrics["p99VsLocal"] = (remote.metrics["p99Ms"] as number) / (local.metrics["p99Ms"] as number)
      return { local, remote }
    } finally {
      await pub.close()
    }
  })
}

const E: Scenario = {
  letter: "E",
  title: "cross-instance",
  cases: (p) => [
    {
      id: "E.local",
      scenario: "E",
      title: `E.local: ${p.E.conns} connections, ${p.E.messages} local broadcasts in windows of ${p.E.window} (wait for every client per window)`,
      metrics: [RATE, P50, P99, MAX, { ...CPU_PER, primary: false }, CLI_CPU]
    },
    {
      id: "E.redis",
      scenario: "E",
      title: `E.redis: the same ${p.E.messages} messages published on a 2nd instance, through a private redis-server, to the ${p.E.conns} connections`,
      metrics: E_REMOTE_METRICS
    },
    {
      id: "E.routed",
      scenario: "E",
      title:
        `E.routed: as E.redis with routing: 'user' on both instances (issue 16; broadcasts stay on the shared channel); ` +
        `"vs local" = ÷ a local run on the same instance (its figures: localDeliveriesPerSec, localP99Ms in the JSON)`,
      metrics: E_REMOTE_METRICS,
      routingOnly: true
    }
  ],
  before: async (ctx) => {
    if (haveRedisServer()) ctx.redis = await startRedis(ctx.pin ? CLIENT_CORE : undefined)
  },
  after: async (ctx) => {
    await ctx.redis?.stop()
    ctx.redis = undefined
  },
  unavailable: (ctx) => (ctx.redis === undefined ? "redis-server is not on the PATH" : undefined),
  run: async (ctx, system, repeat) => {
    const single = await crossInstance(ctx, system, repeat, "channel")
    if (single === undefined) throw new Error("no result")
    const res = [out("E.local", single.local), out("E.redis", single.remote)]
    if (ctx.defs[system]?.routing !== true) return res
    const routed = routedUnavailable.has(system) ? undefined : await crossInstance(ctx, system, repeat, "user")
    if (routed === undefined) {
      routedUnavailable.add(system)
      res.push({ caseId: "E.routed", metrics: {}, foreign: undefined, notes: [], unavailable: ROUTED_UNAVAILABLE })
    } else {
      const m = routed.remote.metrics
      m["localDeliveriesPerSec"] = routed.local.metrics["deliveriesPerSec"] as number
      m["localP99Ms"] = routed.local.metrics["p99Ms"] as number
      res.push(out("E.routed", routed.remote))
    }
    return res
  }
}

// ---------------------------------------------------------------- F

const fCase = (id: string, title: string): CaseDef => ({
  id,
  scenario: "F",
  title,
  metrics: [
    { key: "baseRate", label: "rate, none stalled", unit: "rate", better: "higher", primary: true },
    { key: "healthyRate", label: "rate, healthy 90%", unit: "rate", better: "higher", primary: true },
    { key: "healthyVsBase", label: "healthy vs base", unit: "ratio", better: "info" },
    { key: "rssAfter", label: "RSS after", unit: "bytes", better: "lower", primary: true },
    { key: "rssGrowth", label: "RSS growth", unit: "bytes", better: "lower" },
    { key: "heapAfterGc", label: "heap after GC", unit: "bytes", better: "lower" },
    { key: "dropped", label: "dropped", unit: "count", better: "info" },
    { key: "stalledClosed", label: "stalled closed", unit: "count", better: "info" }
  ]
})

async function slowClients(
  ctx: Ctx,
  system: string,
  conns: number,
  messages: number,
  payloadBytes: number
): Promise<{ metrics: Metrics; foreign: ForeignReport; notes: string[] }> {
  return withSession(ctx, system, {}, async (s) => {
    const every = ctx.p.F.stallEvery
    await s.open(conns)
    await warm(ctx, s, conns, payloadBytes)
    const opts = { mode: "all" as const, messages, batch: ctx.p.B.batch, payloadBytes, users: 0, connections: conns }
    const base = await pacedThroughput(s, opts)
    const m0 = await s.rpc.call("mem", { gc: true })
    await ctx.clients.all("stall", { every })
    await s.rpc.call("exclude", { every })
    const stalled = await pacedThroughput(s, opts)
    const m1 = await s.rpc.call("mem", { gc: false })
    const m2 = await s.rpc.call("mem", { gc: true })
    const st = await s.rpc.call("stats", null)
    const sum = await ctx.clients.all("summary", null)
    const baseRate = base.metrics["deliveriesPerSec"] as number
    const healthyRate = stalled.metrics["deliveriesPerSec"] as number
    return {
      metrics: {
        baseRate,
        healthyRate,
        healthyVsBase: healthyRate / baseRate,
        rssAfter: m1.rss,
        rssGrowth: m1.rss - m0.rss,
        heapAfterGc: m2.heapUsed,
        maxRSS: m1.maxRSS,
        dropped: (st.system["droppedOldest"] ?? 0) + (st.system["droppedNewest"] ?? 0),
        disconnectedByBackpressure: st.system["disconnectedByBackpressure"] ?? 0,
        stalledClosed: sum.reduce((a, x) => a + x.closed, 0),
        clientCpuPct: stalled.metrics["clientCpuPct"] as number
      },
      foreign: stalled.foreign,
      notes: [...base.notes, ...stalled.notes]
    }
  })
}

const F: Scenario = {
  letter: "F",
  title: "slow clients",
  cases: (p) => [
    fCase(
      "F",
      `F: ${p.F.conns} connections × ${p.F.messages} broadcasts of ~${p.payloadBytes} B; then 1 in ${p.F.stallEvery} stops reading and the same runs again (healthy rate, server memory)`
    ),
    fCase(
      "F.big",
      `F.big: as F with ${p.F.big.conns} connections × ${p.F.big.messages} messages of ${p.F.big.payloadBytes} B, enough to fill a stalled socket's kernel buffers (~4 MB on loopback) and reach the library's queue`
    )
  ],
  run: async (ctx, system) => {
    const f = await slowClients(ctx, system, ctx.p.F.conns, ctx.p.F.messages, ctx.p.payloadBytes)
    const big = await slowClients(ctx, system, ctx.p.F.big.conns, ctx.p.F.big.messages, ctx.p.F.big.payloadBytes)
    return [
      { caseId: "F", ...f },
      { caseId: "F.big", ...big }
    ]
  }
}

// ---------------------------------------------------------------- G

const G: Scenario = {
  letter: "G",
  title: "unpaced burst",
  cases: (p) =>
    p.G.policies.map((policy) => ({
      id: `G.${policy}`,
      scenario: "G",
      title: `G.${policy}: ${p.G.messages} broadcasts in one synchronous loop to ${p.G.conns} connections, dropPolicy '${policy}' (systems without a queue buffer everything)`,
      metrics: [
        { key: "receivedMin", label: "got min", unit: "count", better: "info" },
        { key: "receivedMedian", label: "got median", unit: "count", better: "info", primary: true },
        { key: "receivedMax", label: "got max", unit: "count", better: "info" },
        { key: "deliveredPct", label: "delivered", unit: "pct", better: "info", primary: true },
        { key: "dropped", label: "dropped (stats)", unit: "count", better: "info" },
        { key: "disconnectedByBackpressure", label: "disconnected (stats)", unit: "count", better: "info" },
        { key: "clientsClosed", label: "clients closed", unit: "count", better: "info" },
        { key: "errorEvents", label: "error events", unit: "count", better: "info" },
        { key: "dropEvents", label: "drop events", unit: "count", better: "info" },
        { key: "silentLoss", label: "silent loss", unit: "count", better: "info" },
        { key: "burstMs", label: "loop", unit: "ms", better: "lower", primary: true },
        { key: "rssPeakGrowth", label: "peak RSS growth", unit: "bytes", better: "lower" }
      ]
    })),
  run: async (ctx, system) => {
    const res: RunOut[] = []
    const { conns, messages } = ctx.p.G
    const policyless = ctx.defs[system]?.hasDropPolicy === false
    for (const policy of ctx.p.G.policies) {
      const prev = res[0]
      if (policyless && prev !== undefined) {
        // no dropPolicy: every policy is the same run; report it under each case
        res.push({ ...prev, caseId: `G.${policy}`, notes: [...prev.notes, `same run as ${prev.caseId}: ${system} has no dropPolicy`] })
        continue
      }
      res.push(
        await withSession(ctx, system, { queue: { dropPolicy: policy } }, async (s) => {
          await s.open(conns)
          await warm(ctx, s, conns)
          await ctx.clients.all("reset", { latency: false })
          const m0 = await s.rpc.call("mem", { gc: true })
          const snap0 = snapshot()
          const burst = await s.rpc.call("burst", { messages, payloadBytes: ctx.p.payloadBytes }, 300_000)
          const q = await s.rpc.call("quiesce", { timeoutMs: 120_000 }, 130_000)
          const sum = await settleFrames(ctx.clients, 200, 60_000)
          const snap1 = snapshot()
          const m1 = await s.rpc.call("mem", { gc: false })
          const st = await s.rpc.call("stats", null)
          const expected = messages * conns
          const dropped = (st.system["droppedOldest"] ?? 0) + (st.system["droppedNewest"] ?? 0)
          const disc = st.system["disconnectedByBackpressure"] ?? 0
          const errorEvents = Object.values(st.events).reduce((a, b) => a + b, 0)
          const dropEvents = st.drops.events
          const lost = expected - sum.frames
          const notes: string[] = []
          if (q.buffered > 0) notes.push(`${q.buffered} responses still buffered after the quiesce wait`)
          if (Object.keys(st.events).length > 0) notes.push(`events: ${JSON.stringify(st.events)}`)
          const metrics: Metrics = {
            receivedMin: sum.minHealthy,
            receivedMedian: sum.medHealthy,
            receivedMax: sum.maxHealthy,
            deliveredPct: (sum.frames / expected) * 100,
            dropped,
            disconnectedByBackpressure: disc,
            clientsClosed: sum.closed,
            errorEvents,
            dropEvents,
            droppedInEvents: st.drops.frames,
            // frames lost without a trace in stats() or in an event
            silentLoss: lost > 0 && (dropped + disc === 0 || errorEvents + dropEvents === 0) ? 1 : 0,
            burstMs: burst.endAt - burst.startAt,
            drainMs: q.ms,
            rssPeakGrowth: m1.maxRSS - m0.rss
          }
          return { caseId: `G.${policy}`, metrics, foreign: foreign(snap0, snap1), notes }
        })
      )
    }
    return res
  }
}

export const SCENARIOS: ReadonlyArray<Scenario> = [A, B, C, D, E, F, G, H]
