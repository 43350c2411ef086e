/**
 * Property test of the connection write queue (issue 12): the real `Hub` driven by random
 * sequences of sends (tiny frames, frames larger than `maxQueueBytes`), sockets that stop
 * taking writes (`write()` returns false), drains, client and server closes and sinks that
 * throw, under each drop policy with random limits, compared with a simple reference
 * model (plain arrays, the policies as the README states them).
 *
 * The sink is an in-memory `SinkResponse`: it is the boundary of the unit under test
 * (the hub only calls `write` / `cork` / `end` and listens to `drain` / `close`), not a
 * stand-in for a real part; the same paths run on real sockets in queue.edges.test.ts
 * and backpressure.test.ts. The hub's own `setImmediate` flushes are driven by awaiting
 * a macrotask (the `tick` command), nothing of the hub is called by hand but `push`
 * (what the delivery loops call) and `remove` (what a server-side close calls).
 *
 * Invariants, after every command: nothing throws; a blocked connection's queue holds at
 * most maxItems frames and maxBytes bytes, in a ring of at most maxItems slots; a
 * connection that is not blocked has no queue; what each sink received is exactly what
 * the model says (so an in-order subsequence of what was sent, whole frames); at the end,
 * every frame offered to an open connection was received or reported dropped (onDrop
 * counts = metrics = the model's), and every closed connection was reported.
 */
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { BackpressureDisconnect } from "../src/Errors.js"
import { Conn, type ConnConfig, Hub, Policy, type SinkResponse } from "../src/internal/hub.js"

type Listener = (...args: Array<unknown>) => void

/** An in-memory response: records what was written; `full` makes `write()` return false. */
class MemorySink implements SinkResponse {
  readonly chunks: Array<Buffer> = []
  full = false
  /** A write returned false and 'drain' was not emitted yet. */
  needDrain = false
  /** The peer vanished: every write throws. */
  vanished = false
  ended = false
  private readonly listeners = new Map<string, Array<Listener>>()
  private drainListeners: Array<Listener> = []
  cork?: () => void
  uncork?: () => void

  constructor(withCork: boolean) {
    if (withCork) {
      this.cork = () => {}
      this.uncork = () => {}
    }
  }

  write(chunk: Uint8Array): boolean {
    if (this.vanished) throw new Error("EPIPE")
    if (this.ended) throw new Error("write after end")
    this.chunks.push(Buffer.from(chunk))
    if (this.full) {
      this.needDrain = true
      return false
    }
    return true
  }
  end(): void {
    this.ended = true
  }
  on(event: string, listener: Listener): this {
    const list = this.listeners.get(event) ?? []
    list.push(listener)
    this.listeners.set(event, list)
    return this
  }
  once(_event: "drain", listener: Listener): this {
    this.drainListeners.push(listener)
    return this
  }
  emitClose(): void {
    for (const l of this.listeners.get("close") ?? []) l.call(this)
  }
  /** The peer reads everything: writes succeed again and 'drain' fires if one returned false. */
  read(): void {
    this.full = false
    if (!this.needDrain) return
    this.needDrain = false
    const once = this.drainListeners
    this.drainListeners = []
    for (const l of once) l.call(this)
  }
  /** The ids of the whole frames received, in order (and whether every byte belonged to one). */
  received(frames: ReadonlyMap<number, Buffer>): { ids: Array<number>; intact: boolean } {
    const text = Buffer.concat(this.chunks).toString("latin1")
    const lines = text.split("\n")
    const rest = lines.pop()
    let intact = rest === ""
    const ids = lines.map((line) => {
      const id = Number(line.slice(0, line.indexOf(",")))
      if (frames.get(id)?.toString("latin1") !== line + "\n") intact = false
      return id
    })
    return { ids, intact }
  }
}

interface ConnSpec {
  readonly policy: Policy
  readonly maxItems: number
  readonly maxBytes: number
  readonly highWaterMark: number
  readonly cork: boolean
}

type Command =
  | { readonly t: "send"; readonly size: number }
  | { readonly t: "sendTo"; readonly conn: number; readonly size: number }
  | { readonly t: "tick" }
  | { readonly t: "stall"; readonly conn: number }
  | { readonly t: "read"; readonly conn: number }
  | { readonly t: "close"; readonly conn: number }
  | { readonly t: "serverClose"; readonly conn: number }
  | { readonly t: "vanish"; readonly conn: number }

/** The reference model of one connection: plain arrays, the documented rules. */
class ModelConn {
  closed = false
  blocked = false
  dirty = false
  batch: Array<number> = []
  batchBytes = 0
  queue: Array<number> = []
  queueBytes = 0
  full = false
  needDrain = false
  vanished = false
  readonly received: Array<number> = []
  offered = 0
  droppedOldest = 0
  droppedNewest = 0
  disconnectedByBackpressure = 0

  constructor(readonly spec: ConnSpec, private readonly sizeOf: (id: number) => number) {}

  private write(ids: Array<number>): boolean {
    if (this.vanished) {
      this.close()
      return true
    }
    this.received.push(...ids)
    if (this.full) {
      this.needDrain = true
      return false
    }
    return true
  }

  close(): void {
    this.closed = true
    this.batch = []
    this.queue = []
    this.batchBytes = this.queueBytes = 0
  }

  private flushBatch(): void {
    if (this.batch.length === 0 || this.closed || this.blocked) return
    const ids = this.batch
    this.batch = []
    this.batchBytes = 0
    if (!this.write(ids) && !this.closed) this.blocked = true
  }

  push(id: number, dirtyList: Array<ModelConn>): boolean {
    if (this.closed) return false
    this.offered++
    const size = this.sizeOf(id)
    if (this.blocked) return this.enqueue(id, size)
    if (!this.dirty) {
      this.dirty = true
      dirtyList.push(this)
      if (this.spec.cork) {
        if (!this.write([id]) && !this.closed) this.blocked = true
        return true
      }
    }
    this.batch.push(id)
    this.batchBytes += size
    if (this.batchBytes >= this.spec.highWaterMark) this.flushBatch()
    return true
  }

  private enqueue(id: number, size: number): boolean {
    const { maxBytes, maxItems, policy } = this.spec
    const overflow = () => this.queue.length >= maxItems || this.queueBytes + size > maxBytes
    if (overflow()) {
      if (policy === Policy.Disconnect) {
        this.disconnectedByBackpressure++
        this.close()
        return false
      }
      if (policy === Policy.Newest || size > maxBytes || maxItems <= 0) {
        this.droppedNewest++
        return false
      }
      while (this.queue.length > 0 && overflow()) {
        this.queueBytes -= this.sizeOf(this.queue.shift()!)
        this.droppedOldest++
      }
    }
    this.queue.push(id)
    this.queueBytes += size
    return true
  }

  tick(): void {
    this.dirty = false
    this.flushBatch()
  }

  read(): void {
    this.full = false
    if (!this.needDrain) return
    this.needDrain = false
    if (this.closed) return
    this.blocked = false
    if (this.queue.length === 0) return
    const ids = this.queue
    this.queue = []
    this.queueBytes = 0
    if (!this.write(ids) && !this.closed) this.blocked = true
  }

  serverClose(): void {
    if (this.closed) return
    if (!this.blocked) this.flushBatch()
    this.close()
  }
}

const policies = [Policy.Oldest, Policy.Newest, Policy.Disconnect] as const

const connSpec: fc.Arbitrary<ConnSpec> = fc.record({
  policy: fc.constantFrom(...policies),
  maxItems: fc.oneof({ weight: 9, arbitrary: fc.integer({ min: 1, max: 20 }) }, { weight: 1, arbitrary: fc.constant(0) }),
  maxBytes: fc.oneof(fc.integer({ min: 1, max: 60 }), fc.integer({ min: 60, max: 2_000 })),
  highWaterMark: fc.integer({ min: 1, max: 300 }),
  cork: fc.boolean()
})

/** Frame sizes: tiny (the smallest frame is 5 bytes here), around the limits, far over them. */
const size = fc.oneof(fc.integer({ min: 1, max: 12 }), fc.integer({ min: 1, max: 220 }), fc.integer({ min: 200, max: 5000 }))

const command = (conns: number): fc.Arbitrary<Command> => {
  const conn = fc.integer({ min: 0, max: conns - 1 })
  return fc.oneof(
    { weight: 16, arbitrary: size.map((s) => ({ t: "send", size: s }) as const) },
    { weight: 6, arbitrary: fc.tuple(conn, size).map(([c, s]) => ({ t: "sendTo", conn: c, size: s }) as const) },
    { weight: 4, arbitrary: fc.constant({ t: "tick" } as const) },
    { weight: 4, arbitrary: conn.map((c) => ({ t: "stall", conn: c }) as const) },
    { weight: 2, arbitrary: conn.map((c) => ({ t: "read", conn: c }) as const) },
    { weight: 1, arbitrary: conn.map((c) => ({ t: "close", conn: c }) as const) },
    { weight: 1, arbitrary: conn.map((c) => ({ t: "serverClose", conn: c }) as const) },
    { weight: 1, arbitrary: conn.map((c) => ({ t: "vanish", conn: c }) as const) }
  )
}

const scenario = fc.array(connSpec, { minLength: 1, maxLength: 3 }).chain((specs) =>
  fc.record({
    specs: fc.constant(specs),
    commands: fc.array(command(specs.length), { minLength: 1, maxLength: 100, size: "max" }),
    latency: fc.boolean()
  })
)

const macrotask = () => new Promise<void>((resolve) => setImmediate(resolve))

const run = async ({ commands, latency, specs }: { specs: Array<ConnSpec>; commands: Array<Command>; latency: boolean }) => {
  const drops = new Map<Conn, { oldest: number; newest: number }>()
  const disconnected = new Map<Conn, number>()
  const backpressure: Array<BackpressureDisconnect> = []
  const hub = new Hub({
    onDisconnect: (conn) => disconnected.set(conn, (disconnected.get(conn) ?? 0) + 1),
    onBackpressureDisconnect: (error) => backpressure.push(error),
    onDrop: (conn, policy, frames) => {
      const d = drops.get(conn) ?? { oldest: 0, newest: 0 }
      d[policy] += frames
      drops.set(conn, d)
    },
    backpressureError: (conn) => new BackpressureDisconnect({ connId: conn.id, userId: conn.userId, queueItems: conn.count, queueBytes: conn.bytes }),
    every: () => () => {},
    now: () => 0,
    ping: () => new Uint8Array(0)
  })
  const latencies: Array<number> = []
  if (latency) hub.observeLatency = (ms) => latencies.push(ms)

  const frames = new Map<number, Buffer>()
  const sizeOf = (id: number) => frames.get(id)!.length
  const sinks: Array<MemorySink> = []
  const conns: Array<Conn> = []
  const models: Array<ModelConn> = []
  specs.forEach((spec, i) => {
    const config: ConnConfig = { hub, maxItems: spec.maxItems, maxBytes: spec.maxBytes, policy: spec.policy, keepAliveMs: 0, highWaterMark: spec.highWaterMark }
    const sink = new MemorySink(spec.cork)
    const conn = new Conn(`c${i}`, `u${i}`, sink, config)
    hub.add(conn)
    sinks.push(sink)
    conns.push(conn)
    models.push(new ModelConn(spec, sizeOf))
  })
  let dirty: Array<ModelConn> = []
  let nextId = 0
  const frame = (bytes: number): number => {
    const id = nextId++
    const head = `${id},`
    frames.set(id, Buffer.from(head + "x".repeat(Math.max(0, bytes - head.length - 1)) + "\n", "latin1"))
    return id
  }

  const check = (where: string) => {
    for (let i = 0; i < conns.length; i++) {
      const conn = conns[i]!
      const model = models[i]!
      const spec = specs[i]!
      const context = `${where}, connection ${i} ${JSON.stringify(spec)}`
      expect(conn.closed, context).toBe(model.closed)
      expect(conn.blocked && !conn.closed, context).toBe(model.blocked && !model.closed)
      expect(sinks[i]!.received(frames).ids, context).toEqual(model.received)
      if (conn.closed) continue
      if (conn.blocked) {
        expect(conn.count, context).toBeLessThanOrEqual(spec.maxItems)
        expect(conn.bytes, context).toBeLessThanOrEqual(spec.maxBytes)
        expect(conn.count, context).toBe(model.queue.length)
        expect(conn.bytes, context).toBe(model.queueBytes)
        // backing memory: every slot held for this connection's pending frames (the ring's
        // capacity and the tick batch, emptied when the socket blocked) is bounded by maxItems
        const slots = (conn.queue?.capacity ?? 0) + (conn.frames?.length ?? 0)
        expect(slots, `${context}: slots`).toBeLessThanOrEqual(Math.max(1, spec.maxItems))
        if (conn.queue !== undefined) expect(conn.queue.size, context).toBe(conn.count)
      } else {
        // nothing allocated for the queue of a connection that is not waiting for 'drain';
        // the tick batch holds this tick's frames only
        expect(conn.queue, context).toBeUndefined()
        expect(conn.frames?.length ?? 0, context).toBe(conn.count)
        expect(conn.count, context).toBe(model.batch.length)
      }
    }
  }

  for (let step = 0; step < commands.length; step++) {
    const c = commands[step]!
    const where = `step ${step} ${JSON.stringify(c)}`
    switch (c.t) {
      case "send": {
        // a broadcast, as the engine's delivery loop does it
        const id = frame(c.size)
        let count = 0
        for (const conn of hub.conns.values()) if (hub.writer.push(conn, frames.get(id)!)) count++
        let expected = 0
        for (const m of models) if (m.push(id, dirty)) expected++
        expect(count, where).toBe(expected)
        break
      }
      case "sendTo": {
        const id = frame(c.size)
        expect(hub.writer.push(conns[c.conn]!, frames.get(id)!), where).toBe(models[c.conn]!.push(id, dirty))
        break
      }
      case "tick": {
        await macrotask()
        for (const m of dirty) m.tick()
        dirty = []
        break
      }
      case "stall":
        sinks[c.conn]!.full = true
        models[c.conn]!.full = true
        break
      case "read":
        sinks[c.conn]!.read()
        models[c.conn]!.read()
        break
      case "close":
        sinks[c.conn]!.emitClose()
        models[c.conn]!.close()
        break
      case "serverClose":
        hub.remove(conns[c.conn]!, true)
        models[c.conn]!.serverClose()
        break
      case "vanish":
        sinks[c.conn]!.vanished = true
        models[c.conn]!.vanished = true
        break
    }
    check(where)
  }

  // settle: every peer reads, the hub flushes, drop reports go out
  for (let round = 0; round < 3; round++) {
    for (let i = 0; i < conns.length; i++) {
      sinks[i]!.read()
      models[i]!.read()
    }
    await macrotask()
    for (const m of dirty) m.tick()
    dirty = []
  }
  await macrotask()
  check("after settling")

  let oldest = 0
  let newest = 0
  for (let i = 0; i < conns.length; i++) {
    const conn = conns[i]!
    const model = models[i]!
    const context = `connection ${i} ${JSON.stringify(specs[i])}`
    const reported = drops.get(conn) ?? { oldest: 0, newest: 0 }
    expect(reported, context).toEqual({ oldest: model.droppedOldest, newest: model.droppedNewest })
    oldest += reported.oldest
    newest += reported.newest
    const received = sinks[i]!.received(frames)
    expect(received.intact, `${context}: whole frames only`).toBe(true)
    // an in-order subsequence of what was sent (ids increase)
    expect(received.ids.every((id, k) => k === 0 || id > received.ids[k - 1]!), context).toBe(true)
    if (conn.closed) {
      // closed (by the client, the server, a throwing sink or backpressure): reported once
      expect(disconnected.get(conn), context).toBe(1)
    } else {
      expect(conn.count, context).toBe(0)
      // every frame offered to an open connection was received or reported dropped
      expect(received.ids.length + reported.oldest + reported.newest, context).toBe(model.offered)
    }
  }
  expect(hub.metrics.droppedOldest).toBe(oldest)
  expect(hub.metrics.droppedNewest).toBe(newest)
  const bp = models.reduce((n, m) => n + m.disconnectedByBackpressure, 0)
  expect(backpressure.length).toBe(bp)
  expect(hub.metrics.disconnectedByBackpressure).toBe(bp)
  for (const ms of latencies) expect(Number.isFinite(ms) && ms >= 0).toBe(true)

  for (const conn of conns) hub.remove(conn, false)
  hub.stopTickers()
}

describe("connection queue (property)", () => {
  it("matches the reference model under every policy, limit and frame size", async () => {
    await fc.assert(fc.asyncProperty(scenario, run), { numRuns: 400, interruptAfterTimeLimit: 20_000 })
  }, 60_000)

  it("a stalled connection under 'oldest' keeps a ring of at most maxItems slots whatever it drops", async () => {
    const spec: ConnSpec = { policy: Policy.Oldest, maxItems: 7, maxBytes: 10_000, highWaterMark: 16, cork: true }
    const commands: Array<Command> = [{ t: "stall", conn: 0 }]
    for (let i = 0; i < 5_000; i++) commands.push({ t: "send", size: 30 })
    await run({ specs: [spec], commands, latency: false })
  })
})
