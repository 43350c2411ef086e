/**
 * `SSEKify` instances when Redis goes away (the facade, end to end, on real sockets):
 *
 * - Redis SIGKILLed under traffic and restarted on the same port: local deliveries never
 *   pause (a local send loop keeps delivering through the outage), `publish` delivers
 *   locally and rejects with a typed `TransportError` plus an `'error'` event while Redis
 *   is down, nothing crashes, and cross-instance delivery resumes by itself within 5 s;
 * - Redis down when the instances are made: they work locally, and cross-instance
 *   delivery starts by itself when Redis comes.
 *
 * The measured figures are printed (`[faults] …`) for docs/scaling-out.md.
 */
import { afterAll, afterEach, describe, expect, it } from "vitest"
import { TransportError } from "../../src/index.js"
import { freePort, redisAvailable, startRedis, stopAll } from "../support/redisServer.js"
import type { RawClient } from "../support/sse.js"
import { Fixture, sleep, unique, until } from "./support.js"

/** Arrival times of the data frames a client gets, by the value of `data.i` (per `from`). */
const arrivals = (client: RawClient) => {
  const seen = new Map<string, number>()
  const at: Array<{ from: string; i: number; t: number }> = []
  client.response.on("data", () => {
    const t = Date.now()
    for (const m of client.messages()) {
      if (seen.has(m.data) || m.data === "") continue
      seen.set(m.data, t)
      const d = JSON.parse(m.data) as { from: string; i: number }
      at.push({ from: d.from, i: d.i, t })
    }
  })
  return at
}

/** The longest pause between consecutive arrivals within [from, to]. */
const longestGap = (times: ReadonlyArray<number>, from: number, to: number): number => {
  const inside = times.filter((t) => t >= from && t <= to)
  let gap = 0
  for (let i = 1; i < inside.length; i++) gap = Math.max(gap, inside[i]! - inside[i - 1]!)
  return gap
}

describe.skipIf(!redisAvailable())("SSEKify instances when Redis fails", () => {
  const fx = new Fixture()
  afterEach(() => fx.dispose())
  afterAll(stopAll)

  it("SIGKILL under traffic, restart on the same port: local delivery never pauses, publish rejects typed, cross-instance resumes by itself", async () => {
    const server = await startRedis()
    fx.defer(() => server.stop())
    const channel = unique("ssekify:bus:kill")
    const options = { redis: server.url, channel, autoFields: { timestamp: false as const } }
    const a = await fx.node("A", options)
    const b = await fx.node("B", options)
    await Promise.all([a.sse.ready(), b.sse.ready()])
    const carolA = await a.open("carol") // local to the publisher
    const carolB = await b.open("carol") // across Redis
    const atA = arrivals(carolA)
    const atB = arrivals(carolB)

    // two loops on A: a local send every 20 ms, a publish to carol every 50 ms
    let stop = false
    const outcomes: Array<{ i: number; at: number; ms: number; error?: unknown }> = []
    const localLoop = (async () => {
      for (let i = 0; !stop && i < 5_000; i++) {
        a.sse.sendToUser("carol", { from: "local", i })
        await sleep(20)
      }
    })()
    const publishLoop = (async () => {
      for (let i = 0; !stop && i < 2_000; i++) {
        const at = Date.now()
        try {
          await a.sse.publish({ from: "bus", i }, "carol")
          outcomes.push({ i, at, ms: Date.now() - at })
        } catch (error) {
          outcomes.push({ i, at, ms: Date.now() - at, error })
        }
        await sleep(50)
      }
    })()
    try {
      await until(() => atB.filter((x) => x.from === "bus").length >= 10, 5_000, "traffic across Redis before the kill")
      const killedAt = Date.now()
      await server.kill()
      await until(() => outcomes.filter((o) => o.at >= killedAt && o.error !== undefined).length >= 3, 10_000, "3 failed publishes while Redis is down")
      const restartedAt = Date.now()
      await server.restart()
      const firstAfterRestart = outcomes.length
      await until(() => atB.some((x) => x.from === "bus" && x.i >= firstAfterRestart), 5_000, "a message published after the restart to cross")
      const resumedAt = atB.find((x) => x.from === "bus" && x.i >= firstAfterRestart)!.t
      await sleep(200) // a little traffic after the resume
      stop = true
      await Promise.all([localLoop, publishLoop])

      const failed = outcomes.filter((o) => o.error !== undefined)
      const local = atA.filter((x) => x.from === "local")
      const localDuringOutage = local.filter((x) => x.t > killedAt && x.t < resumedAt)
      const report = {
        outageMs: restartedAt - killedAt,
        resumeAfterRestartMs: resumedAt - restartedAt,
        publishes: outcomes.length,
        publishesRejected: failed.length,
        slowestRejectionMs: Math.max(...failed.map((o) => o.ms)),
        localFramesDuringOutage: localDuringOutage.length,
        longestLocalGapDuringOutageMs: longestGap(local.map((x) => x.t), killedAt, resumedAt),
        longestLocalGapBeforeKillMs: longestGap(local.map((x) => x.t), 0, killedAt),
        errorEventsA: a.events.error.length,
        errorEventsB: b.events.error.length
      }
      console.log("[faults] SIGKILL/restart:", JSON.stringify(report))

      // cross-instance delivery came back by itself, within 5 s of the restart
      expect(report.resumeAfterRestartMs).toBeLessThan(5_000)
      // local delivery never paused: frames kept coming every ~20 ms through the outage. A
      // send that waited for Redis would pause for the offline timeout (1 s) or stop; the
      // bound leaves room for scheduling noise on a loaded 2-core machine (measured: 40-140 ms)
      expect(report.longestLocalGapDuringOutageMs).toBeLessThan(500)
      expect(localDuringOutage.length).toBeGreaterThan((resumedAt - killedAt) / 20 / 2)
      // every local send arrived, in order, exactly once
      expect(local.map((x) => x.i)).toEqual(local.map((_, i) => i))
      // publish delivered locally even when it rejected: carol@A got every publish
      const busAtA = atA.filter((x) => x.from === "bus").map((x) => x.i)
      expect(busAtA).toEqual(outcomes.map((o) => o.i))
      // each rejection: a TransportError of the publish, fast, and an 'error' event on A
      for (const o of failed) {
        expect(o.error).toBeInstanceOf(TransportError)
        expect((o.error as TransportError).operation).toBe("publish")
        expect((o.error as TransportError).code).toBe("TRANSPORT_ERROR")
      }
      expect(report.slowestRejectionMs).toBeLessThan(1_500)
      for (const o of failed) expect(a.events.error).toContain(o.error)
      expect(a.events.error.every((e: unknown) => e instanceof TransportError)).toBe(true)
      // B heard of the lost subscription connection
      expect(b.events.error.length).toBeGreaterThan(0)
      expect(b.events.error.every((e: unknown) => e instanceof TransportError)).toBe(true)
      // across Redis: no duplicate, no reordering, and no rejected publish arrived late
      const busAtB = atB.filter((x) => x.from === "bus").map((x) => x.i)
      for (let i = 1; i < busAtB.length; i++) expect(busAtB[i]!).toBeGreaterThan(busAtB[i - 1]!)
      const rejected = new Set(failed.map((o) => o.i))
      expect(busAtB.filter((i) => rejected.has(i))).toEqual([])
      expect(carolA.isEnded()).toBe(false)
      expect(carolB.isEnded()).toBe(false)
    } finally {
      stop = true
      await Promise.all([localLoop, publishLoop])
    }
  }, 40_000)

  it("Redis down when the instances are made: they work locally, and cross-instance delivery starts when Redis comes", async () => {
    const port = await freePort()
    const channel = unique("ssekify:bus:late")
    const options = { redis: `redis://127.0.0.1:${port}`, channel, autoFields: { timestamp: false as const } }
    const made = Date.now()
    const a = await fx.node("A", options)
    const b = await fx.node("B", options)
    expect(Date.now() - made).toBeLessThan(1_000) // the constructor does not wait for Redis
    const aliceA = await a.open("alice")
    const aliceB = await b.open("alice")

    // local delivery at once
    expect(a.sse.sendToUser("alice", { from: "local", i: 0 })).toBe(1)
    await aliceA.waitFor((c) => c.messages().length === 1)
    // ready() waits for the subscription, at most its timeout, and never rejects
    const readyStart = Date.now()
    await a.sse.ready()
    const readyMs = Date.now() - readyStart
    expect(a.events.error.some((e: TransportError) => e instanceof TransportError && e.operation === "subscribe")).toBe(true)
    // publish: local delivery, then a typed rejection
    await expect(a.sse.publish({ from: "bus", i: -1 }, "alice")).rejects.toBeInstanceOf(TransportError)
    await aliceA.waitFor((c) => c.messages().length === 2)
    expect(aliceB.messages()).toEqual([])

    const server = await startRedis({ port })
    fx.defer(() => server.stop())
    const upAt = Date.now()
    // Pub/Sub keeps nothing: what is published before B's subscription is back is lost.
    // Publish every 50 ms, as traffic would, until one crosses (bounded).
    const ok: Array<number> = []
    let i = 0
    while (!aliceB.messages().some((m) => m.data.includes('"from":"bus"')) && Date.now() - upAt < 5_000) {
      try {
        await a.sse.publish({ from: "bus", i }, "alice")
        ok.push(i)
      } catch (error) {
        expect(error).toBeInstanceOf(TransportError)
      }
      i++
      await sleep(50)
    }
    await aliceB.waitFor((c) => c.messages().length >= 1, 1_000, "a message across Redis")
    const crossedAt = Date.now()
    console.log("[faults] down at start:", JSON.stringify({ readyMs, firstCrossAfterRedisUpMs: crossedAt - upAt, publishes: i, succeeded: ok.length }))
    expect(crossedAt - upAt).toBeLessThan(5_000)
    // what crossed was published successfully, and in order
    const crossed = aliceB.messages().map((m) => (JSON.parse(m.data) as { i: number }).i)
    for (const n of crossed) expect(ok).toContain(n)
    // from now on every publish crosses
    await b.sse.publish({ from: "B", i: 1000 }, "alice")
    await aliceA.waitFor((c) => c.messages().some((m) => m.data.includes('"from":"B"')), 5_000, "B's publish at A")
    expect(a.events.error.every((e: unknown) => e instanceof TransportError)).toBe(true)
  }, 30_000)
})
