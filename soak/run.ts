/**
 * The fault and abuse suite: real sockets, real `redis-server` processes (started here
 * on free loopback ports), the ssekify server in child processes (`--expose-gc`).
 *
 *   npm run soak                 # the full suite (a few minutes)
 *   npm run soak:quick           # smaller sizes (run by test/soak.quick.test.ts)
 *   node --import tsx soak/run.ts [--quick] [--only=stalled,longstalled,churn,redis,sentinel,hostile,shutdown,chaos] [--seed=n] [--out=file.json]
 *
 * Prints a table (scenario, figure, value, check) and writes JSON to
 * soak/results/<timestamp>.json (or --out). Exit code 1 when a check failed. Every loop
 * is bounded in count and time; every process and socket started is stopped, also on
 * error (a scenario's cleanups run in `finally`; an exit hook SIGKILLs what is left).
 */
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as net from "node:net"
import * as path from "node:path"
import { redisAvailable, startRedis, startSentinel, stopAll } from "../test/support/redisServer.js"
import { chaosMemory, chaosRedis, chaosSize } from "./chaos.js"
import { ServerChild, SOAK_DIR } from "./lib/child.js"
import { type Frame, SseClient } from "./lib/client.js"

const argv = process.argv.slice(2)
const QUICK = argv.includes("--quick")
const only = argv.find((a) => a.startsWith("--only="))?.slice(7).split(",")
const outArg = argv.find((a) => a.startsWith("--out="))?.slice(6)
const seedArg = argv.find((a) => a.startsWith("--seed="))?.slice(7)
const SEED = seedArg !== undefined ? Number(seedArg) >>> 0 : (Math.random() * 2 ** 32) >>> 0

const MiB = 1024 * 1024
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

interface Check {
  readonly name: string
  readonly ok: boolean
  readonly detail: string
}
interface Result {
  readonly scenario: string
  readonly figures: Record<string, unknown>
  readonly checks: Array<Check>
  ok: boolean
  error?: string
  ms: number
}

class Ctx {
  readonly figures: Record<string, unknown> = {}
  readonly checks: Array<Check> = []
  readonly cleanups: Array<() => Promise<void> | void> = []
  figure(name: string, value: unknown): void {
    this.figures[name] = value
  }
  check(name: string, ok: boolean, detail: unknown = ""): void {
    this.checks.push({ name, ok, detail: typeof detail === "string" ? detail : JSON.stringify(detail) })
  }
  defer(f: () => Promise<void> | void): void {
    this.cleanups.push(f)
  }
  async server(name: string): Promise<ServerChild> {
    const s = new ServerChild(name)
    this.defer(() => s.kill())
    return s
  }
  client(port: number, p: string, options?: ConstructorParameters<typeof SseClient>[2]): SseClient {
    const c = new SseClient(port, p, options)
    this.defer(() => c.destroy())
    return c
  }
}

/** Runs `f` over `items` with at most `n` at a time. */
const pool = async <T>(items: ReadonlyArray<T>, n: number, f: (item: T) => Promise<void>): Promise<void> => {
  let next = 0
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, async () => {
    while (next < items.length) await f(items[next++]!)
  }))
}

const until = async (what: string, check: () => boolean | Promise<boolean>, timeoutMs: number, everyMs = 20): Promise<number> => {
  const start = Date.now()
  while (!(await check())) {
    if (Date.now() - start > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await sleep(everyMs)
  }
  return Date.now() - start
}

interface Inspect {
  stats: Record<string, number | boolean>
  hub: { conns: number; users: number; rooms: number; tickers: number }
  resources: Record<string, number>
  listeners: Record<string, number>
  errorCodes: Record<string, number>
  errors: Array<{ code: string; message: string }>
  drops: Record<string, number>
}
interface Mem {
  rss: number
  heapUsed: number
}

const mb = (bytes: number) => Math.round((bytes / MiB) * 10) / 10

// ---------------------------------------------------------------------------
// 1. stalled clients under a 10 MB broadcast, per dropPolicy
// ---------------------------------------------------------------------------

const MAX_QUEUE_BYTES = 256 * 1024 // the documented default of maxQueueBytes
const RSS_CONSTANT = 32 * MiB

const stalled = (policy: "oldest" | "newest" | "disconnect") => async (ctx: Ctx) => {
  const nStalled = QUICK ? 20 : 100
  const nHealthy = QUICK ? 3 : 5
  // loopback lets the kernel hold ~4 MB per stalled socket: more than that must reach the queue
  const total = QUICK ? 6 * MiB : 10 * MiB
  const msgBytes = 16 * 1024
  const server = await ctx.server(`stalled-${policy}`)
  const { port } = await server.call<{ port: number }>("start", { options: { keepAliveMs: 0, autoFields: { timestamp: false } } })
  const idsOf = new Map<SseClient, Array<number>>()
  const open = async (user: string) => {
    const ids: Array<number> = []
    const c = ctx.client(port, `/sse?u=${user}&policy=${policy}`, { keepFrames: false, onFrame: (f) => ids.push(Number(f.id)) })
    idsOf.set(c, ids)
    await c.opened()
    return c
  }
  const stalledClients: Array<SseClient> = []
  for (let i = 0; i < nStalled; i++) {
    const c = await open(`s${i}`)
    c.pause()
    stalledClients.push(c)
  }
  const healthy: Array<SseClient> = []
  for (let i = 0; i < nHealthy; i++) healthy.push(await open(`h${i}`))
  await until("every connection registered", async () => (await server.call<Inspect>("inspect")).stats.connections === nStalled + nHealthy, 10_000)

  const b = await server.call<{ messages: number; ms: number; rssBefore: number; rssPeak: number }>(
    "broadcast",
    { totalBytes: total, msgBytes, event: "m" },
    180_000
  )
  const growth = b.rssPeak - b.rssBefore
  const bound = MAX_QUEUE_BYTES * nStalled + RSS_CONSTANT
  ctx.figure("broadcast", `${mb(total)} MB in ${b.messages} × 16 KB to ${nStalled} stalled + ${nHealthy} healthy, ${b.ms} ms`)
  ctx.figure("server RSS growth (MB)", mb(growth))
  ctx.figure("bound: maxQueueBytes × stalled + 32 MB (MB)", mb(bound))
  ctx.check("RSS growth within maxQueueBytes × clients + 32 MB", growth <= bound, `${mb(growth)} MB <= ${mb(bound)} MB`)

  const expected = Array.from({ length: b.messages }, (_, i) => i)
  await Promise.all(healthy.map((c) => c.waitFor(() => idsOf.get(c)!.length >= b.messages, 60_000, "healthy client to get every message")))
  const healthyOk = healthy.every((c) => JSON.stringify(idsOf.get(c)) === JSON.stringify(expected))
  ctx.figure("healthy clients got every message in order", `${healthy.filter((c) => JSON.stringify(idsOf.get(c)) === JSON.stringify(expected)).length}/${nHealthy}`)
  ctx.check("healthy clients got everything", healthyOk)

  const before = await server.call<Inspect>("inspect")
  for (const c of stalledClients) c.resume()
  const increasing = (ids: Array<number>) => ids.every((n, i) => i === 0 || n > ids[i - 1]!)
  if (policy === "disconnect") {
    await Promise.all(stalledClients.map((c) => c.waitFor(() => c.ended, 30_000, "a stalled connection to end")))
    const prefixes = stalledClients.map((c) => idsOf.get(c)!)
    const contiguous = prefixes.every((ids) => ids.every((n, i) => n === i) && ids.length < b.messages)
    ctx.figure("stalled clients disconnected", `${before.stats.disconnectedByBackpressure}/${nStalled}`)
    ctx.figure("frames a stalled client got before (min..max)", `${Math.min(...prefixes.map((p) => p.length))}..${Math.max(...prefixes.map((p) => p.length))}`)
    ctx.check("every stalled client disconnected (BACKPRESSURE_DISCONNECT reported)", before.stats.disconnectedByBackpressure === nStalled &&
      before.errorCodes.BACKPRESSURE_DISCONNECT === nStalled, before.errorCodes)
    ctx.check("a disconnected client got a gap-free prefix", contiguous)
  } else {
    const drops = (_c: SseClient, i: number) => before.drops[`s${i}`] ?? 0
    await Promise.all(stalledClients.map((c, i) =>
      c.waitFor(() => idsOf.get(c)!.length + drops(c, i) >= b.messages, 60_000, "a resumed client to get what was not dropped")))
    await sleep(200)
    const accounted = stalledClients.every((c, i) => idsOf.get(c)!.length + drops(c, i) === b.messages)
    const shape = stalledClients.every((c) => {
      const ids = idsOf.get(c)!
      return increasing(ids) && (policy === "oldest" ? ids.at(-1) === b.messages - 1 : ids[0] === 0)
    })
    const dropped = policy === "oldest" ? before.stats.droppedOldest : before.stats.droppedNewest
    ctx.figure(`frames dropped (${policy})`, dropped)
    ctx.figure("frames a stalled client got (min..max)", `${Math.min(...stalledClients.map((c) => idsOf.get(c)!.length))}..${Math.max(...stalledClients.map((c) => idsOf.get(c)!.length))} of ${b.messages}`)
    ctx.check(`frames were dropped under '${policy}'`, Number(dropped) > 0 && stalledClients.every((_, i) => drops(_, i) > 0))
    ctx.check("received + reported dropped = sent, for every stalled client", accounted)
    ctx.check(policy === "oldest" ? "'oldest' keeps the newest: every stalled client got the last message" : "'newest' keeps the oldest: every stalled client got the first message", shape)
    ctx.check("no stalled client was disconnected", before.stats.disconnectedByBackpressure === 0 && stalledClients.every((c) => !c.ended))
  }
}

// ---------------------------------------------------------------------------
// 1b. clients that never read, for the whole of a long flood, per dropPolicy
// ---------------------------------------------------------------------------

const DEFAULT_MAX_QUEUE_ITEMS = 100
const HEAP_BOUND = 5 * MiB

/**
 * 10 raw sockets send their request and never read a byte, while 1 M messages (1 KB;
 * 100 000 with --quick) are broadcast as fast as the server can: the kernel buffers fill
 * within a few thousand, every later frame goes through the connection's queue and its
 * policy. The heap after GC must end within 5 MB of where it started (the queue's memory
 * is bounded by maxQueueItems, whatever the number of frames dropped).
 */
const longStalled = (policy: "oldest" | "newest" | "disconnect") => async (ctx: Ctx) => {
  const nClients = 10
  const frames = QUICK ? 100_000 : 1_000_000
  const server = await ctx.server(`long-stalled-${policy}`)
  const { port } = await server.call<{ port: number }>("start", { options: { keepAliveMs: 0, autoFields: { timestamp: false } } })
  for (let i = 0; i < nClients; i++) {
    const socket = net.connect(port, "127.0.0.1")
    socket.pause() // never read
    socket.on("error", () => {})
    socket.write(`GET /sse?u=z${i}&policy=${policy} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n`)
    ctx.defer(() => void socket.destroy())
  }
  await until("every connection registered", async () => (await server.call<Inspect>("inspect")).stats.connections === nClients, 10_000)
  const f = await server.call<{
    ms: number
    delivered: number
    heapBefore: number
    heapAfter: number
    externalBefore: number
    externalAfter: number
    queues: Array<{ user: string; blocked: boolean; items: number; bytes: number; slots: number }>
  }>("flood", { frames, bytes: 1024, event: "f" }, 900_000)
  const after = await server.call<Inspect>("inspect")
  const growth = f.heapAfter - f.heapBefore
  const drops = Array.from({ length: nClients }, (_, i) => after.drops[`z${i}`] ?? 0)
  const slots = Math.max(0, ...f.queues.map((q) => q.slots))
  ctx.figure("flood", `${frames} × 1 KB sendToAll to ${nClients} clients that never read, ${f.ms} ms (${Math.round(frames / (f.ms / 1000))} msg/s)`)
  ctx.figure("heap after GC: start → end (MB)", `${mb(f.heapBefore)} → ${mb(f.heapAfter)} (${growth >= 0 ? "+" : ""}${mb(growth)})`)
  ctx.figure("external after GC: start → end (MB)", `${mb(f.externalBefore)} → ${mb(f.externalAfter)}`)
  ctx.check("heap after GC within 5 MB of the start", growth <= HEAP_BOUND, `${mb(growth)} MB`)
  if (policy === "disconnect") {
    ctx.figure("clients disconnected", `${after.stats.disconnectedByBackpressure}/${nClients}`)
    ctx.check("every client disconnected (BACKPRESSURE_DISCONNECT reported)", after.stats.disconnectedByBackpressure === nClients &&
      after.errorCodes.BACKPRESSURE_DISCONNECT === nClients && after.stats.connections === 0, after.errorCodes)
  } else {
    const dropped = policy === "oldest" ? after.stats.droppedOldest : after.stats.droppedNewest
    ctx.figure(`frames dropped (${policy}), per client min..max`, `${Math.min(...drops)}..${Math.max(...drops)} of ${frames}`)
    ctx.figure("queue at the end: items / ring slots (max over clients)", `${Math.max(...f.queues.map((q) => q.items))} / ${slots}`)
    ctx.check("every client stayed connected and is waiting for 'drain'", after.stats.connections === nClients &&
      after.stats.disconnectedByBackpressure === 0 && f.queues.every((q) => q.blocked))
    ctx.check(`drops reported for every client, counted in stats().dropped${policy === "oldest" ? "Oldest" : "Newest"}`,
      drops.every((d) => d > 0) && drops.reduce((a, b) => a + b, 0) === dropped, { drops, dropped })
    ctx.check("reported dropped + queued <= sent, for every client", f.queues.every((q) => (after.drops[q.user] ?? 0) + q.items <= frames))
    ctx.check("queue ring slots <= maxQueueItems", slots <= DEFAULT_MAX_QUEUE_ITEMS, `${slots}`)
  }
}

// ---------------------------------------------------------------------------
// 2. connect / disconnect cycles
// ---------------------------------------------------------------------------

const churn = async (ctx: Ctx) => {
  const cycles = QUICK ? 1_000 : 10_000
  const warm = QUICK ? 200 : 1_000
  const heartbeatMs = QUICK ? 500 : 1_000
  const server = await ctx.server("churn")
  const { port } = await server.call<{ port: number }>("start", { options: { keepAliveMs: heartbeatMs, autoFields: { timestamp: false } } })
  const kinds = { fin: 0, rst: 0, beforeHead: 0, serverClose: 0, afterFrames: 0 }
  const cycle = async (i: number) => {
    const kind = i % 5
    const p = `/sse?u=u${i % 300}&room=r${i % 40}&room=all${kind === 3 ? "&close=1" : ""}`
    const c = new SseClient(port, p, { keepFrames: false })
    const closed = c.waitFor(() => c.closed, 10_000, "socket close")
    if (kind === 2) {
      kinds.beforeHead++
      c.socket.once("connect", () => setImmediate(() => c.reset()))
    } else {
      await c.opened()
      if (kind === 0) {
        kinds.fin++
        c.destroy()
      } else if (kind === 1) {
        kinds.rst++
        c.reset()
      } else if (kind === 3) {
        kinds.serverClose++
        await c.waitFor(() => c.ended, 5_000, "server close")
        c.destroy()
      } else {
        kinds.afterFrames++
        await sleep(1)
        c.reset()
      }
    }
    await closed
  }
  const run = (from: number, to: number) => pool(Array.from({ length: to - from }, (_, k) => from + k), 50, cycle)
  const idle = () => until("no connection left", async () => (await server.call<Inspect>("inspect")).hub.conns === 0, 10_000, 50)

  await run(0, warm)
  await idle()
  await sleep(heartbeatMs + 200) // a heartbeat interval: the ticker of the last connections is gone
  const base = await server.call<Inspect>("inspect")
  const m0 = await server.call<Mem>("mem")
  const t0 = Date.now()
  await run(warm, warm + cycles)
  const ms = Date.now() - t0
  await idle()
  await sleep(heartbeatMs + 200)
  const after = await server.call<Inspect>("inspect")
  const m1 = await server.call<Mem>("mem")
  const heapRatio = m1.heapUsed / m0.heapUsed
  ctx.figure("cycles (FIN / RST / before head / server close / RST after frames)", `${cycles} (${kinds.fin}/${kinds.rst}/${kinds.beforeHead}/${kinds.serverClose}/${kinds.afterFrames} incl. warm-up)`)
  ctx.figure("cycles per second", Math.round(cycles / (ms / 1000)))
  ctx.figure("heap after GC: start → end (MB)", `${mb(m0.heapUsed)} → ${mb(m1.heapUsed)} (${((heapRatio - 1) * 100).toFixed(2)}%)`)
  ctx.figure("stats after: connections / users / rooms", `${after.stats.connections} / ${after.stats.users} / ${after.stats.rooms}`)
  ctx.figure("heartbeat tickers after", after.hub.tickers)
  ctx.figure("active resources start → end", `${JSON.stringify(base.resources)} → ${JSON.stringify(after.resources)}`)
  ctx.check("heap after GC within 5% of the start", heapRatio <= 1.05, `${(heapRatio * 100).toFixed(1)}%`)
  ctx.check("hub maps empty (connections, users, rooms 0)", after.stats.connections === 0 && after.stats.users === 0 && after.stats.rooms === 0 &&
    after.hub.users === 0 && after.hub.rooms === 0)
  ctx.check("no heartbeat ticker left", after.hub.tickers === 0)
  ctx.check("active handles and timers as at the start", JSON.stringify(after.resources) === JSON.stringify(base.resources),
    { start: base.resources, end: after.resources })
  ctx.check("listener counts as at the start", JSON.stringify(after.listeners) === JSON.stringify(base.listeners), { start: base.listeners, end: after.listeners })
  ctx.figure("errors reported", JSON.stringify(after.errorCodes))
}

// ---------------------------------------------------------------------------
// 3 & 4. Redis killed / Sentinel failover under traffic
// ---------------------------------------------------------------------------

interface Pair {
  readonly a: ServerChild
  readonly b: ServerChild
  readonly watcher: SseClient
  readonly local: Array<Frame>
  readonly remote: Array<{ t: number; at: number }>
}

const pairOn = async (ctx: Ctx, redis: unknown, channel: string): Promise<Pair> => {
  const a = await ctx.server("A")
  const b = await ctx.server("B")
  const options = { keepAliveMs: 0, channel, autoFields: { timestamp: false } }
  const { port } = await a.call<{ port: number }>("start", { options, redis })
  await b.call("start", { options, redis })
  await a.call("ready")
  await b.call("ready")
  const local: Array<Frame> = []
  const remote: Array<{ t: number; at: number }> = []
  const watcher = ctx.client(port, "/sse?u=watcher", {
    keepFrames: false,
    onFrame: (f) => {
      if (f.event === "local") local.push(f)
      else if (f.event === "remote") remote.push({ t: (JSON.parse(f.data) as { t: number }).t, at: f.at })
    }
  })
  await watcher.opened()
  await a.call("tick", { name: "local", ms: 20, mode: "publish", event: "local" })
  await b.call("tick", { name: "remote", ms: 50, mode: "publish", event: "remote" })
  await until("cross-instance traffic", () => remote.length >= 10 && local.length >= 10, 10_000)
  return { a, b, watcher, local, remote }
}

/** The longest time without a frame in [from, to], and when it began (ms after `from`). */
const gapOf = (frames: ReadonlyArray<Frame>, from: number, to: number): { gap: number; at: number } => {
  const times = frames.map((f) => f.at).filter((t) => t >= from && t <= to)
  if (times.length === 0) return { gap: to - from, at: 0 }
  let best = { gap: times[0]! - from, at: 0 }
  if (to - times.at(-1)! > best.gap) best = { gap: to - times.at(-1)!, at: times.at(-1)! - from }
  for (let i = 1; i < times.length; i++) {
    if (times[i]! - times[i - 1]! > best.gap) best = { gap: times[i]! - times[i - 1]!, at: times[i - 1]! - from }
  }
  return best
}
const maxGap = (frames: ReadonlyArray<Frame>, from: number, to: number): number => gapOf(frames, from, to).gap
/** The same over the send times (`t` in the data, A's clock): a gap here was in A, not on the way. */
const sendGap = (frames: ReadonlyArray<Frame>, from: number, to: number): number =>
  gapOf(frames.map((f) => ({ ...f, at: (JSON.parse(f.data) as { t: number }).t })), from, to).gap

const redisKill = async (ctx: Ctx) => {
  const redis = await startRedis()
  ctx.defer(() => redis.stop())
  const pair = await pairOn(ctx, { url: redis.url }, "soak-kill")
  const outageMs = QUICK ? 1_500 : 3_000
  const killedAt = Date.now()
  await redis.kill()
  await sleep(outageMs)
  const restartedAt = Date.now()
  await redis.restart()
  await until("cross-instance delivery after the restart", () => pair.remote.some((r) => r.t >= restartedAt), 15_000, 10)
  const resumed = pair.remote.find((r) => r.t >= restartedAt)!
  await sleep(500)
  const end = Date.now()
  const aTick = await pair.a.call<{ sent: number; rejected: number }>("untick", { name: "local" })
  const bTick = await pair.b.call<{ sent: number; rejected: number }>("untick", { name: "remote" })
  const ia = await pair.a.call<Inspect>("inspect")
  const ib = await pair.b.call<Inspect>("inspect")
  const gap = maxGap(pair.local, killedAt, end)
  const lastBefore = pair.remote.filter((r) => r.t < killedAt).at(-1)
  ctx.figure("outage (SIGKILL → restart, ms)", restartedAt - killedAt)
  ctx.figure("local deliveries: longest gap during outage (ms; sent every 20 ms)", `${gap} (began ${gapOf(pair.local, killedAt, end).at} ms after the kill; restart at ${restartedAt - killedAt} ms)`)
  ctx.figure("  of which between A's sends (ms)", sendGap(pair.local, killedAt, end))
  ctx.figure("cross-instance delivery resumed after restart (s)", ((resumed.at - restartedAt) / 1000).toFixed(2))
  ctx.figure("cross-instance delivery stopped for (s)", (((resumed.at) - (lastBefore?.at ?? killedAt)) / 1000).toFixed(2))
  ctx.figure("publishes rejected on A / B", `${aTick.rejected} / ${bTick.rejected}`)
  ctx.figure("errors reported A / B", `${JSON.stringify(ia.errorCodes)} / ${JSON.stringify(ib.errorCodes)}`)
  ctx.figure("crashes", (pair.a.alive ? 0 : 1) + (pair.b.alive ? 0 : 1))
  // Nothing local may wait on Redis (a publish waits at most its 1 s offline timeout):
  // the gap figure above shows how short it was; scheduling noise on a loaded 2-core
  // machine reaches a few hundred ms and is not what this checks.
  ctx.check("local deliveries never waited on Redis (longest gap < 1 s publish timeout)", gap < 1_000, `${gap} ms`)
  ctx.check("cross-instance delivery resumed within 5 s of the restart", resumed.at - restartedAt < 5_000)
  ctx.check("errors reported on both instances", (ia.errorCodes.TRANSPORT_ERROR ?? 0) > 0 && (ib.errorCodes.TRANSPORT_ERROR ?? 0) > 0)
  ctx.check("0 crashes", pair.a.alive && pair.b.alive)
}

const sentinelFailover = async (ctx: Ctx) => {
  const set = await startSentinel()
  ctx.defer(() => set.stop())
  const oldPort = await set.currentMasterPort()
  const pair = await pairOn(ctx, { sentinels: set.sentinelAddresses, name: set.name }, "soak-sentinel")
  await pair.a.call("loop")
  const killedAt = Date.now()
  await set.master.kill()
  await until("cross-instance delivery after the failover", () => pair.remote.some((r) => r.t > killedAt), 40_000, 10)
  const resumed = pair.remote.find((r) => r.t > killedAt)!
  const newPort = await set.currentMasterPort()
  await sleep(300)
  const end = Date.now()
  await pair.a.call("untick", { name: "local" })
  await pair.b.call("untick", { name: "remote" })
  const gap = maxGap(pair.local, killedAt, end)
  ctx.figure("master SIGKILLed; new master", `${oldPort} → ${newPort}`)
  ctx.figure("cross-instance delivery resumed after the kill (s)", ((resumed.at - killedAt) / 1000).toFixed(2))
  ctx.figure("local deliveries: longest gap (ms)", gap)
  ctx.figure("  of which between A's sends (ms)", sendGap(pair.local, killedAt, end))
  const loop = await pair.a.call<{ maxMs: number; cpuMs: number; stalls: Array<[number, number, number]> }>("loop")
  ctx.figure("A's event loop: longest delay (ms); stalls > 50 ms [ms after kill, late by, CPU ms]", `${loop.maxMs}; ${JSON.stringify(loop.stalls.map(([t, d, c]) => [t - killedAt, d, c]))}`)
  ctx.figure("crashes", (pair.a.alive ? 0 : 1) + (pair.b.alive ? 0 : 1))
  ctx.check("failed over to the replica", newPort !== oldPort && newPort === set.replica.port)
  ctx.check("cross-instance delivery resumed", resumed !== undefined)
  // Nothing local may wait on Redis (a publish waits at most its 1 s offline timeout):
  // the gap figure above shows how short it was; scheduling noise on a loaded 2-core
  // machine reaches a few hundred ms and is not what this checks.
  ctx.check("local deliveries never waited on Redis (longest gap < 1 s publish timeout)", gap < 1_000, `${gap} ms`)
  ctx.check("0 crashes", pair.a.alive && pair.b.alive)
}

// ---------------------------------------------------------------------------
// 5. hostile input
// ---------------------------------------------------------------------------

const cliPublish = (port: number, channel: string, message: string): Promise<string> =>
  new Promise((resolve, reject) => {
    const child = spawn("redis-cli", ["-h", "127.0.0.1", "-p", String(port), "-x", "PUBLISH", channel], { stdio: ["pipe", "pipe", "pipe"] })
    let out = ""
    const timer = setTimeout(() => child.kill("SIGKILL"), 10_000)
    child.stdout.on("data", (d: Buffer) => (out += d.toString()))
    child.on("close", (code) => {
      clearTimeout(timer)
      if (code === 0) resolve(out.trim())
      else reject(new Error(`redis-cli PUBLISH exited ${code}`))
    })
    child.stdin.end(message) // -x: the last argument is read from stdin, as is (no newline added)
  })

const hostile = async (ctx: Ctx) => {
  const redis = await startRedis()
  ctx.defer(() => redis.stop())
  const limit = 64 * 1024
  const channel = "soak-hostile"
  const server = await ctx.server("hostile")
  const { port } = await server.call<{ port: number }>("start", {
    options: { keepAliveMs: 0, maxPayloadBytes: limit, channel, autoFields: { timestamp: false } },
    redis: { url: redis.url },
    maxHeaderSize: 4 * MiB
  })
  await server.call("ready")
  const witnesses = [1, 2, 3].map((i) => ctx.client(port, `/sse?u=w${i}&room=witness`))
  const target = ctx.client(port, "/sse?u=target&room=witness")
  const roomer = ctx.client(port, "/sse?u=roomer")
  for (const c of [...witnesses, target, roomer]) await c.opened()
  await until("connections registered", async () => (await server.call<Inspect>("inspect")).stats.connections === 5, 5_000)
  let seq = 0
  const witness = () => server.call("witness", { seq: seq++ })
  const outcomes: Record<string, string> = {}
  const api = async (name: string, args: Record<string, unknown>, expect: (r: { result: unknown; codes: Array<string> }) => boolean) => {
    const r = await server.call<{ result: unknown; codes: Array<string> }>("hostile", args)
    const counts: Record<string, number> = {}
    for (const c of r.codes) counts[c] = (counts[c] ?? 0) + 1
    outcomes[name] = `${Object.entries(counts).map(([c, n]) => (n > 1 ? `${c} ×${n}` : c)).join(", ") || "no error"}; result ${JSON.stringify(r.result)}`
    ctx.check(`hostile: ${name}`, expect(r), outcomes[name])
    await witness()
  }
  await witness()
  await api("event name with CR/LF (sanitised, no injection)", { case: "event-crlf" }, (r) => r.result === 1)
  await api("id with CR/LF (sanitised, no injection)", { case: "id-crlf" }, (r) => r.result === 1)
  await api("id and event with NUL (sanitised)", { case: "id-nul" }, (r) => r.result === 1)
  await api("room name with CR/LF (never on the wire)", { case: "room-crlf" }, (r) => JSON.stringify(r.result) === "[true,1]")
  await api("user id with CR/LF/NUL (never on the wire)", { case: "user-crlf" }, (r) => r.result === 0)
  await api("circular object (sendToAll)", { case: "circular" }, (r) => r.codes.join() === "SERIALIZE_FAILED" && r.result === 0)
  await api("circular object (publish)", { case: "circular-publish" }, (r) => r.codes.join() === "SERIALIZE_FAILED")
  await api(`payload maxPayloadBytes + 1 (${limit + 1} B)`, { case: "over-limit", limit }, (r) => r.codes.join() === "PAYLOAD_TOO_LARGE" && r.result === 0)
  await api(`payload exactly maxPayloadBytes (${limit} B, delivered)`, { case: "at-limit", limit }, (r) => r.codes.length === 0 && r.result === 4)
  await api("10 000 rooms joined by one connection", { case: "rooms-10000" }, (r) =>
    JSON.stringify(r.result) === JSON.stringify({ joined: 1024, newRooms: 1024 }) && r.codes.length === 10_000 - 1024 && r.codes.every((c) => c === "LIMIT_EXCEEDED"))

  // over HTTP
  const http = async (name: string, p: string, headers: Record<string, string>, expect: (c: SseClient, codes: Record<string, number>) => boolean) => {
    const before = (await server.call<Inspect>("inspect")).errorCodes
    const c = ctx.client(port, p, { headers })
    await c.opened()
    await sleep(50)
    const after = (await server.call<Inspect>("inspect")).errorCodes
    const delta: Record<string, number> = {}
    for (const [k, v] of Object.entries(after)) if (v !== (before[k] ?? 0)) delta[k] = v - (before[k] ?? 0)
    outcomes[name] = `HTTP ${c.status}; ${Object.entries(delta).map(([k, v]) => `${k} ×${v}`).join(", ") || "no error"}`
    ctx.check(`hostile: ${name}`, expect(c, delta), outcomes[name])
    c.destroy()
    await witness()
  }
  await http("1 MB Last-Event-ID header", "/sse?u=lei", { "Last-Event-ID": "x".repeat(MiB) }, (c, d) => c.status === 200 && d.LAST_EVENT_ID_TOO_LONG === 1)
  await http("user id with CR/LF/NUL in the query", "/sse?u=a%0D%0Aevil%00", {}, (c) => c.status === 200)
  await http("user id over maxUserIdLength", `/sse?u=${"u".repeat(300)}`, {}, (c, d) => c.status === 400 && d.INVALID_INPUT === 1)
  await http("room name with CR/LF in the query", "/sse?u=r&room=a%0D%0Aevil", {}, (c) => c.status === 200)

  // on the bus (redis-cli PUBLISH)
  const bus = async (name: string, message: string, expectCode: string) => {
    const before = (await server.call<Inspect>("inspect")).errorCodes
    await cliPublish(redis.port, channel, message)
    let delta: Record<string, number> = {}
    await until(`the error for ${name}`, async () => {
      const after = (await server.call<Inspect>("inspect")).errorCodes
      delta = {}
      for (const [k, v] of Object.entries(after)) if (v !== (before[k] ?? 0)) delta[k] = v - (before[k] ?? 0)
      return Object.keys(delta).length > 0
    }, 5_000, 20).catch(() => 0)
    outcomes[name] = Object.entries(delta).map(([k, v]) => `${k} ×${v}`).join(", ") || "no error"
    ctx.check(`hostile: ${name}`, delta[expectCode] === 1 && Object.keys(delta).length === 1, outcomes[name])
    await witness()
  }
  const env = (fields: Record<string, unknown>) => JSON.stringify({ type: "user", target: "target", data: "x", at: 1, origin: "evil", ...fields })
  await bus("bus: not JSON", "{{{ not json", "BUS_MESSAGE_INVALID")
  await bus("bus: wrong types", JSON.stringify({ type: "user", target: 42, data: "x", at: "now", origin: 7 }), "BUS_MESSAGE_INVALID")
  await bus("bus: unknown target type", env({ type: "nuke" }), "BUS_MESSAGE_INVALID")
  await bus("bus: JSON array", "[1,2,3]", "BUS_MESSAGE_INVALID")
  await bus("bus: 5 MB message", env({ data: "z".repeat(5 * MiB) }), "PAYLOAD_TOO_LARGE")
  await bus("bus: 5 MB of garbage", "\u0000".repeat(5 * MiB), "BUS_MESSAGE_INVALID")

  // every witness got every witness frame, in order; nothing was injected into the target's stream
  const expected = Array.from({ length: seq }, (_, i) => i)
  const got = (c: SseClient) => c.frames.filter((f) => f.event === "witness").map((f) => (JSON.parse(f.data) as { seq: number }).seq)
  await Promise.all([...witnesses, target].map((c) => c.waitFor(() => got(c).length >= seq, 10_000, "witness frames").catch(() => undefined)))
  const complete = [...witnesses, target].every((c) => JSON.stringify(got(c)) === JSON.stringify(expected))
  const injected = target.frames.filter((f) => f.data === "injected" || f.id === "666" || f.event === "x")
  const evil = target.frames.filter((f) => f.event?.startsWith("evil") === true).map((f) => f.event)
  ctx.figure("witness frames (every other connection)", `${Math.min(...[...witnesses, target].map((c) => got(c).length))}/${seq} each, in order: ${complete}`)
  ctx.figure("frames injected into the target's stream", injected.length)
  ctx.figure("the CR/LF event name arrived as", JSON.stringify(evil[0] ?? null))
  ctx.check("no other connection lost a frame", complete)
  ctx.check("no frame injected through CR/LF/NUL", injected.length === 0 && evil.length === 1)
  ctx.check("the server is alive and accepting", server.alive && (await server.call<Inspect>("inspect")).stats.accepting === true)
  for (const [k, v] of Object.entries(outcomes)) ctx.figure(`· ${k}`, v)
}

// ---------------------------------------------------------------------------
// 6. shutdown with open connections
// ---------------------------------------------------------------------------

const shutdown = async (ctx: Ctx) => {
  const n = QUICK ? 300 : 1_000
  const graceMs = QUICK ? 500 : 2_000
  const server = await ctx.server("shutdown")
  const { port } = await server.call<{ port: number }>("start", { options: { keepAliveMs: 15_000 } })
  const clients: Array<SseClient> = []
  const endedAt = new Map<SseClient, number>()
  await pool(Array.from({ length: n }, (_, i) => i), 100, async (i) => {
    const c = ctx.client(port, `/sse?u=u${i}&room=all`)
    clients.push(c)
    void c.waitFor(() => c.ended, 600_000, "end").then(() => endedAt.set(c, Date.now()), () => undefined)
    await c.opened()
  })
  await until("every connection registered", async () => (await server.call<Inspect>("inspect")).stats.connections === n, 10_000)
  const t0 = Date.now()
  const answer = server.call<{ shutdownMs: number; closedMs: number }>("shutdown", { graceMs }, graceMs + 10_000)
  const exited = await server.exited(graceMs + 10_000)
  const exitMs = server.exitedAt - t0
  const r = await answer.catch((e: unknown) => ({ error: String(e) }))
  await until("every client to see its end", () => clients.every((c) => c.ended), 2_000).catch(() => undefined)
  const announced = clients.filter((c) => c.frames.some((f) => f.event === "server:shutdown" && (JSON.parse(f.data) as { code?: string }).code === "SHUTDOWN")).length
  const ends = clients.map((c) => (endedAt.get(c) ?? Number.POSITIVE_INFINITY) - t0)
  const lastEnd = Math.max(...ends)
  ctx.figure("open connections", n)
  ctx.figure("announce event received", `${announced}/${n}`)
  ctx.figure("last connection ended after (ms; graceMs)", `${lastEnd} (${graceMs})`)
  ctx.figure("server process exited by itself after (ms)", exited ? `${exitMs} (code ${server.exitCode})` : "did not exit")
  ctx.figure("shutdown() resolved after (ms)", JSON.stringify(r))
  ctx.check("every client got the announce event", announced === n)
  ctx.check("every connection ended within graceMs + 1 s", lastEnd <= graceMs + 1_000, `${lastEnd} ms`)
  ctx.check("the process exited by itself, code 0", exited && server.exitCode === 0, `${server.exitCode ?? server.exitSignal}`)
}

// ---------------------------------------------------------------------------

const scenarios: Array<[string, string, (ctx: Ctx) => Promise<void>, boolean]> = [
  ["stalled", "stalled clients, dropPolicy 'oldest'", stalled("oldest"), false],
  ["stalled", "stalled clients, dropPolicy 'newest'", stalled("newest"), false],
  ["stalled", "stalled clients, dropPolicy 'disconnect'", stalled("disconnect"), false],
  ["longstalled", "clients that never read under a long flood, dropPolicy 'oldest'", longStalled("oldest"), false],
  ["longstalled", "clients that never read under a long flood, dropPolicy 'newest'", longStalled("newest"), false],
  ["longstalled", "clients that never read under a long flood, dropPolicy 'disconnect'", longStalled("disconnect"), false],
  ["churn", "connect / disconnect cycles", churn, false],
  ["redis", "Redis SIGKILLed and restarted under traffic", redisKill, true],
  ["sentinel", "Sentinel failover under traffic", sentinelFailover, true],
  ["hostile", "hostile input", hostile, true],
  ["shutdown", "shutdown with open connections", shutdown, false],
  ["chaos", "chaos: connections cut at random, one instance, memory replay", chaosMemory(chaosSize(QUICK, SEED)), false],
  ["chaos", "chaos: connections cut at random, two instances, replay 'redis'", chaosRedis(chaosSize(QUICK, SEED)), true]
]

/** `--quick` without `--only` leaves the chaos scenarios to test/chaos.quick.test.ts (`--quick --only=chaos`). */
const selected = (key: string): boolean => only !== undefined ? only.includes(key) : !(QUICK && key === "chaos")

const main = async () => {
  const haveRedis = redisAvailable()
  const results: Array<Result> = []
  const started = new Date()
  for (const [key, name, f, needsRedis] of scenarios) {
    if (!selected(key)) continue
    const ctx = new Ctx()
    const t0 = Date.now()
    const result: Result = { scenario: name, figures: ctx.figures, checks: ctx.checks, ok: false, ms: 0 }
    process.stderr.write(`soak: ${name} …\n`)
    if (needsRedis && !haveRedis) {
      result.error = "SKIPPED: redis-server not on the PATH"
      results.push(result)
      continue
    }
    try {
      await f(ctx)
    } catch (e) {
      result.error = String((e as Error)?.stack ?? e)
    } finally {
      for (const c of ctx.cleanups.reverse()) {
        try {
          await c()
        } catch {
          // keep cleaning
        }
      }
    }
    result.ms = Date.now() - t0
    result.ok = result.error === undefined && ctx.checks.every((c) => c.ok)
    results.push(result)
    process.stderr.write(`soak: ${name}: ${result.ok ? "ok" : "FAILED"} (${result.ms} ms)${result.error ? `\n${result.error}` : ""}\n`)
  }
  await stopAll()

  // the table
  const rows: Array<[string, string, string]> = []
  for (const r of results) {
    rows.push([`${r.ok ? "ok  " : "FAIL"} ${r.scenario}`, "", `${(r.ms / 1000).toFixed(1)} s`])
    for (const [k, v] of Object.entries(r.figures)) rows.push(["", k, String(v)])
    for (const c of r.checks) rows.push(["", `${c.ok ? "✓" : "✗"} ${c.name}`, c.ok ? "" : c.detail])
    if (r.error !== undefined) rows.push(["", "error", r.error.split("\n")[0]!])
  }
  const w0 = Math.max(...rows.map((r) => r[0].length))
  const w1 = Math.min(90, Math.max(...rows.map((r) => r[1].length)))
  const lines = [`ssekify soak${QUICK ? " --quick" : ""} · ${started.toISOString()} · node ${process.version} · ${process.platform}`]
  for (const [a, b, c] of rows) lines.push(`${a.padEnd(w0)}  ${b.padEnd(w1)}  ${c}`)
  process.stdout.write(lines.join("\n") + "\n")

  const out = outArg ?? path.join(SOAK_DIR, "results", `${started.toISOString().replace(/[:.]/g, "-")}${QUICK ? "-quick" : ""}.json`)
  fs.mkdirSync(path.dirname(out), { recursive: true })
  fs.writeFileSync(out, JSON.stringify({ quick: QUICK, started: started.toISOString(), node: process.version, results }, null, 2))
  process.stdout.write(`JSON: ${out}\n`)
  process.exitCode = results.every((r) => r.ok || r.error?.startsWith("SKIPPED") === true) ? 0 : 1
}

const stopOnSignal = (signal: NodeJS.Signals) =>
  process.once(signal, () => {
    void stopAll().finally(() => process.exit(130))
  })
stopOnSignal("SIGINT")
stopOnSignal("SIGTERM")

main().catch(async (e: unknown) => {
  process.stderr.write(`soak: ${String((e as Error)?.stack ?? e)}\n`)
  await stopAll()
  process.exitCode = 1
})

