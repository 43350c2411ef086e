/**
 * Backpressure with a client that really stops reading: the server's writes fill the
 * kernel buffers, `res.write` returns false, frames queue up to the limits and the
 * drop policy decides. When the client reads again it must get every frame that was
 * not dropped exactly once, in order.
 */
import { afterEach, describe, expect, it } from "vitest"
import { type DropPolicy, SSEKify } from "../src/index.js"
import { connect, numberedFrames, numberedPayload, sendPacedUntil, startServer, type TestServer, until } from "./support/sse.js"

const FRAME_BYTES = 16 * 1024
const MAX_FRAMES = 4_000 // 64 MiB at most: far beyond any loopback buffer

let cleanup: Array<() => Promise<void> | void> = []
/** The server side of each user's connection. */
const sockets = new Map<string, import("node:net").Socket>()
afterEach(async () => {
  for (const f of cleanup.reverse()) await f()
  cleanup = []
})

const setup = async (dropPolicy: DropPolicy, limits: { maxQueueItems?: number; maxQueueBytes?: number }) => {
  const sse = new SSEKify({ keepAliveMs: 0, autoFields: { timestamp: false }, serializer: (d) => String(d) })
  const server: TestServer = await startServer((req, res) => {
    const user = new URL(req.url ?? "/", "http://x").searchParams.get("u") ?? "slow"
    sockets.set(user, req.socket)
    sse.registerConnection(user, res, { dropPolicy, ...limits })
  })
  cleanup.push(() => server.close(), () => sse.shutdown({ announce: false, graceMs: 0 }))
  const slow = await connect(`${server.url}/?u=slow`)
  const healthy = await connect(`${server.url}/?u=healthy`)
  cleanup.push(() => slow.close(), () => healthy.close())
  await slow.waitFor((c) => c.text().includes("retry:"))
  await healthy.waitFor((c) => c.text().includes("retry:"))
  slow.response.pause()
  return { sse, slow, healthy }
}

const payload = (n: number) => numberedPayload(n, FRAME_BYTES)
const numbers = numberedFrames

const sendUntil = (sse: SSEKify, done: () => boolean): Promise<number> =>
  sendPacedUntil((payload) => sse.sendToAll(payload), done, MAX_FRAMES)

describe("backpressure", () => {
  it("'oldest' keeps the newest frames and counts the drops", async () => {
    const { healthy, slow, sse } = await setup("oldest", { maxQueueItems: 10 })
    const drops: Array<unknown> = []
    sse.on("drop", (e) => drops.push(e))
    const sent = await sendUntil(sse, () => sse.stats().droppedOldest >= 20)
    const stats = sse.stats()
    expect(stats.queueItemsMax).toBe(10)
    expect(drops.length).toBeGreaterThan(0)
    slow.response.resume()
    await slow.waitFor((c) => numbers(c).at(-1) === sent - 1, 10_000, "last frame")
    const got = numbers(slow)
    // in order, no duplicates, nothing but the dropped ones missing
    expect(got).toEqual([...got].sort((a, b) => a - b))
    expect(new Set(got).size).toBe(got.length)
    expect(got.length).toBe(sent - sse.stats().droppedOldest)
    // the newest 10 frames are all there
    expect(got.slice(-10)).toEqual(Array.from({ length: 10 }, (_, i) => sent - 10 + i))
    // the healthy client got everything
    await healthy.waitFor((c) => c.messages().length === sent, 10_000)
    expect(numbers(healthy)).toEqual(Array.from({ length: sent }, (_, i) => i))
    expect(sse.stats().connections).toBe(2)
  })

  it("'newest' keeps the queued frames and drops new ones", async () => {
    const frameBytes = Buffer.byteLength(`data: ${payload(0)}\n\n`)
    const { slow, sse } = await setup("newest", { maxQueueItems: 1000, maxQueueBytes: 5 * frameBytes + frameBytes - 1 })
    const sent = await sendUntil(sse, () => sse.stats().droppedNewest >= 20)
    // the byte limit binds: 5 frames fit, a 6th does not
    expect(sse.stats().queueItemsMax).toBe(5)
    expect(sse.stats().queueBytesMax).toBe(5 * frameBytes)
    slow.response.resume()
    const expected = sent - sse.stats().droppedNewest
    await slow.waitFor((c) => c.messages().length === expected, 10_000, `${expected} frames`)
    const got = numbers(slow)
    expect(got).toEqual(Array.from({ length: expected }, (_, i) => i))
    // the queue drains: new frames flow again
    sse.sendToUser("slow", payload(sent))
    await slow.waitFor((c) => numbers(c).at(-1) === sent)
  })

  it("'disconnect' closes the connection with an 'error' event", async () => {
    const { healthy, slow, sse } = await setup("disconnect", { maxQueueItems: 5 })
    const errors: Array<Error & { code?: string }> = []
    sse.on("error", (e) => errors.push(e as Error & { code?: string }))
    const sent = await sendUntil(sse, () => sse.stats().disconnectedByBackpressure === 1)
    expect(errors.map((e) => e.code)).toEqual(["BACKPRESSURE_DISCONNECT"])
    expect(errors[0]!.message).toMatch(/^backpressure: queue limit exceeded, disconnecting /)
    expect(sse.isUserOnline("slow")).toBe(false)
    expect(sse.isUserOnline("healthy")).toBe(true)
    // the response is ended; a client that does not read it is destroyed soon after,
    // rather than keeping the socket and its kernel buffers until it reads or times out
    await until(() => sockets.get("slow")!.destroyed, 5_000, "the stalled socket destroyed")
    slow.response.resume()
    await slow.ended(10_000)
    await healthy.waitFor((c) => c.messages().length === sent, 10_000)
  })

  it("an unpaced burst is bounded by the queue and drops are visible", async () => {
    const { healthy, sse } = await setup("oldest", { maxQueueItems: 100 })
    const drops: Array<{ userId: string; policy: string; frames: number }> = []
    sse.on("drop", (e) => drops.push(e))
    for (let i = 0; i < 2000; i++) sse.sendToUser("healthy", String(i).padStart(8, "0"))
    const { droppedOldest } = sse.stats()
    expect(droppedOldest).toBeGreaterThan(0)
    // one event for the burst, with the count (not one event per dropped frame)
    await until(() => drops.length > 0)
    expect(drops).toEqual([{ connId: expect.any(String), userId: "healthy", policy: "oldest", frames: droppedOldest }])
    await until(() => healthy.messages().length === 2000 - droppedOldest, 10_000, "burst delivered")
    const got = numbers(healthy)
    expect(got.length).toBe(2000 - droppedOldest)
    expect(got.at(-1)).toBe(1999)
    expect(got).toEqual([...got].sort((a, b) => a - b))
  })
})
