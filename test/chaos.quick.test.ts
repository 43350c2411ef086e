/**
 * The chaos scenarios of the soak suite in their quick form (`soak/run.ts --quick
 * --only=chaos`, about 20 s): browsers (`eventsource`) behind a TCP proxy of our own that
 * cuts every connection at a random moment while per-user frames with ids stream; they
 * reconnect by themselves with `Last-Event-ID`. Over one instance with memory replay,
 * and over two instances with `replay: 'redis'` (a real redis-server) with a third
 * publishing: 0 lost, 0 duplicated, 0 out of order (issue 12, item 10: a reconnect to
 * the other instance got the last replayed frame again as a live frame).
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { SSEKify } from "../src/index.js"
import { decodeItem, encodeItem } from "../src/internal/replayRedis.js"
import { redisAvailable, redisCli, startRedis, waitUntil } from "./support/redisServer.js"
import { runScript } from "./support/runScript.js"
import { connect, startServer } from "./support/sse.js"

interface Report {
  readonly quick: boolean
  readonly results: ReadonlyArray<{
    readonly scenario: string
    readonly ok: boolean
    readonly error?: string
    readonly figures: Record<string, unknown>
    readonly checks: ReadonlyArray<{ readonly name: string; readonly ok: boolean; readonly detail: string }>
  }>
}

describe("chaos --quick", () => {
  it("connections cut at random: every frame once and in order, over memory replay and over two instances with replay 'redis'", async () => {
    const out = path.join(os.tmpdir(), `ssekify-chaos-quick-${process.pid}.json`)
    const r = await runScript("soak/run.ts", ["--quick", "--only=chaos", `--out=${out}`], 100_000)
    const context = `exit ${String(r.code)}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr.slice(-4000)}`
    expect(fs.existsSync(out), context).toBe(true)
    const report = JSON.parse(fs.readFileSync(out, "utf8")) as Report
    fs.rmSync(out, { force: true })
    expect(report.quick).toBe(true)
    expect(report.results.map((x) => x.scenario), context).toEqual([
      "chaos: connections cut at random, one instance, memory replay",
      "chaos: connections cut at random, two instances, replay 'redis'"
    ])
    for (const result of report.results) {
      if (result.error?.startsWith("SKIPPED") === true) {
        expect(redisAvailable(), `${result.scenario}: ${result.error}`).toBe(false)
        continue
      }
      expect(result.error, `${result.scenario}\n${context}`).toBeUndefined()
      expect(result.checks.map((c) => c.name)).toEqual(expect.arrayContaining(["0 lost", "0 duplicated", "0 out of order"]))
      for (const check of result.checks) expect(check.ok, `${result.scenario}: ${check.name} ${check.detail}\n${context}`).toBe(true)
      expect(result.figures["lost / duplicated / out of order"]).toBe("0 / 0 / 0")
    }
    expect(r.code, context).toBe(0)
  }, 120_000)
})

describe("Redis replay items", () => {
  it("carry the order key (the score) with the id and the frame; items without it are still read", () => {
    const frame = Buffer.from("id: a/b:c\ndata: {\"x\":1}\n\n")
    const order = 1_765_000_000_000 * 1024 + 1023
    const item = encodeItem("a/b:c", frame, order)
    expect(Buffer.from(item).toString("latin1").startsWith(`${order}/5:a/b:c` + "id: ")).toBe(true)
    const decoded = decodeItem(item)!
    expect([decoded.id, Buffer.from(decoded.frame).toString(), decoded.order]).toEqual(["a/b:c", frame.toString(), order])
    // the 0.2.0-pre format, `<id length>:<id><frame>`: no order key
    const old = decodeItem(Buffer.concat([Buffer.from("5:a/b:c"), frame]))!
    expect([old.id, Buffer.from(old.frame).toString(), old.order]).toEqual(["a/b:c", frame.toString(), undefined])
    // an id with non-ASCII characters: its byte length
    expect(decodeItem(encodeItem("é:1", frame, 7))).toMatchObject({ id: "é:1", order: 7 })
    for (const bad of ["", ":x", "x:abc", "12/:x", "/3:abc", "1/99:abc", "1x/3:abc"]) expect(decodeItem(Buffer.from(bad)), bad).toBeUndefined()
  })
})

describe.skipIf(!redisAvailable())("replay 'redis': order keys", () => {
  it("a burst of 2 500 publishes (several in each millisecond, past 1 024) is replayed in publish order", async () => {
    const redis = await startRedis()
    const channel = `ssekify-chaos-order-${process.pid}`
    const sse = new SSEKify({ redis: redis.url, channel, replay: "redis", recentBufferSize: 3_000, keepAliveMs: 0, replayGapEvent: "gap", autoFields: { timestamp: false } })
    const server = await startServer((_req, res) => void sse.registerConnection("alice", res))
    try {
      await sse.ready()
      const total = 2_500
      const sends: Array<Promise<void>> = []
      // alice has no connection: the publisher records each frame in her sorted set
      for (let i = 1; i <= total; i++) sends.push(sse.publish({ i }, "alice", { id: String(i) }))
      await Promise.all(sends)
      await waitUntil("every frame recorded", async () => (await redisCli(redis.port, ["zcard", `${channel}:replay:{alice}`])).trim() === String(total), 10_000)
      const alice = await connect(`${server.url}/sse`, { headers: { "last-event-id": "1" } })
      await alice.waitFor((c) => c.messages().length >= total - 1, 10_000, "the replay")
      alice.close()
      const ids = alice.messages().map((m) => Number(m.id))
      expect(ids.length).toBe(total - 1)
      // (before: the order counter cycled through 1 024 values apart from the clock, and
      // the frames around its wrap within one millisecond swapped places in the set)
      expect(ids.findIndex((id, k) => id !== k + 2)).toBe(-1)
    } finally {
      await server.close()
      await sse.shutdown({ announce: false, graceMs: 0 })
      await redis.stop()
    }
  }, 60_000)
})
