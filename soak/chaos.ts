/**
 * The chaos scenarios of the soak suite (`soak/run.ts --only=chaos`): browsers (the
 * `eventsource` package, which reconnects by itself with `Last-Event-ID`) reach the
 * ssekify servers through a TCP proxy of our own (`lib/proxy.ts`) that cuts every
 * connection at a random moment, while per-user frames with ids stream.
 *
 * - memory: one instance, memory replay (`replayOffline`, so frames sent between a cut
 *   and the reconnect are kept), the instance itself sends.
 * - redis: two instances with `replay: 'redis'` on a real redis-server, the proxy sends
 *   each (re)connect to either at random; a third instance publishes.
 *
 * Each user's frames are numbered 1 … count; a client counts what it got: lost (never
 * arrived), duplicated (arrived again), out of order (arrived after a higher number).
 * Any of them fails the scenario.
 */
import { EventSource } from "eventsource"
import { startRedis } from "../test/support/redisServer.js"
import type { ServerChild } from "./lib/child.js"
import { ChaosProxy, prng } from "./lib/proxy.js"

/** What the soak runner's context gives a scenario. */
export interface ChaosCtx {
  figure(name: string, value: unknown): void
  check(name: string, ok: boolean, detail?: unknown): void
  defer(f: () => Promise<void> | void): void
  server(name: string): Promise<ServerChild>
}

export interface ChaosSize {
  readonly users: number
  /** Frames per user. */
  readonly count: number
  readonly everyMs: number
  readonly minLifeMs: number
  readonly maxLifeMs: number
  readonly seed: number
}

export const chaosSize = (quick: boolean, seed: number): ChaosSize =>
  quick
    ? { users: 8, count: 250, everyMs: 20, minLifeMs: 30, maxLifeMs: 500, seed }
    : { users: 20, count: 1_000, everyMs: 20, minLifeMs: 30, maxLifeMs: 800, seed }

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

interface Inspect {
  stats: Record<string, number | boolean>
  errorCodes: Record<string, number>
}

/** One browser: what it got, per connection. */
class Browser {
  readonly got: Array<number> = []
  /** The connection (1, 2, …) each frame arrived on. */
  readonly on: Array<number> = []
  opens = 0
  gaps = 0
  readonly es: EventSource

  constructor(url: string) {
    this.es = new EventSource(url)
    this.es.onopen = () => void this.opens++
    this.es.onmessage = (e) => {
      this.got.push((JSON.parse(e.data) as { n: number }).n)
      this.on.push(this.opens)
    }
    this.es.addEventListener("replay-gap", () => void this.gaps++)
  }

  get max(): number {
    let m = 0
    for (const n of this.got) if (n > m) m = n
    return m
  }

  /** Lost, duplicated and out-of-order frames of 1 … count, and the connections that got a duplicate. */
  tally(count: number): {
    lost: number
    duplicated: number
    outOfOrder: number
    connsWithDuplicate: number
    firstDuplicates: Array<string>
    firstLost: Array<string>
    firstOutOfOrder: Array<string>
  } {
    const seen = new Set<number>()
    const dupConns = new Set<number>()
    const firstDuplicates: Array<string> = []
    const firstOutOfOrder: Array<string> = []
    let duplicated = 0
    let outOfOrder = 0
    let max = 0
    for (let i = 0; i < this.got.length; i++) {
      const n = this.got[i]!
      if (seen.has(n)) {
        duplicated++
        dupConns.add(this.on[i]!)
        if (firstDuplicates.length < 3) firstDuplicates.push(`${n} again on connection ${this.on[i]} (after ${this.got[i - 1]})`)
        continue
      }
      seen.add(n)
      if (n < max) {
        outOfOrder++
        if (firstOutOfOrder.length < 3) firstOutOfOrder.push(`${n} on connection ${this.on[i]} after ${max} (${this.got.slice(Math.max(0, i - 4), i + 2).join(",")})`)
      } else max = n
    }
    let lost = 0
    const firstLost: Array<string> = []
    for (let n = 1; n <= count; n++) {
      if (seen.has(n)) continue
      lost++
      if (firstLost.length < 3) {
        const before = this.got.indexOf(n - 1)
        const after = this.got.indexOf(n + 1)
        firstLost.push(`${n} (${n - 1} on connection ${this.on[before] ?? "-"}, ${n + 1} on connection ${this.on[after] ?? "-"})`)
      }
    }
    return { lost, duplicated, outOfOrder, connsWithDuplicate: dupConns.size, firstDuplicates, firstLost, firstOutOfOrder }
  }
}

const run = async (
  ctx: ChaosCtx,
  size: ChaosSize,
  backends: ReadonlyArray<ServerChild>,
  ports: ReadonlyArray<number>,
  publisher: ServerChild,
  publish: boolean
): Promise<void> => {
  const random = prng(size.seed)
  const proxy = new ChaosProxy({ backends: ports, random, minLifeMs: size.minLifeMs, maxLifeMs: size.maxLifeMs })
  const proxyPort = await proxy.listen()
  ctx.defer(() => proxy.close())
  const users = Array.from({ length: size.users }, (_, i) => `u${i}`)
  const browsers = users.map((u) => new Browser(`http://127.0.0.1:${proxyPort}/sse?u=${u}`))
  ctx.defer(() => {
    for (const b of browsers) b.es.close()
  })
  const deadline = Date.now() + 10_000
  while (browsers.some((b) => b.opens === 0) && Date.now() < deadline) await sleep(10)
  // frame 0 before the chaos: a browser that never got an id has nothing to resume from
  // (it reconnects without Last-Event-ID, as a browser would, and replay cannot apply)
  await publisher.call("stream", { users, from: 0, count: 1, everyMs: 0, publish })
  while (browsers.some((b) => b.got.length === 0) && Date.now() < deadline) await sleep(10)
  proxy.rage()
  const stream = await publisher.call<{ frames: number; rejected: number; ms: number; sameMs: number }>(
    "stream",
    { users, from: 1, count: size.count, everyMs: size.everyMs, publish },
    size.count * size.everyMs + 60_000
  )
  proxy.calm()
  // every browser reconnects (20 ms) and gets the rest: bounded wait for the last frame
  const settleStart = Date.now()
  while (browsers.some((b) => b.max < size.count) && Date.now() - settleStart < 10_000) await sleep(20)
  await sleep(200) // a duplicate of the last frames would arrive now
  const tallies = browsers.map((b) => b.tally(size.count))
  const sum = (k: "lost" | "duplicated" | "outOfOrder" | "connsWithDuplicate") => tallies.reduce((s, t) => s + t[k], 0)
  const reconnects = browsers.reduce((s, b) => s + b.opens, 0) - browsers.length
  const gaps = browsers.reduce((s, b) => s + b.gaps, 0)
  const inspects = await Promise.all(backends.map((b) => b.call<Inspect>("inspect")))
  ctx.figure("seed", size.seed)
  ctx.figure("users × frames (every ms)", `${size.users} × ${size.count} (${size.everyMs})`)
  ctx.figure("stream took (ms); publishes rejected; rounds in the same ms as the one before", `${stream.ms}; ${stream.rejected}; ${stream.sameMs}`)
  ctx.figure("connections cut by the proxy", proxy.cuts)
  ctx.figure("reconnects (per backend)", `${reconnects} (${ports.map((p) => proxy.accepted.get(p) ?? 0).join(" / ")})`)
  ctx.figure("replayed frames; replay misses (per backend)", inspects.map((i) => `${i.stats.replayed}; ${i.stats.replayMisses}`).join(" / "))
  ctx.figure("errors reported (per backend)", inspects.map((i) => JSON.stringify(i.errorCodes)).join(" / "))
  ctx.figure("lost / duplicated / out of order", `${sum("lost")} / ${sum("duplicated")} / ${sum("outOfOrder")}`)
  ctx.figure("reconnects that got a duplicate", `${sum("connsWithDuplicate")} of ${reconnects}`)
  const examples = tallies.flatMap((t, i) => t.firstDuplicates.map((d) => `${users[i]}: ${d}`)).slice(0, 4)
  if (examples.length > 0) ctx.figure("first duplicates", examples.join("; "))
  ctx.figure("replay-gap events", gaps)
  ctx.check("the proxy cut connections and browsers reconnected", proxy.cuts > 0 && reconnects > 0)
  const lostExamples = tallies.flatMap((t, i) => t.firstLost.map((d) => `${users[i]}: ${d}`)).slice(0, 4)
  if (lostExamples.length > 0) ctx.figure("first lost", lostExamples.join("; "))
  ctx.check("0 lost", sum("lost") === 0, lostExamples)
  ctx.check("0 duplicated", sum("duplicated") === 0, examples)
  const orderExamples = tallies.flatMap((t, i) => t.firstOutOfOrder.map((d) => `${users[i]}: ${d}`)).slice(0, 4)
  if (orderExamples.length > 0) ctx.figure("first out of order", orderExamples.join("; "))
  ctx.check("0 out of order", sum("outOfOrder") === 0, orderExamples)
  ctx.check("0 replay-gap events", gaps === 0, gaps)
  ctx.check("0 crashes", [...backends, publisher].every((s) => s.alive))
}

/** One instance, memory replay; it sends the frames itself. */
export const chaosMemory = (size: ChaosSize) => async (ctx: ChaosCtx): Promise<void> => {
  const server = await ctx.server("chaos-memory")
  const { port } = await server.call<{ port: number }>("start", {
    options: { retryMs: 20, keepAliveMs: 0, recentBufferSize: 1_000, replayOffline: true, replayGapEvent: "replay-gap", autoFields: { timestamp: false } }
  })
  await run(ctx, size, [server], [port], server, false)
}

/** Two instances with `replay: 'redis'` behind the proxy, a third publishing. */
export const chaosRedis = (size: ChaosSize) => async (ctx: ChaosCtx): Promise<void> => {
  const redis = await startRedis()
  ctx.defer(() => redis.stop())
  const options = {
    channel: `soak-chaos-${process.pid}`,
    replay: "redis",
    retryMs: 20,
    keepAliveMs: 0,
    recentBufferSize: 1_000,
    replayGapEvent: "replay-gap",
    autoFields: { timestamp: false }
  }
  const [a, b, p] = await Promise.all(["chaos-a", "chaos-b", "chaos-publisher"].map((n) => ctx.server(n))) as [ServerChild, ServerChild, ServerChild]
  const started = await Promise.all([a, b, p].map((s) => s.call<{ port: number }>("start", { options, redis: { url: redis.url } })))
  await Promise.all([a, b, p].map((s) => s.call("ready")))
  await run(ctx, size, [a, b], [started[0]!.port, started[1]!.port], p, true)
}
