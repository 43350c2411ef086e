/**
 * Several instances in one process on the in-memory bus: publish / publishToRoom
 * cross instances as they would through Redis, each frame reaches each connection
 * exactly once, bad bus messages are reported and dropped.
 */
import { afterEach, describe, expect, it } from "vitest"
import { createMemoryBus, SSEKify, type SSEKifyOptions } from "../src/index.js"
import { connect, type RawClient, startServer } from "./support/sse.js"

let cleanup: Array<() => Promise<void> | void> = []
afterEach(async () => {
  for (const f of cleanup.reverse()) await f()
  cleanup = []
})

const instance = async (bus: ReturnType<typeof createMemoryBus>, options?: SSEKifyOptions) => {
  const sse = new SSEKify({ redis: bus.adapter(), keepAliveMs: 0, autoFields: { timestamp: false }, ...options })
  const server = await startServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://x")
    sse.registerConnection(url.searchParams.get("u") ?? "guest", res, { rooms: url.searchParams.getAll("room") })
  })
  cleanup.push(() => server.close(), () => sse.shutdown({ announce: false, graceMs: 0 }))
  const open = async (query: string): Promise<RawClient> => {
    const c = await connect(`${server.url}/${query}`)
    cleanup.push(() => c.close())
    await c.waitFor((x) => x.text().includes("retry:"))
    return c
  }
  return { sse, open }
}

describe("memory transport", () => {
  it("publish reaches a user on another instance exactly once", async () => {
    const bus = createMemoryBus()
    const a = await instance(bus)
    const b = await instance(bus)
    const onA = await a.open("?u=alice")
    const onB = await b.open("?u=alice")
    const publishes: Array<unknown> = []
    b.sse.on("publish", (env) => publishes.push(env))
    await a.sse.publish({ hello: 1 }, "alice", { event: "notify", id: "1" })
    await onA.waitFor((c) => c.messages().length === 1)
    await onB.waitFor((c) => c.messages().length === 1)
    expect(onB.messages()[0]).toMatchObject({ event: "notify", id: "1", data: '{"hello":1}' })
    expect(publishes).toEqual([
      { type: "user", target: "alice", data: { hello: 1 }, event: "notify", id: "1", at: expect.any(Number), origin: a.sse.instanceId }
    ])
    // A ignored its own message on the bus: still exactly one frame
    await a.sse.publish({ hello: 2 }, "alice")
    await onA.waitFor((c) => c.messages().length === 2)
    await onB.waitFor((c) => c.messages().length === 2)
    expect(onA.messages().map((m) => m.data)).toEqual(['{"hello":1}', '{"hello":2}'])
    expect(a.sse.stats()).toMatchObject({ published: 2, received: 0 })
    expect(b.sse.stats()).toMatchObject({ published: 0, received: 2 })
  })

  it("broadcast and rooms cross instances; sendTo* stay local", async () => {
    const bus = createMemoryBus()
    const a = await instance(bus)
    const b = await instance(bus)
    const c = await instance(bus)
    const clients = [await a.open("?u=x&room=r"), await b.open("?u=y&room=r"), await c.open("?u=z")]
    await b.sse.publish("all")
    await c.sse.publishToRoom("r", "room")
    expect(a.sse.sendToAll("local")).toBe(1)
    for (const cl of clients.slice(0, 2)) await cl.waitFor((x) => x.messages().length >= 2)
    await clients[2]!.waitFor((x) => x.messages().length === 1)
    expect(clients[0]!.messages().map((m) => m.data)).toEqual(['"all"', '"room"', '"local"'])
    expect(clients[1]!.messages().map((m) => m.data)).toEqual(['"all"', '"room"'])
    expect(clients[2]!.messages().map((m) => m.data)).toEqual(['"all"'])
  })

  it("a malformed bus message is reported and dropped; the subscription goes on", async () => {
    const bus = createMemoryBus()
    const a = await instance(bus)
    const cl = await a.open("?u=alice")
    const errors: Array<Error & { code?: string }> = []
    a.sse.on("error", (e) => errors.push(e as never))
    bus.publish("ssekify:bus", "not json")
    bus.publish("ssekify:bus", JSON.stringify({ type: "user", data: 1, at: 1 }))
    bus.publish("ssekify:bus", JSON.stringify({ type: "everyone", data: 1, at: 1 }))
    bus.publish("ssekify:bus", JSON.stringify({ type: "all", at: 1 }))
    bus.publish("ssekify:bus", JSON.stringify({ type: "user", target: "alice", data: { ok: true }, at: 1, origin: "old-instance" }))
    expect(errors.map((e) => e.code)).toEqual(Array(4).fill("BUS_MESSAGE_INVALID"))
    expect(errors[1]!.message).toContain("non-empty target")
    await cl.waitFor((c) => c.messages().length === 1)
    expect(cl.messages()[0]!.data).toBe('{"ok":true}')
  })

  it("instances on different channels do not see each other", async () => {
    const bus = createMemoryBus()
    const a = await instance(bus, { channel: "ssekify:bus:tenant:a" })
    const b = await instance(bus, { channel: "ssekify:bus:tenant:b" })
    const onB = await b.open("?u=alice")
    await a.sse.publish("for tenant a", "alice")
    await b.sse.publish("for tenant b", "alice")
    await onB.waitFor((c) => c.messages().length === 1)
    expect(onB.messages().map((m) => m.data)).toEqual(['"for tenant b"'])
  })

  it("tenants on different channels never share seq counters", async () => {
    const bus = createMemoryBus()
    const a = await instance(bus, { channel: "ssekify:bus:tenant:a" })
    const b = await instance(bus, { channel: "ssekify:bus:tenant:b" })
    const onA = await a.open("?u=alice")
    const onB = await b.open("?u=alice")
    for (let i = 0; i < 3; i++) {
      await a.sse.publish({ requestId: "same" }, "alice")
      await b.sse.publish({ requestId: "same" }, "alice")
    }
    await onA.waitFor((c) => c.messages().length === 3)
    await onB.waitFor((c) => c.messages().length === 3)
    expect(onA.messages().map((m) => JSON.parse(m.data).seq)).toEqual([0, 1, 2])
    expect(onB.messages().map((m) => JSON.parse(m.data).seq)).toEqual([0, 1, 2])
  })

  it("seq is global across instances sharing the bus's counters", async () => {
    const bus = createMemoryBus()
    const a = await instance(bus)
    const b = await instance(bus)
    const cl = await b.open("?u=alice")
    for (let i = 0; i < 3; i++) {
      await a.sse.publish({ requestId: "r1", phase: "progress" }, "alice")
      await b.sse.publish({ requestId: "r1", phase: "progress" }, "alice")
    }
    await cl.waitFor((c) => c.messages().length === 6)
    expect(cl.messages().map((m) => JSON.parse(m.data).seq)).toEqual([0, 1, 2, 3, 4, 5])
    expect(a.sse.stats().seqIncrsRedis + b.sse.stats().seqIncrsRedis).toBe(6)
  })
})
