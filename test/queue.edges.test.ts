/**
 * The write queue's edges on real sockets (issue 12, item 1): a connection whose socket
 * is blocked (its last `write()` returned false) and then gets a frame that does not fit
 * its queue on its own (larger than `maxQueueBytes`, or `maxQueueItems: 0`). Whatever the
 * policy: nothing throws out of a send, the drop or the disconnect is reported, and the
 * other connections of the same delivery (a broadcast, a user's other tabs) get the frame.
 *
 * A "stalled" client here is a raw TCP socket that sends its request and never reads.
 */
import * as net from "node:net"
import { afterEach, describe, expect, it } from "vitest"
import { type DropPolicy, SSEKify } from "../src/index.js"
import { connect, type RawClient, startServer, until } from "./support/sse.js"

const KiB = 1024

let cleanup: Array<() => Promise<void> | void> = []
afterEach(async () => {
  for (const f of cleanup.reverse()) await f()
  cleanup = []
})

/** A client that sends its request and never reads a byte of the response. */
const stalledClient = (port: number, path: string): net.Socket => {
  const socket = net.connect(port, "127.0.0.1")
  socket.pause()
  socket.on("error", () => {})
  socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n`)
  cleanup.push(() => void socket.destroy())
  return socket
}

interface Drop {
  readonly userId: string
  readonly policy: string
  readonly frames: number
}

const setup = async () => {
  const sse = new SSEKify({ keepAliveMs: 0, autoFields: { timestamp: false }, serializer: (d) => String(d) })
  const server = await startServer((req, res) => {
    const q = new URL(req.url ?? "/", "http://x").searchParams
    const policy = q.get("policy") as DropPolicy | null
    const maxBytes = q.get("maxBytes")
    const maxItems = q.get("maxItems")
    sse.registerConnection(q.get("u") ?? "guest", res, {
      ...(policy !== null ? { dropPolicy: policy } : {}),
      ...(maxBytes !== null ? { maxQueueBytes: Number(maxBytes) } : {}),
      ...(maxItems !== null ? { maxQueueItems: Number(maxItems) } : {})
    })
  })
  cleanup.push(() => server.close(), () => sse.shutdown({ announce: false, graceMs: 0 }))
  const drops: Array<Drop> = []
  const errors: Array<{ code?: string }> = []
  sse.on("drop", (d) => drops.push({ userId: d.userId, policy: d.policy, frames: d.frames }))
  sse.on("error", (e) => errors.push(e as { code?: string }))
  const healthy = async (path: string): Promise<RawClient> => {
    const c = await connect(`${server.url}${path}`)
    cleanup.push(() => c.close())
    await c.waitFor((x) => x.text().includes("retry:"))
    return c
  }
  return { sse, server, drops, errors, healthy }
}

const big = (tag: string, bytes: number) => tag + ":" + "x".repeat(bytes - tag.length - 1)
const tags = (c: RawClient) => c.messages().map((m) => m.data.split(":")[0])

describe("write queue edges (real sockets)", () => {
  it("two 300 KB sendToUser in one tick under the defaults: the second is a reported drop, nothing throws", async () => {
    const { drops, healthy, sse } = await setup()
    const c = await healthy("/?u=fast")
    // the first write (300 KB) returns false: the connection waits for 'drain'; the
    // second frame is larger than maxQueueBytes (256 KiB) on its own
    let results: Array<number> = []
    expect(() => {
      results = [sse.sendToUser("fast", big("a", 300 * KiB)), sse.sendToUser("fast", big("b", 300 * KiB))]
    }).not.toThrow()
    expect(results).toEqual([1, 0])
    expect(sse.stats().droppedNewest).toBe(1)
    await until(() => drops.length > 0, 5_000, "the drop event")
    expect(drops).toEqual([{ userId: "fast", policy: "newest", frames: 1 }])
    // the connection still works: the first frame and a later one arrive, in order
    expect(sse.sendToUser("fast", "c:after")).toBe(1)
    await c.waitFor((x) => tags(x).includes("c"), 10_000, "the later frame")
    expect(tags(c)).toEqual(["a", "c"])
    expect(c.messages()[0]!.data.length).toBe(300 * KiB)
  })

  for (const policy of ["oldest", "newest"] as const) {
    it(`'${policy}': a broadcast goes on past a blocked connection that cannot queue the frame`, async () => {
      const { drops, errors, healthy, server, sse } = await setup()
      // registered first, so the broadcast reaches it first
      stalledClient(server.port, `/?u=stalled&policy=${policy}&maxBytes=${64 * KiB}`)
      await until(() => sse.isUserOnline("stalled"), 5_000, "the stalled client registered")
      const other = await healthy(`/?u=other&policy=${policy}`)
      // blocks the stalled connection (a 300 KB write returns false)
      expect(sse.sendToUser("stalled", big("block", 300 * KiB))).toBe(1)
      let delivered = -1
      expect(() => (delivered = sse.sendToAll(big("wide", 100 * KiB)))).not.toThrow()
      expect(delivered).toBe(1)
      await other.waitFor((x) => tags(x).includes("wide"), 10_000, "the broadcast on the other connection")
      await until(() => drops.length > 0, 5_000, "the drop event")
      expect(drops).toEqual([{ userId: "stalled", policy: "newest", frames: 1 }])
      expect(sse.stats().droppedNewest).toBe(1)
      expect(errors).toEqual([])
      expect(sse.isUserOnline("stalled")).toBe(true)
    })
  }

  it("'disconnect': a user's other connection still gets the frame that disconnected the first", async () => {
    const { errors, healthy, server, sse } = await setup()
    stalledClient(server.port, `/?u=u&policy=disconnect&maxBytes=${64 * KiB}`)
    await until(() => sse.isUserOnline("u"), 5_000, "the stalled client registered")
    const second = await healthy("/?u=u&policy=disconnect")
    expect(sse.sendToUser("u", big("block", 300 * KiB))).toBe(2)
    let delivered = -1
    expect(() => (delivered = sse.sendToUser("u", big("next", 100 * KiB)))).not.toThrow()
    // the stalled connection is disconnected (one frame too large for its queue); the
    // second connection of the same user must not be skipped
    expect(delivered).toBe(1)
    expect(errors.map((e) => e.code)).toEqual(["BACKPRESSURE_DISCONNECT"])
    expect(sse.stats().disconnectedByBackpressure).toBe(1)
    expect(sse.stats().connections).toBe(1)
    await second.waitFor((x) => tags(x).includes("next"), 10_000, "the frame on the second connection")
    expect(tags(second)).toEqual(["block", "next"])
  })

  it("'oldest', a user's two connections: the blocked one drops, the other gets the frame", async () => {
    const { drops, healthy, server, sse } = await setup()
    stalledClient(server.port, `/?u=u&maxBytes=${64 * KiB}`)
    await until(() => sse.isUserOnline("u"), 5_000, "the stalled client registered")
    const second = await healthy("/?u=u")
    expect(sse.sendToUser("u", big("block", 300 * KiB))).toBe(2)
    let delivered = -1
    expect(() => (delivered = sse.sendToUser("u", big("next", 100 * KiB)))).not.toThrow()
    expect(delivered).toBe(1)
    await second.waitFor((x) => tags(x).includes("next"), 10_000, "the frame on the second connection")
    await until(() => drops.length > 0, 5_000, "the drop event")
    expect(drops).toEqual([{ userId: "u", policy: "newest", frames: 1 }])
  })

  it("maxQueueItems: 0 under 'oldest': a blocked connection drops every frame and reports it", async () => {
    const { drops, server, sse } = await setup()
    stalledClient(server.port, "/?u=zero&maxItems=0")
    await until(() => sse.isUserOnline("zero"), 5_000, "the stalled client registered")
    expect(sse.sendToUser("zero", big("block", 300 * KiB))).toBe(1)
    let results: Array<number> = []
    expect(() => (results = [sse.sendToUser("zero", "small-1"), sse.sendToUser("zero", "small-2")])).not.toThrow()
    expect(results).toEqual([0, 0])
    expect(sse.stats().queueItemsMax).toBe(0)
    await until(() => drops.length > 0, 5_000, "the drop event")
    expect(drops).toEqual([{ userId: "zero", policy: "newest", frames: 2 }])
  })

  it("publish rejects nothing and reaches the next connection when one cannot queue the frame", async () => {
    const { drops, healthy, server, sse } = await setup()
    stalledClient(server.port, `/?u=stalled&maxBytes=${64 * KiB}`)
    await until(() => sse.isUserOnline("stalled"), 5_000, "the stalled client registered")
    const other = await healthy("/?u=other")
    expect(sse.sendToUser("stalled", big("block", 300 * KiB))).toBe(1)
    await expect(sse.publish(big("pub", 100 * KiB))).resolves.toBeUndefined()
    await other.waitFor((x) => tags(x).includes("pub"), 10_000, "the published frame")
    await until(() => drops.length > 0, 5_000, "the drop event")
    expect(drops).toEqual([{ userId: "stalled", policy: "newest", frames: 1 }])
  })
})
