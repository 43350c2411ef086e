/**
 * Client semantics with the `eventsource` package (the WHATWG EventSource for Node):
 * named events, ids, reconnection with `Last-Event-ID` and replay.
 */
import { EventSource } from "eventsource"
import type { Socket } from "node:net"
import { afterEach, describe, expect, it } from "vitest"
import { SSEKify } from "../src/index.js"
import { startServer, until } from "./support/sse.js"

let cleanup: Array<() => Promise<void> | void> = []
afterEach(async () => {
  for (const f of cleanup.reverse()) await f()
  cleanup = []
})

const setup = async (sse: SSEKify) => {
  const sockets = new Map<string, Array<Socket>>()
  const server = await startServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://x")
    const userId = url.searchParams.get("userId") ?? "guest"
    sockets.set(userId, [...(sockets.get(userId) ?? []), req.socket])
    sse.registerConnection(userId, res, { rooms: ["global"] })
  })
  /** Destroys a user's sockets abruptly, as a network failure would. */
  const destroy = (userId: string) => {
    for (const socket of sockets.get(userId) ?? []) socket.destroy()
    sockets.delete(userId)
  }
  cleanup.push(() => server.close(), () => sse.shutdown({ announce: false, graceMs: 0 }))
  const open = (query: string) => {
    const es = new EventSource(`${server.url}/sse${query}`)
    cleanup.push(() => es.close())
    return es
  }
  return { server, open, destroy }
}

describe("EventSource client", () => {
  it("receives named events, default messages and ids", async () => {
    const sse = new SSEKify({ keepAliveMs: 50, autoFields: { timestamp: false } })
    const { open } = await setup(sse)
    const es = open("?userId=alice")
    const got: Array<[string, string, string]> = []
    es.addEventListener("notify", (e) => got.push(["notify", e.data, e.lastEventId]))
    es.addEventListener("broadcast", (e) => got.push(["broadcast", e.data, e.lastEventId]))
    es.onmessage = (e) => got.push(["message", e.data, e.lastEventId])
    await until(() => sse.isUserOnline("alice"))
    sse.sendToUser("alice", { n: 1 }, { event: "notify", id: "a1" })
    sse.sendToAll({ n: 2 }, { event: "broadcast" })
    sse.sendToRoom("global", { n: 3 }, { id: "a3" })
    await until(() => got.length === 3)
    expect(got.map(([type, data]) => [type, data])).toEqual([
      ["notify", '{"n":1}'],
      ["broadcast", '{"n":2}'],
      ["message", '{"n":3}']
    ])
    // (the eventsource package does not carry the last id over to frames without one,
    // unlike browsers; only frames with an id are compared)
    expect([got[0]![2], got[2]![2]]).toEqual(["a1", "a3"])
  })

  it("reconnects after the server closes the connection and replays what it missed", async () => {
    const sse = new SSEKify({ keepAliveMs: 0, retryMs: 50, autoFields: { timestamp: false } })
    const { destroy, open } = await setup(sse)
    const es = open("?userId=bob")
    const got: Array<string> = []
    es.onmessage = (e) => got.push(e.data)
    await until(() => sse.isUserOnline("bob"))
    for (let i = 1; i <= 3; i++) sse.sendToUser("bob", i, { id: String(i) })
    await until(() => got.length === 3)
    // Frames 4 and 5 are recorded but never written: the socket dies before the flush.
    sse.sendToUser("bob", 4, { id: "4" })
    sse.sendToUser("bob", 5, { id: "5" })
    destroy("bob")
    await until(() => got.length === 5, 5_000, "replayed frames")
    expect(got).toEqual(["1", "2", "3", "4", "5"])
    expect(sse.stats().replayed).toBe(2)
    sse.sendToUser("bob", 6, { id: "6" })
    await until(() => got.length === 6)
    expect(got.at(-1)).toBe("6")
  })
})

