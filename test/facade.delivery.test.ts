/**
 * The documented single-instance behaviour of the facade, over real sockets:
 * headers, retry, frames, user / room / broadcast delivery, counts, events, stats.
 */
import type { ServerResponse } from "node:http"
import { afterEach, describe, expect, it } from "vitest"
import { SSEKify, type SSEKifyOptions } from "../src/index.js"
import { connect, type RawClient, startServer, type TestServer } from "./support/sse.js"

interface Fixture {
  readonly sse: SSEKify
  readonly server: TestServer
  open(userId: string, query?: string, headers?: Record<string, string>): Promise<RawClient>
}

const fixtures: Array<{ sse: SSEKify; server: TestServer; clients: Array<RawClient> }> = []

const setup = async (options?: SSEKifyOptions, register?: (sse: SSEKify, userId: string, res: ServerResponse, url: URL) => void): Promise<Fixture> => {
  const sse = new SSEKify({ keepAliveMs: 60_000, ...options })
  const server = await startServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://127.0.0.1")
    const userId = url.searchParams.get("userId") ?? "guest"
    if (register) register(sse, userId, res, url)
    else sse.registerConnection(userId, res, { rooms: url.searchParams.getAll("room") })
  })
  const entry = { sse, server, clients: [] as Array<RawClient> }
  fixtures.push(entry)
  return {
    sse,
    server,
    open: async (userId, query = "", headers) => {
      const client = await connect(`${server.url}/sse?userId=${encodeURIComponent(userId)}${query}`, headers ? { headers } : undefined)
      entry.clients.push(client)
      // the retry line is written at registration: the connection is registered
      await client.waitFor((c) => c.text().includes("retry:"), 5_000, "retry line")
      return client
    }
  }
}

afterEach(async () => {
  for (const f of fixtures.splice(0)) {
    for (const c of f.clients) c.close()
    await f.sse.shutdown({ announce: false, graceMs: 0 })
    await f.server.close()
  }
})

describe("connection", () => {
  it("sends the SSE headers and the retry line", async () => {
    const f = await setup({ retryMs: 2500 })
    const c = await f.open("alice")
    expect(c.status).toBe(200)
    expect(c.headers["content-type"]).toBe("text/event-stream; charset=utf-8")
    expect(c.headers["cache-control"]).toBe("no-cache, no-transform")
    expect(c.headers["connection"]).toBe("keep-alive")
    expect(c.headers["x-accel-buffering"]).toBe("no")
    expect(c.text()).toBe("retry: 2500\n\n")
  })

  it("adds options.headers and a per-connection retryMs", async () => {
    const f = await setup({}, (sse, userId, res) => {
      sse.registerConnection(userId, res, { headers: { "Access-Control-Allow-Origin": "*", "X-Custom": "1" }, retryMs: 100 })
    })
    const c = await f.open("bob")
    expect(c.headers["access-control-allow-origin"]).toBe("*")
    expect(c.headers["x-custom"]).toBe("1")
    expect(c.text()).toBe("retry: 100\n\n")
  })

  it("tolerates headers already sent by the application", async () => {
    const f = await setup({}, (sse, userId, res) => {
      res.writeHead(200, { "content-type": "text/event-stream", "x-early": "yes" })
      res.flushHeaders()
      sse.registerConnection(userId, res)
    })
    const c = await f.open("carol")
    expect(c.headers["x-early"]).toBe("yes")
    expect(f.sse.sendToUser("carol", { a: 1 }, { event: "e" })).toBe(1)
    await c.waitFor((x) => x.messages().length === 1)
    expect(c.messages()[0]).toMatchObject({ event: "e" })
  })

  it("returns a handle whose connId is listed and whose close ends the response", async () => {
    let handle: ReturnType<SSEKify["registerConnection"]> | undefined
    const f = await setup({}, (sse, userId, res) => {
      handle = sse.registerConnection(userId, res)
    })
    const c = await f.open("dave")
    expect(handle!.connId).toMatch(/.+/)
    expect(f.sse.getUserConnectionIds("dave")).toEqual([handle!.connId])
    f.sse.sendToUser("dave", "last words")
    handle!.close()
    await c.ended()
    expect(c.messages().map((m) => m.data)).toEqual(['"last words"'])
    expect(f.sse.getUserConnectionCount("dave")).toBe(0)
    handle!.close() // idempotent
  })

  it("removes a connection when the client goes away", async () => {
    const f = await setup()
    const disconnects: Array<unknown> = []
    f.sse.on("disconnect", (e) => disconnects.push(e))
    const c = await f.open("erin")
    expect(f.sse.isUserOnline("erin")).toBe(true)
    c.close()
    await new Promise<void>((resolve) => {
      const t = setInterval(() => {
        if (!f.sse.isUserOnline("erin")) {
          clearInterval(t)
          resolve()
        }
      }, 5)
    })
    expect(f.sse.stats()).toMatchObject({ connections: 0, users: 0 })
    expect(disconnects).toEqual([{ userId: "erin", connId: expect.any(String) }])
  })
})

describe("delivery", () => {
  it("writes event, id and data lines exactly", async () => {
    const f = await setup()
    const c = await f.open("alice")
    expect(f.sse.sendToUser("alice", { msg: "hi" }, { event: "notify", id: "42" })).toBe(1)
    await c.waitFor((x) => x.text().includes('"msg"'))
    const frame = c.text().split("\n\n")[1]
    expect(frame).toMatch(/^id: 42\nevent: notify\ndata: \{"msg":"hi","timestamp":"[^"]+"\}$/)
  })

  it("sendToUser reaches every connection of the user and nobody else", async () => {
    const f = await setup()
    const a1 = await f.open("alice")
    const a2 = await f.open("alice")
    const b = await f.open("bob")
    expect(f.sse.sendToUser("alice", "x")).toBe(2)
    await a1.waitFor((x) => x.messages().length === 1)
    await a2.waitFor((x) => x.messages().length === 1)
    expect(f.sse.sendToUser("nobody", "x")).toBe(0)
    expect(f.sse.sendToUser("bob", "y")).toBe(1)
    await b.waitFor((x) => x.messages().length === 1)
    expect(b.messages()[0]!.data).toBe('"y"')
  })

  it("sendToAll reaches every connection; sendToRoom the room's", async () => {
    const f = await setup()
    const a = await f.open("alice", "&room=r1&room=global")
    const b = await f.open("bob", "&room=global")
    const c = await f.open("carol")
    expect(f.sse.sendToAll({ n: 1 }, { event: "broadcast" })).toBe(3)
    expect(f.sse.sendToRoom("global", { n: 2 }, { event: "room" })).toBe(2)
    expect(f.sse.sendToRoom("r1", { n: 3 })).toBe(1)
    expect(f.sse.sendToRoom("empty", { n: 4 })).toBe(0)
    await a.waitFor((x) => x.messages().length === 3)
    await b.waitFor((x) => x.messages().length === 2)
    await c.waitFor((x) => x.messages().length === 1)
    expect(a.messages().map((m) => [m.event, JSON.parse(m.data).n])).toEqual([["broadcast", 1], ["room", 2], [undefined, 3]])
    expect(f.sse.stats()).toMatchObject({ connections: 3, users: 3, rooms: 2, sent: 6 })
  })

  it("join and leave change room membership", async () => {
    let handle: ReturnType<SSEKify["registerConnection"]> | undefined
    const f = await setup({}, (sse, userId, res) => {
      handle = sse.registerConnection(userId, res)
    })
    const c = await f.open("alice")
    expect(handle!.join("lobby")).toBe(true)
    expect(f.sse.sendToRoom("lobby", "in")).toBe(1)
    expect(handle!.leave("lobby")).toBe(true)
    expect(f.sse.sendToRoom("lobby", "out")).toBe(0)
    expect(f.sse.stats().rooms).toBe(0)
    await c.waitFor((x) => x.messages().length === 1)
    expect(c.messages()[0]!.data).toBe('"in"')
  })

  it("serializes once: every connection gets identical bytes", async () => {
    let calls = 0
    const sse = new SSEKify({
      keepAliveMs: 0,
      serializer: (d) => {
        calls++
        return JSON.stringify(d)
      }
    })
    const server = await startServer((req, res) => sse.registerConnection("u" + (req.url ?? ""), res, { rooms: ["all"] }))
    const clients = await Promise.all([1, 2, 3].map((i) => connect(`${server.url}/${i}`)))
    for (const c of clients) await c.waitFor((x) => x.text().includes("retry:"))
    expect(sse.sendToRoom("all", { big: "x".repeat(1000) }, { id: "1" })).toBe(3)
    expect(calls).toBe(1)
    for (const c of clients) await c.waitFor((x) => x.messages().length === 1)
    expect(new Set(clients.map((c) => c.text())).size).toBe(1)
    for (const c of clients) c.close()
    await sse.shutdown({ announce: false, graceMs: 0 })
    await server.close()
  })

  it("writes a tick's first frame at once and coalesces the rest of the tick into one write, in order", async () => {
    let res: ServerResponse | undefined
    const f = await setup({ autoFields: { timestamp: false } }, (sse, userId, r) => {
      res = r
      sse.registerConnection(userId, r)
    })
    const c = await f.open("alice")
    const writes: Array<number> = []
    const write = res!.write
    res!.write = function(this: ServerResponse, ...args: Parameters<typeof write>) {
      writes.push(Buffer.byteLength(args[0] as Uint8Array))
      return write.apply(this, args)
    } as typeof write
    // a lone frame is on the socket when the send returns: it waits for no tick
    f.sse.sendToUser("alice", -1)
    expect(writes).toEqual([Buffer.byteLength("data: -1\n\n")])
    await new Promise((resolve) => setImmediate(resolve))
    writes.length = 0
    for (let i = 0; i < 50; i++) f.sse.sendToUser("alice", i)
    expect(writes.length).toBe(1)
    await c.waitFor((x) => x.messages().length === 51)
    // the 49 frames after the tick's first left together, after it
    expect(writes.length).toBe(2)
    expect(c.messages().map((m) => Number(m.data))).toEqual(Array.from({ length: 51 }, (_, i) => i - 1))
  })

  it("multi-line data becomes several data lines; CR, LF and CRLF all split", async () => {
    const f = await setup({ serializer: (d) => String(d) })
    const c = await f.open("alice")
    f.sse.sendToUser("alice", "a\nb\r\nc\rd")
    await c.waitFor((x) => x.messages().length === 1)
    expect(c.text()).toContain("data: a\ndata: b\ndata: c\ndata: d\n\n")
    expect(c.messages()[0]!.data).toBe("a\nb\nc\nd")
  })

  it("a payload cannot inject id or event lines, nor can event / id values", async () => {
    const f = await setup({ serializer: (d) => String(d) })
    const c = await f.open("alice")
    const errors: Array<Error & { field?: string }> = []
    f.sse.on("error", (e) => errors.push(e as never))
    f.sse.sendToUser("alice", "x\rid: evil\revent: evil", { event: "ok\r\nid: 666", id: "7\nevent: bad\u0000" })
    await c.waitFor((x) => x.messages().length === 1)
    const [m] = c.messages()
    expect(m).toMatchObject({ id: "7 event: bad ", event: "ok  id: 666", data: "x\nid: evil\nevent: evil" })
    expect(c.text()).not.toMatch(/^id: evil/m)
    expect(c.text()).not.toMatch(/^event: evil/m)
    // delivered with the fields cleaned, and reported
    expect(errors.map((e) => e.field)).toEqual(["opts.event", "opts.id"])
  })
})

describe("events and stats", () => {
  it("emits connect, message-sent and disconnect with the original payloads", async () => {
    const f = await setup()
    const seen: Array<[string, unknown]> = []
    f.sse.on("connect", (e) => seen.push(["connect", { ...e, users: f.sse.getUserConnectionCount(e.userId) }]))
    f.sse.on("message-sent", (e) => seen.push(["message-sent", e]))
    f.sse.on("disconnect", (e) => seen.push(["disconnect", { ...e, users: f.sse.getUserConnectionCount(e.userId) }]))
    const c = await f.open("alice", "&room=r")
    f.sse.sendToUser("alice", 1)
    f.sse.sendToAll(2)
    f.sse.sendToRoom("r", 3)
    f.sse.sendToUser("ghost", 4)
    f.sse.close("alice")
    await c.ended()
    expect(seen).toEqual([
      ["connect", { userId: "alice", connId: expect.any(String), users: 1 }],
      ["message-sent", { scope: "user", userId: "alice", count: 1 }],
      ["message-sent", { scope: "all", count: 1 }],
      ["message-sent", { scope: "room", room: "r", count: 1 }],
      ["disconnect", { userId: "alice", connId: expect.any(String), users: 0 }]
    ])
  })

  it("stats has every field of the original", async () => {
    const f = await setup()
    expect(Object.keys(f.sse.stats())).toEqual(expect.arrayContaining([
      "connections",
      "users",
      "rooms",
      "sent",
      "droppedOldest",
      "droppedNewest",
      "disconnectedByBackpressure",
      "queueItemsMax",
      "queueBytesMax",
      "errorCount",
      "seqIncrsLocal",
      "seqIncrsRedis",
      "lastSeqKvFallbackAt"
    ]))
    expect(f.sse.stats()).toMatchObject({ connections: 0, sent: 0, errorCount: 0, lastSeqKvFallbackAt: 0 })
  })

  it("sent counts synchronously; errors the application emits count too", async () => {
    const f = await setup()
    await f.open("alice")
    expect(f.sse.sendToUser("alice", 1)).toBe(1)
    expect(f.sse.stats().sent).toBe(1)
    f.sse.emit("error", new Error("forwarded adapter error"))
    expect(f.sse.stats().errorCount).toBe(1)
  })

  it("user connection statistics", async () => {
    const f = await setup()
    await f.open("alice")
    await f.open("alice")
    await f.open("bob")
    expect(f.sse.getUserConnectionCount("alice")).toBe(2)
    expect(f.sse.getUserConnectionIds("alice")).toHaveLength(2)
    expect(f.sse.getAllUsersConnectionStats()).toEqual({ alice: 2, bob: 1 })
    expect(f.sse.isUserOnline("bob")).toBe(true)
    expect(f.sse.isUserOnline("zed")).toBe(false)
    expect(f.sse.getUserConnectionCount("")).toBe(0)
    expect(f.sse.getUserConnectionCount(undefined as unknown as string)).toBe(0)
    expect(f.sse.getUserConnectionIds(42 as unknown as string)).toEqual([])
  })

  it("close() without a user closes everything", async () => {
    const f = await setup()
    const a = await f.open("alice")
    const b = await f.open("bob")
    f.sse.close()
    await a.ended()
    await b.ended()
    expect(f.sse.stats().connections).toBe(0)
  })
})

describe("payload", () => {
  it("a circular object is skipped with an 'error' event; connections stay", async () => {
    const f = await setup()
    const c = await f.open("alice")
    const errors: Array<Error & { code?: string }> = []
    f.sse.on("error", (e) => errors.push(e as Error & { code?: string }))
    const circular: Record<string, unknown> = {}
    circular.self = circular
    expect(f.sse.sendToUser("alice", circular)).toBe(0)
    expect(f.sse.sendToAll(circular)).toBe(0)
    expect(errors).toHaveLength(2)
    expect(errors[0]!.code).toBe("SERIALIZE_FAILED")
    expect(errors[0]!.message).toMatch(/^serialize_failed: /)
    expect(f.sse.sendToUser("alice", "still here")).toBe(1)
    await c.waitFor((x) => x.messages().length === 1)
    expect(f.sse.stats()).toMatchObject({ errorCount: 2, sent: 1 })
  })

  it("an oversized payload is skipped with an 'error' event", async () => {
    const f = await setup({ maxPayloadBytes: 100 })
    const c = await f.open("alice")
    const errors: Array<Error & { code?: string }> = []
    f.sse.on("error", (e) => errors.push(e as Error & { code?: string }))
    expect(f.sse.sendToUser("alice", "é".repeat(60))).toBe(0) // 122 bytes serialized
    expect(errors[0]!.code).toBe("PAYLOAD_TOO_LARGE")
    expect(errors[0]!.message).toBe("payload_too_large: 122 > 100")
    expect(f.sse.sendToUser("alice", "é".repeat(40))).toBe(1) // 82 bytes
    await c.waitFor((x) => x.messages().length === 1)
  })

  it("a custom serializer is used", async () => {
    const f = await setup({ serializer: (d) => `<${String(d)}>` })
    const c = await f.open("alice")
    f.sse.sendToUser("alice", "x")
    await c.waitFor((x) => x.messages().length === 1)
    expect(c.messages()[0]!.data).toBe("<x>")
  })
})
