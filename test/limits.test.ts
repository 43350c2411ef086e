/**
 * Limits (connections per user and per instance, rooms per connection, name lengths)
 * and signed bus messages, over real sockets.
 */
import { afterEach, describe, expect, it } from "vitest"
import { createMemoryBus, SSEKify, type SSEKifyOptions } from "../src/index.js"
import { connect, type RawClient, request, startServer } from "./support/sse.js"

let cleanup: Array<() => Promise<void> | void> = []
afterEach(async () => {
  for (const f of cleanup.reverse()) await f()
  cleanup = []
})

type Handle = ReturnType<SSEKify["registerConnection"]>

const setup = async (options?: SSEKifyOptions) => {
  const sse = new SSEKify({ keepAliveMs: 0, autoFields: { timestamp: false }, ...options })
  const handles: Array<Handle> = []
  const server = await startServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://x")
    handles.push(sse.registerConnection(url.searchParams.get("u") ?? "guest", res, { rooms: url.searchParams.getAll("room") }))
  })
  cleanup.push(() => server.close(), () => sse.shutdown({ announce: false, graceMs: 0 }))
  const errors: Array<Error & { code?: string; limit?: string; field?: string }> = []
  sse.on("error", (e) => errors.push(e as never))
  const open = async (query: string): Promise<RawClient> => {
    const c = await connect(`${server.url}/${query}`)
    cleanup.push(() => c.close())
    await c.waitFor((x) => x.text().includes("retry:"))
    return c
  }
  return { sse, server, handles, errors, open }
}

describe("connection limits", () => {
  it("maxConnectionsPerUser 'reject' answers 429 and keeps the existing ones", async () => {
    const { errors, open, server, sse } = await setup({ maxConnectionsPerUser: 2 })
    await open("?u=alice")
    await open("?u=alice")
    const third = await request(`${server.url}/?u=alice`)
    expect(third.status).toBe(429)
    expect(errors.map((e) => [e.code, e.limit])).toEqual([["LIMIT_EXCEEDED", "maxConnectionsPerUser"]])
    expect(sse.getUserConnectionCount("alice")).toBe(2)
    await open("?u=bob")
    expect(sse.getUserConnectionCount("bob")).toBe(1)
  })

  it("maxConnectionsPerUser 'closeOldest' ends the user's oldest connection", async () => {
    const { open, sse } = await setup({ maxConnectionsPerUser: 2, connectionLimitPolicy: "closeOldest" })
    const first = await open("?u=alice")
    const second = await open("?u=alice")
    const third = await open("?u=alice")
    await first.ended()
    expect(second.isEnded()).toBe(false)
    expect(sse.getUserConnectionCount("alice")).toBe(2)
    expect(sse.sendToUser("alice", "x")).toBe(2)
    await third.waitFor((c) => c.messages().length === 1)
  })

  it("maxConnections answers 503 with Retry-After", async () => {
    const { errors, open, server } = await setup({ maxConnections: 2 })
    await open("?u=a")
    await open("?u=b")
    const refused = await request(`${server.url}/?u=c`)
    expect(refused.status).toBe(503)
    expect(refused.headers["retry-after"]).toBe("2")
    expect(errors.map((e) => e.limit)).toEqual(["maxConnections"])
  })

  it("maxRoomsPerConnection bounds joins; 10 000 join attempts cost only the limit", async () => {
    const { errors, handles, open, sse } = await setup({ maxRoomsPerConnection: 100 })
    const c = await open("?u=alice")
    const handle = handles[0]!
    let joined = 0
    for (let i = 0; i < 10_000; i++) if (handle.join(`room-${i}`)) joined++
    expect(joined).toBe(100)
    expect(sse.stats().rooms).toBe(100)
    expect(errors.length).toBe(9_900)
    expect(errors[0]).toMatchObject({ code: "LIMIT_EXCEEDED", limit: "maxRoomsPerConnection" })
    expect(handle.join("room-5")).toBe(true) // already a member
    expect(sse.sendToRoom("room-99", "hi")).toBe(1)
    await c.waitFor((x) => x.messages().length === 1)
  })

  it("over-long user ids, room names, event names and ids are refused with a clear error", async () => {
    const { errors, handles, open, server, sse } = await setup({ maxUserIdLength: 16, maxRoomNameLength: 8, maxEventNameLength: 8, maxIdLength: 8 })
    expect((await request(`${server.url}/?u=${"x".repeat(17)}`)).status).toBe(400)
    expect((await request(`${server.url}/?u=ok&room=${"r".repeat(9)}`)).status).toBe(400)
    const c = await open("?u=ok")
    const handle = handles.at(-1)!
    expect(handle.join("r".repeat(9))).toBe(false)
    expect(sse.sendToUser("ok", 1, { event: "e".repeat(9) })).toBe(0)
    expect(sse.sendToUser("ok", 1, { id: "1".repeat(9) })).toBe(0)
    expect(sse.sendToUser("x".repeat(17), 1)).toBe(0)
    expect(errors.map((e) => e.field)).toEqual(["userId", "options.rooms", "room", "opts.event", "opts.id", "userId"])
    expect(sse.sendToUser("ok", 1, { event: "e".repeat(8), id: "1".repeat(8) })).toBe(1)
    await c.waitFor((x) => x.messages().length === 1)
  })
})

describe("signed bus (busSecret)", () => {
  const secret = "0123456789abcdef-secret"

  const instance = async (bus: ReturnType<typeof createMemoryBus>, options?: SSEKifyOptions) => {
    const s = await setup({ redis: bus.adapter(), ...options })
    const client = await s.open("?u=alice")
    return { ...s, client }
  }

  it("instances with the same key exchange messages; others' and forged ones are dropped", async () => {
    const bus = createMemoryBus()
    const a = await instance(bus, { busSecret: secret })
    const b = await instance(bus, { busSecret: secret })
    const stranger = await instance(bus, { busSecret: "another-secret-key-xyz" })
    await a.sse.publish("signed", "alice")
    await b.client.waitFor((c) => c.messages().length === 1)
    expect(b.client.messages()[0]!.data).toBe('"signed"')
    expect(stranger.errors.map((e) => e.message)).toEqual(["bus_message_invalid: bad signature (busSecret)"])
    expect(stranger.client.messages()).toEqual([])

    // someone with access to the channel publishes unsigned and forged envelopes
    const forged = JSON.stringify({ type: "user", target: "alice", data: "evil", at: 1, origin: "x" })
    bus.publish("ssekify:bus", forged)
    bus.publish("ssekify:bus", forged.slice(0, -1) + ',"sig":"' + "0".repeat(64) + '"}')
    await a.sse.publish("original", "alice")
    expect(b.errors.map((e) => e.message)).toEqual([
      "bus_message_invalid: unsigned message on a signed bus (busSecret)",
      "bus_message_invalid: bad signature (busSecret)"
    ])
    await b.client.waitFor((c) => c.messages().length === 2)
    expect(b.client.messages().map((m) => m.data)).toEqual(['"signed"', '"original"'])
  })

  it("a tampered signed message is refused", async () => {
    const bus = createMemoryBus()
    const b = await instance(bus, { busSecret: secret })
    // capture a genuinely signed message from another bus, then alter its data
    const captured: Array<string> = []
    const tap = createMemoryBus()
    const tapped = new SSEKify({ busSecret: secret, redis: tap.adapter() })
    cleanup.push(() => tapped.shutdown({ announce: false, graceMs: 0 }))
    tap.subscribe("ssekify:bus", (m) => captured.push(m))
    await tapped.publish("pay 1", "alice")
    expect(captured).toHaveLength(1)
    bus.publish("ssekify:bus", captured[0]!.replace("pay 1", "pay 9"))
    bus.publish("ssekify:bus", captured[0]!)
    expect(b.errors.map((e) => e.message)).toEqual(["bus_message_invalid: bad signature (busSecret)"])
    await b.client.waitFor((c) => c.messages().length === 1)
    expect(b.client.messages()[0]!.data).toBe('"pay 1"')
  })

  it("without a key, signed messages are read and nothing is signed (0.1.6 compatible)", async () => {
    const bus = createMemoryBus()
    const signer = await instance(bus, { busSecret: secret })
    const plain = await instance(bus)
    const raw: Array<string> = []
    bus.subscribe("ssekify:bus", (m) => raw.push(m))
    await signer.sse.publish("from signer", "alice")
    await plain.sse.publish("from plain", "alice")
    await plain.client.waitFor((c) => c.messages().length === 2)
    expect(raw[0]).toMatch(/,"sig":"[0-9a-f]{64}"\}$/)
    expect(raw[1]).not.toContain('"sig"')
    expect(signer.errors.map((e) => e.message)).toEqual(["bus_message_invalid: unsigned message on a signed bus (busSecret)"])
  })

  it("a short key is refused at construction", () => {
    expect(() => new SSEKify({ busSecret: "short" })).toThrow(/busSecret/)
  })
})
