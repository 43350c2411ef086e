/**
 * Scenario H, the fleet (issue 16): `instances` server processes × `usersPerInstance`
 * users each (one SSE connection per user, user `u<i>` on instance floor(i / users per
 * instance)), all on one bench redis-server, then on a 3-master Redis Cluster. A
 * separate publisher process (a bench server of role `publisher`, holding no
 * connection) sends per-user messages (`publish(data, userId)`) to uniformly random
 * users (`pickUser(n)`, the same sequence in every process) in windows; the driver
 * waits until the clients have every message of a window before the next.
 *
 * Modes side by side: `channel` (one shared channel, the default: every instance
 * receives every message) and `routed` (`routing: "user"`: each instance only the
 * messages of the users it holds). The baseline: the same connections on ONE instance,
 * `sendToUser` on its synchronous path, no bus (H.local). Server CPU is the sum of the
 * instances' `cpuUsage()` (the publisher's is reported apart, the clients' never
 * counted); bus messages received per instance are `stats().received`; the Redis side
 * is `total_net_output_bytes` of the node(s).
 */
import type { ForeignReport } from "./lib/cpuwatch.js"
import { foreign, readBytes, snapshot } from "./lib/cpuwatch.js"
import { arrayLength, haveRedisCli, haveRedisServer, netOutputBytes, numsub, startRedis, startRedisCluster } from "./lib/redis.js"
import { hrMs, pickUser, sleep } from "./lib/stats.js"
import {
  CLIENT_CORE,
  CONNS_PER_CLIENT,
  cpuMs,
  type ClientPool,
  mergeSummaries,
  SERVER_CORE,
  type ServerHandle,
  startServer,
  sumCpu,
  utilPct
} from "./harness.js"
import { fmt, type CaseReport } from "./report.js"
import type { CaseDef, Ctx, MetricDef, RunOut, Scenario } from "./scenarios.js"
import type { SystemConfig } from "./systems/types.js"

export interface FleetParams {
  readonly instances: number
  readonly usersPerInstance: number
  /** measured messages per mode (each to one user: one delivery) */
  readonly messages: number
  /** messages per window (the driver waits for all of them before the next) */
  readonly window: number
}

type BusKind = "redis" | "cluster"
type Mode = "channel" | "routed"

export const ROUTED_UNAVAILABLE = "routed mode not available in this build"

const BUS_CASES: ReadonlyArray<{ readonly id: string; readonly bus: BusKind; readonly mode: Mode }> = [
  { id: "H.channel", bus: "redis", mode: "channel" },
  { id: "H.routed", bus: "redis", mode: "routed" },
  { id: "H.cluster.channel", bus: "cluster", mode: "channel" },
  { id: "H.cluster.routed", bus: "cluster", mode: "routed" }
]

const RATE: MetricDef = { key: "deliveriesPerSec", label: "deliveries/s", unit: "rate", better: "higher", primary: true }
const P50: MetricDef = { key: "p50Ms", label: "p50", unit: "ms", better: "lower", primary: true }
const P99: MetricDef = { key: "p99Ms", label: "p99", unit: "ms", better: "lower", primary: true }
const CPU_PER: MetricDef = { key: "cpuUsPerDelivery", label: "srv cpu µs/deliv", unit: "us", better: "lower", primary: true }
const CLI_CPU: MetricDef = { key: "clientCpuPct", label: "client cpu", unit: "pct", better: "info" }

const busMetrics: ReadonlyArray<MetricDef> = [
  RATE,
  P50,
  P99,
  CPU_PER,
  { key: "cpuVsLocal", label: "cpu vs local", unit: "ratio", better: "info" },
  { key: "rateVsLocal", label: "rate vs local", unit: "ratio", better: "info" },
  { key: "receivedPerInstance", label: "recv/inst", unit: "count", better: "info" },
  { key: "receivedShare", label: "recv/inst ÷ msgs", unit: "ratio", better: "info" },
  { key: "readBytesPerInstancePerMsg", label: "read B/inst/msg", unit: "count", better: "info" },
  { key: "redisOutBytesPerMsg", label: "redis out B/msg", unit: "count", better: "info" },
  { key: "routedVsChannel", label: "recv routed ÷ channel", unit: "ratio", better: "info" },
  { key: "readRoutedVsChannel", label: "read routed ÷ channel", unit: "ratio", better: "info" },
  { key: "publisherCpuUsPerMsg", label: "pub cpu µs/msg", unit: "us", better: "info" },
  CLI_CPU
]

function fleetCases(p: FleetParamsOf): ReadonlyArray<CaseDef> {
  const { instances, usersPerInstance, messages, window } = p.H
  const users = instances * usersPerInstance
  const what = `${messages} per-user messages of ~${p.payloadBytes} B to uniformly random users, windows of ${window}`
  return [
    {
      id: "H.local",
      scenario: "H",
      title: `H.local: fleet baseline, ${users} connections on ONE instance, no bus: ${what} (sendToUser, synchronous path)`,
      metrics: [RATE, P50, P99, CPU_PER, CLI_CPU],
      routingOnly: true
    },
    ...BUS_CASES.map((c) => ({
      id: c.id,
      scenario: "H",
      title:
        `${c.id}: ${instances} instances × ${usersPerInstance} users on ${c.bus === "redis" ? "one redis-server" : "a 3-master Redis Cluster"}, ` +
        `${c.mode === "channel" ? "single channel (default)" : "routing: 'user'"}; a publisher process: ${what}; "vs local" = ÷ H.local of the same repeat`,
      metrics: busMetrics,
      routingOnly: true
    }))
  ]
}

type FleetParamsOf = { readonly H: FleetParams; readonly payloadBytes: number; readonly warmup: number }

interface WindowedOut {
  readonly metrics: Record<string, number>
  readonly foreign: ForeignReport
}

/**
 * Messages start .. start+messages-1 from `sender` (`usersWindow`, `via`), in windows;
 * after each, wait (bounded) until the client processes have every message of it.
 * Server CPU is summed over `servers`.
 */
async function usersWindowed(
  clients: ClientPool,
  sender: ServerHandle,
  servers: ReadonlyArray<ServerHandle>,
  o: { start: number; messages: number; window: number; users: number; payloadBytes: number; via: "local" | "bus" }
): Promise<WindowedOut> {
  await clients.all("reset", { latency: true })
  const cum = new Array<number>(Math.ceil(o.users / CONNS_PER_CLIENT)).fill(0)
  const c0 = await clients.all("cpu", null)
  const s0 = await Promise.all(servers.map((s) => s.rpc.call("cpu", null)))
  const p0 = await sender.rpc.call("cpu", null)
  const snap0 = snapshot()
  let first = Number.NaN
  let last = Number.NaN
  let delivered = 0
  for (let from = 0; from < o.messages; from += o.window) {
    const count = Math.min(o.window, o.messages - from)
    for (let n = from; n < from + count; n++) {
      const j = Math.floor(pickUser(o.start + n, o.users) / CONNS_PER_CLIENT)
      cum[j] = (cum[j] ?? 0) + 1
    }
    await clients.each("armTotal", (j) => ({ total: cum[j] ?? 0 }))
    const r = await sender.rpc.call(
      "usersWindow",
      { from: o.start + from, count, payloadBytes: o.payloadBytes, users: o.users, via: o.via },
      30_000
    )
    if (Number.isNaN(first)) first = r.startAt
    delivered += r.delivered
    const waits = await clients.all("wait", { timeoutMs: 20_000 }, 25_000)
    const left = waits.reduce((a, w) => a + w.below, 0)
    if (left > 0) throw new Error(`window at ${from}: ${left} of its ${count} messages did not arrive within 20 s`)
    last = Math.max(...waits.map((w) => w.reachedAt))
  }
  const s1 = await Promise.all(servers.map((s) => s.rpc.call("cpu", null)))
  const p1 = await sender.rpc.call("cpu", null)
  const snap1 = snapshot()
  const c1 = await clients.all("cpu", null)
  const sum = mergeSummaries(await clients.all("summary", null))
  const wall = last - first
  const serverMs = sumCpu(s1) - sumCpu(s0)
  if (o.via === "local" && delivered !== o.messages) throw new Error(`local sendToUser delivered ${delivered} of ${o.messages}`)
  return {
    metrics: {
      deliveriesPerSec: sum.frames / (wall / 1000),
      p50Ms: sum.hist.quantile(0.5),
      p99Ms: sum.hist.quantile(0.99),
      maxMs: sum.hist.max,
      cpuUsPerDelivery: (serverMs * 1000) / Math.max(1, sum.frames),
      serverCpuPct: utilPct(serverMs, wall),
      publisherCpuUsPerMsg: ((cpuMs(p1) - cpuMs(p0)) * 1000) / o.messages,
      clientCpuPct: utilPct(sumCpu(c1) - sumCpu(c0), wall),
      frames: sum.frames,
      ms: wall
    },
    foreign: foreign(snap0, snap1)
  }
}

/** Open `count` connections (users from .. from+count-1) on `server`; wait until it counts them. */
async function openOn(clients: ClientPool, server: ServerHandle, from: number, count: number): Promise<void> {
  await clients.open(server.port, from, count, 30_000 + count * 5)
  const deadline = hrMs() + 10_000
  for (;;) {
    const { live } = await server.rpc.call("live", null)
    if (live >= count) return
    if (hrMs() > deadline) throw new Error(`an instance sees ${live} of ${count} connections`)
    await sleep(20)
  }
}

/** Wait (bounded) until Redis shows the instances' subscriptions: the shared channel's, and in routed mode one channel per user. */
async function waitSubscribed(ports: ReadonlyArray<number>, channel: string, instances: number, users: number, routed: boolean): Promise<void> {
  const deadline = hrMs() + 15_000
  let shared = 0
  let perUser = 0
  for (;;) {
    shared = 0
    perUser = 0
    for (const port of ports) {
      shared += await numsub(port, channel)
      if (routed) {
        const pattern = `${channel}:u:*`
        perUser += await arrayLength(port, ["PUBSUB", "CHANNELS", pattern])
        perUser += await arrayLength(port, ["PUBSUB", "SHARDCHANNELS", pattern])
      }
    }
    if (shared >= instances && (!routed || perUser >= users)) return
    if (hrMs() > deadline) {
      throw new Error(`Redis shows ${shared} of ${instances} subscribers of the shared channel` + (routed ? `, ${perUser} of ${users} user channels` : ""))
    }
    await sleep(50)
  }
}

async function redisOut(ports: ReadonlyArray<number>): Promise<number> {
  let n = 0
  for (const port of ports) n += await netOutputBytes(port)
  return n
}

async function closeAll(clients: ClientPool, servers: ReadonlyArray<ServerHandle>): Promise<void> {
  await clients.closeAll().catch(() => undefined)
  await Promise.all(servers.map((s) => s.close()))
}

/** H.local: every user on one instance, no bus. */
async function local(ctx: Ctx, system: string): Promise<RunOut> {
  const { instances, usersPerInstance, messages, window } = ctx.p.H
  const users = instances * usersPerInstance
  const server = await startServer(ctx.entry, system, { ...ctx.baseCfg, role: "main" }, ctx.pin ? SERVER_CORE : undefined)
  try {
    await openOn(ctx.clients, server, 0, users)
    const o = { window, users, payloadBytes: ctx.p.payloadBytes, via: "local" as const }
    await usersWindowed(ctx.clients, server, [server], { ...o, start: 0, messages: ctx.p.warmup })
    const r = await usersWindowed(ctx.clients, server, [server], { ...o, start: ctx.p.warmup, messages })
    return { caseId: "H.local", metrics: r.metrics, foreign: r.foreign, notes: [] }
  } finally {
    await closeAll(ctx.clients, [server])
  }
}

const debug = (what: string, t0: number): void => {
  if (process.env["BENCH_DEBUG"] !== undefined) process.stderr.write(`    [H] ${what} at ${(hrMs() - t0).toFixed(0)} ms\n`)
}

/** Systems whose build was found without the routed mode in this run (not asked again; E.routed uses it too). */
export const routedUnavailable = new Set<string>()

/** One bus case: the instances and the publisher on `bus`, in `mode`. */
async function onBus(ctx: Ctx, system: string, repeat: number, id: string, bus: BusKind, mode: Mode): Promise<RunOut> {
  const { instances, usersPerInstance, messages, window } = ctx.p.H
  const users = instances * usersPerInstance
  const unavailable = (why: string): RunOut => ({ caseId: id, metrics: {}, foreign: undefined, notes: [], unavailable: why })
  let where: Partial<SystemConfig>
  let ports: number[]
  if (bus === "redis") {
    if (ctx.redis === undefined) return unavailable("no redis-server")
    where = { redisUrl: ctx.redis.url }
    ports = [ctx.redis.port]
  } else {
    if (ctx.cluster === undefined || typeof ctx.cluster === "string") return unavailable(ctx.cluster ?? "no Redis Cluster")
    where = { redisCluster: ctx.cluster.startupNodes }
    ports = ctx.cluster.nodes.map((n) => n.port)
  }
  const channel = `bench:${system}:H:${repeat}:${bus}:${mode}:${Date.now()}`
  const cfg: SystemConfig = { ...ctx.baseCfg, ...where, channel, routing: mode === "routed" ? "user" : "channel", role: "main" }
  const servers: ServerHandle[] = []
  let pub: ServerHandle | undefined
  const t0 = hrMs()
  try {
    if (mode === "routed" && routedUnavailable.has(system)) return unavailable(ROUTED_UNAVAILABLE)
    // all at once (a start is mostly module loading); each is tracked as soon as it is up
    const started = await Promise.allSettled([
      ...Array.from({ length: instances }, () =>
        startServer(ctx.entry, system, cfg, ctx.pin ? SERVER_CORE : undefined, true).then((s) => (servers.push(s), s))
      ),
      startServer(ctx.entry, system, { ...cfg, role: "publisher" }, ctx.pin ? CLIENT_CORE : undefined, true).then((s) => (pub = s))
    ])
    const failed = started.find((r) => r.status === "rejected")
    if (failed !== undefined) throw (failed as PromiseRejectedResult).reason
    if (pub === undefined) throw new Error("no publisher")
    // the option did not take effect (no `routed` on the built transport): no fake numbers
    if (mode === "routed" && ![...servers, pub].every((s) => s.routed)) {
      routedUnavailable.add(system)
      return unavailable(ROUTED_UNAVAILABLE)
    }
    debug(`${id}: ${instances} instances and the publisher started`, t0)
    for (let k = 0; k < instances; k++) await openOn(ctx.clients, servers[k] as ServerHandle, k * usersPerInstance, usersPerInstance)
    await waitSubscribed(ports, channel, instances, users, mode === "routed")
    debug(`${id}: connections open and subscribed`, t0)
    const o = { window, users, payloadBytes: ctx.p.payloadBytes, via: "bus" as const }
    await usersWindowed(ctx.clients, pub, servers, { ...o, start: 0, messages: ctx.p.warmup })
    debug(`${id}: warm`, t0)
    const read0 = servers.map((s) => readBytes(s.pid))
    const recv0 = await Promise.all(servers.map(async (s) => (await s.rpc.call("stats", null)).system["received"] ?? Number.NaN))
    const out0 = await redisOut(ports)
    const r = await usersWindowed(ctx.clients, pub, servers, { ...o, start: ctx.p.warmup, messages })
    const out1 = await redisOut(ports)
    const read = servers.map((s, k) => readBytes(s.pid) - (read0[k] as number))
    const recv = (await Promise.all(servers.map(async (s) => (await s.rpc.call("stats", null)).system["received"] ?? Number.NaN))).map(
      (v, k) => v - (recv0[k] as number)
    )
    const mean = recv.reduce((a, b) => a + b, 0) / recv.length
    debug(`${id}: measured`, t0)
    const notes = [
      `bus messages received per instance (stats().received): ${recv.join(" / ")} of ${messages} published`,
      `bytes read per instance (/proc/<pid>/io rchar, the bus and the driver's few commands): ${read.join(" / ")}`
    ]
    return {
      caseId: id,
      metrics: {
        ...r.metrics,
        receivedPerInstance: mean,
        receivedMax: Math.max(...recv),
        receivedShare: mean / messages,
        readBytesPerInstancePerMsg: read.reduce((a, b) => a + b, 0) / read.length / messages,
        redisOutBytesPerMsg: (out1 - out0) / messages
      },
      foreign: r.foreign,
      notes
    }
  } finally {
    await closeAll(ctx.clients, pub === undefined ? servers : [...servers, pub])
    debug(`${id}: closed`, t0)
  }
}

const rows: ReadonlyArray<{ readonly id: string; readonly label: string }> = [
  { id: "H.local", label: "local, 1 instance, no bus" },
  { id: "H.channel", label: "redis, single channel" },
  { id: "H.routed", label: "redis, routed" },
  { id: "H.cluster.channel", label: "cluster, single channel" },
  { id: "H.cluster.routed", label: "cluster, routed" }
]

const summaryCols: ReadonlyArray<MetricDef> = [
  RATE,
  P50,
  P99,
  CPU_PER,
  { key: "cpuVsLocal", label: "cpu vs local", unit: "ratio", better: "info" },
  { key: "rateVsLocal", label: "rate vs local", unit: "ratio", better: "info" },
  { key: "receivedPerInstance", label: "recv/inst", unit: "count", better: "info" },
  { key: "receivedShare", label: "recv ÷ msgs", unit: "ratio", better: "info" },
  { key: "routedVsChannel", label: "recv routed ÷ channel", unit: "ratio", better: "info" },
  { key: "readBytesPerInstancePerMsg", label: "read B/inst/msg", unit: "count", better: "info" },
  { key: "readRoutedVsChannel", label: "read routed ÷ channel", unit: "ratio", better: "info" }
]

/** Both modes side by side, per system: one row per case, the medians, "n/a" and why when a case could not run. */
function summary(reports: Record<string, CaseReport>, systems: ReadonlyArray<string>): string {
  const lines: string[] = []
  for (const sys of systems) {
    const table: string[][] = []
    for (const row of rows) {
      const r = reports[row.id]?.results[sys]
      if (r === undefined) continue
      if (r.unavailable !== undefined) table.push([row.label, `n/a: ${r.unavailable}`])
      else if (Object.keys(r.median).length === 0) table.push([row.label, `failed: ${(r.errors[0] ?? "no result").split("\n")[0]?.slice(0, 100) ?? ""}`])
      else table.push([row.label, ...summaryCols.map((m) => fmt(r.median[m.key], m.unit))])
    }
    if (table.length === 0) continue
    const header = ["mode", ...summaryCols.map((m) => m.label)]
    const widths = header.map((h, i) => Math.max(h.length, ...table.map((t) => (t.length > 2 || i === 0 ? (t[i] ?? "").length : 0))))
    const line = (t: ReadonlyArray<string>): string =>
      t.length === 2
        ? `  ${(t[0] ?? "").padEnd(widths[0] ?? 0)}  ${t[1] ?? ""}`
        : "  " + t.map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join("  ")
    lines.push("", `H. fleet, ${sys}: the modes side by side (medians; "vs local" = ÷ H.local of the same repeat; recv = bus messages received per instance)`)
    lines.push(line(header), ...table.map(line))
  }
  return lines.join("\n")
}

export const H: Scenario = {
  letter: "H",
  title: "fleet",
  cases: (p) => fleetCases(p),
  appliesTo: (def) => def.routing === true,
  before: async (ctx) => {
    if (!haveRedisServer()) return
    const core = ctx.pin ? CLIENT_CORE : undefined
    ctx.redis = await startRedis(core)
    if (!haveRedisCli()) ctx.cluster = "redis-cli is not on the PATH"
    else {
      try {
        ctx.cluster = await startRedisCluster(core)
      } catch (e) {
        ctx.cluster = e instanceof Error ? e.message : String(e)
      }
    }
  },
  after: async (ctx) => {
    await ctx.redis?.stop()
    ctx.redis = undefined
    if (ctx.cluster !== undefined && typeof ctx.cluster !== "string") await ctx.cluster.stop()
    ctx.cluster = undefined
  },
  unavailable: (ctx) => (ctx.redis === undefined ? "redis-server is not on the PATH" : undefined),
  run: async (ctx, system, repeat) => {
    const base = await local(ctx, system)
    const res: RunOut[] = [base]
    const byId = new Map<string, RunOut>()
    for (const c of BUS_CASES) {
      const r = await onBus(ctx, system, repeat, c.id, c.bus, c.mode)
      if (r.unavailable === undefined) {
        const m = r.metrics
        m["cpuVsLocal"] = (m["cpuUsPerDelivery"] as number) / (base.metrics["cpuUsPerDelivery"] as number)
        m["rateVsLocal"] = (m["deliveriesPerSec"] as number) / (base.metrics["deliveriesPerSec"] as number)
        m["p99VsLocal"] = (m["p99Ms"] as number) / (base.metrics["p99Ms"] as number)
        const single = byId.get(c.bus === "redis" ? "H.channel" : "H.cluster.channel")
        if (c.mode === "routed" && single?.unavailable === undefined && single !== undefined) {
          m["routedVsChannel"] = (m["receivedPerInstance"] as number) / (single.metrics["receivedPerInstance"] as number)
          m["readRoutedVsChannel"] = (m["readBytesPerInstancePerMsg"] as number) / (single.metrics["readBytesPerInstancePerMsg"] as number)
        }
      }
      byId.set(c.id, r)
      res.push(r)
    }
    return res
  },
  summary
}
