/**
 * `SSEKify` instances behind Redis Sentinel (a master, a replica, 3 sentinels), made the
 * README's way: `createIORedisAdapter({ sentinels, name })`. Messages cross; the master is
 * SIGKILLed under traffic: local delivery goes on, and cross-instance delivery resumes
 * by itself on the promoted replica within 10 s; the global seq works on the new master.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest"
import { createIORedisAdapter, TransportError } from "../../src/index.js"
import { type RedisSentinel, redisAvailable, startSentinel, stopAll } from "../support/redisServer.js"
import { Fixture, type Node, sleep, step, unique, until, waitFrames } from "./support.js"

describe.skipIf(!redisAvailable())("SSEKify instances behind Redis Sentinel", () => {
  let set: RedisSentinel
  const fx = new Fixture()
  beforeAll(async () => {
    set = await startSentinel()
  }, 60_000)
  afterEach(() => fx.dispose())
  afterAll(stopAll)

  it("messages cross; SIGKILL the master under traffic: local delivery goes on, cross-instance delivery resumes within 10 s", async () => {
    const channel = unique("ssekify:bus:sentinel")
    const options = () => ({
      redis: createIORedisAdapter({ sentinels: set.sentinelAddresses.slice(), name: set.name }),
      channel,
      autoFields: { timestamp: false as const }
    })
    const a = await fx.node("A", options())
    const b = await fx.node("B", options())
    await Promise.all([a.sse.ready(), b.sse.ready()])
    const aliceA = await a.open("alice", { rooms: ["r"] })
    const aliceB = await b.open("alice", { rooms: ["r"] })
    await step(() => a.sse.publish({ n: 1 }, "alice"), [aliceA, 1], [aliceB, 1])
    await step(() => b.sse.publishToRoom("r", { n: 2 }), [aliceA, 2], [aliceB, 2])
    await step(() => a.sse.publish({ n: 3 }), [aliceA, 3], [aliceB, 3])
    expect(aliceB.messages().map((m) => m.data)).toEqual(['{"n":1}', '{"n":2}', '{"n":3}'])

    // traffic: A publishes to bob every 50 ms; bob is on A (local) and on B (across Redis)
    const bobA = await a.open("bob")
    const bobB = await b.open("bob")
    const times = new Map<number, number>()
    bobB.response.on("data", () => {
      for (const m of bobB.messages()) {
        const i = (JSON.parse(m.data) as { i: number }).i
        if (!times.has(i)) times.set(i, Date.now())
      }
    })
    const sent: Array<{ i: number; at: number; ok: boolean; error?: unknown }> = []
    let stop = false
    const loop = (async () => {
      for (let i = 0; !stop && i < 1_000; i++) {
        const at = Date.now()
        try {
          await a.sse.publish({ i }, "bob")
          sent.push({ i, at, ok: true })
        } catch (error) {
          sent.push({ i, at, ok: false, error })
        }
        await sleep(50)
      }
    })()
    try {
      await until(() => times.size >= 5, 5_000, "traffic before the kill")
      expect(await set.currentMasterPort()).toBe(set.master.port)
      const killedAt = Date.now()
      await set.master.kill()
      const firstAfterKill = sent.length
      await until(() => [...times.keys()].some((i) => i >= firstAfterKill), 10_000, "a message published after the kill to cross")
      const resumedAt = Math.min(...[...times.entries()].filter(([i]) => i >= firstAfterKill).map(([, t]) => t))
      stop = true
      await loop
      const newMaster = await set.currentMasterPort()
      const report = {
        resumeAfterKillMs: resumedAt - killedAt,
        publishes: sent.length,
        rejected: sent.filter((s) => !s.ok).length,
        newMaster,
        oldMaster: set.master.port
      }
      console.log("[sentinel] failover:", JSON.stringify(report))
      expect(newMaster).toBe(set.replica.port)
      expect(report.resumeAfterKillMs).toBeLessThan(10_000)
      // local delivery never stopped: bob on A got every publish, rejected or not
      await waitFrames(bobA, sent.length, "every publish at bob on A")
      expect(bobA.messages().map((m) => (JSON.parse(m.data) as { i: number }).i)).toEqual(sent.map((s) => s.i))
      for (const s of sent.filter((x) => !x.ok)) expect(s.error).toBeInstanceOf(TransportError)
      // across Redis: in order, no duplicate
      const crossed = bobB.messages().map((m) => (JSON.parse(m.data) as { i: number }).i)
      for (let i = 1; i < crossed.length; i++) expect(crossed[i]!).toBeGreaterThan(crossed[i - 1]!)
      // the new master carries messages both ways and the global seq
      const requestId = unique("after-failover")
      await step(() => b.sse.publish({ requestId }, "alice"), [aliceA, 4], [aliceB, 4])
      await step(() => a.sse.publish({ requestId }, "alice"), [aliceA, 5], [aliceB, 5])
      const seqs = (c: typeof aliceA) => c.messages().slice(3).map((m) => (JSON.parse(m.data) as { seq: number }).seq)
      expect(seqs(aliceA)).toEqual([0, 1])
      expect(seqs(aliceB)).toEqual([0, 1])
      expect(a.sse.stats().lastSeqKvFallbackAt).toBe(0)
      for (const n of [a, b] as Array<Node>) expect(n.events.error.every((e: unknown) => e instanceof TransportError)).toBe(true)
    } finally {
      stop = true
      await loop
    }
  }, 40_000)
})
