/**
 * The server side of a soak scenario, in its own process (`--expose-gc`), driven by the
 * soak runner over IPC: `{ id, cmd, args }` → `{ id, ok, result | error }`.
 *
 * HTTP on 127.0.0.1 (port 0):
 * - GET /sse?u=<user>&room=<r>…&policy=<dropPolicy>&close=1   an SSE connection
 *   (`close=1`: the server closes it on the next tick)
 *
 * After the `shutdown` command has answered, the process lets go of IPC and must exit
 * by itself: nothing keeps it alive once ssekify and the HTTP server are closed.
 */
import * as http from "node:http"
import { monitorEventLoopDelay } from "node:perf_hooks"
import type { AddressInfo } from "node:net"
import { createIORedisAdapter, type RegisteredConnectionHandle, SSEKify, type SSEKifyOptions } from "../src/index.js"

// White-box checks of the soak: the facade's service (`Symbol.for("ssekify/Service")`)
// and the engine behind it (`Symbol.for("ssekify/Engine")`, not part of the API).
const SERVICE = Symbol.for("ssekify/Service")
const ENGINE = Symbol.for("ssekify/Engine")

interface ConnView {
  readonly userId: string
  readonly count: number
  readonly bytes: number
  readonly blocked: boolean
  readonly queue?: { readonly capacity: number } | undefined
}

interface HubView {
  readonly conns: Map<string, ConnView>
  readonly users: Map<string, unknown>
  readonly rooms: Map<string, unknown>
  readonly tickerCount: number
}

type Redis = { readonly url: string } | { readonly sentinels: ReadonlyArray<{ host: string; port: number }>; readonly name: string }

interface StartArgs {
  readonly options: SSEKifyOptions
  readonly redis?: Redis
  readonly maxHeaderSize?: number
}

const loopDelay = monitorEventLoopDelay({ resolution: 10 })
loopDelay.enable()
/**
 * [when, how late, CPU ms this process used meanwhile] of event-loop turns more than
 * 50 ms late (a 10 ms probe): CPU close to the delay means the process was busy, little
 * CPU means it was not scheduled (the machine was busy).
 */
const stalls: Array<[number, number, number]> = []
let expected = Date.now() + 10
let cpuBefore = process.cpuUsage()
setInterval(() => {
  const now = Date.now()
  const cpu = process.cpuUsage(cpuBefore)
  cpuBefore = process.cpuUsage()
  if (now - expected > 50 && stalls.length < 100) stalls.push([now, now - expected, Math.round((cpu.user + cpu.system) / 1000)])
  expected = now + 10
}, 10).unref()

let sse: SSEKify | undefined
let server: http.Server | undefined
const errors: Array<{ code: string; message: string }> = []
const errorCodes = new Map<string, number>()
const handles = new Map<string, RegisteredConnectionHandle>()
/** Frames dropped per user (from 'drop' events). */
const dropsByUser = new Map<string, number>()
const tickers = new Map<string, NodeJS.Timeout>()
const tickerStats = new Map<string, { sent: number; rejected: number }>()

const gc = (): void => {
  const g = (globalThis as { gc?: () => void }).gc
  if (g === undefined) throw new Error("run with --expose-gc")
  for (let i = 0; i < 4; i++) g()
}

const hub = (): HubView =>
  ((sse as unknown as Record<symbol, Record<symbol, { hub: HubView }>>)[SERVICE]![ENGINE]!).hub

const resourceCounts = (): Record<string, number> => {
  const out: Record<string, number> = {}
  for (const r of process.getActiveResourcesInfo()) out[r] = (out[r] ?? 0) + 1
  return out
}

const commands: Record<string, (args: never) => unknown> = {
  start: (args: StartArgs) => {
    const redis = args.redis === undefined
      ? undefined
      : "url" in args.redis
      ? args.redis.url
      : createIORedisAdapter({ sentinels: args.redis.sentinels.map((s) => ({ ...s })), name: args.redis.name })
    sse = new SSEKify({ ...args.options, ...(redis !== undefined ? { redis } : {}) })
    sse.on("error", (e) => {
      const code = String((e as { code?: unknown }).code ?? "Error")
      errorCodes.set(code, (errorCodes.get(code) ?? 0) + 1)
      if (errors.length < 200) errors.push({ code, message: e.message.slice(0, 200) })
    })
    sse.on("drop", (d) => dropsByUser.set(d.userId, (dropsByUser.get(d.userId) ?? 0) + d.frames))
    server = http.createServer({ ...(args.maxHeaderSize !== undefined ? { maxHeaderSize: args.maxHeaderSize } : {}) }, (req, res) => {
      const url = new URL(req.url ?? "/", "http://x")
      const q = url.searchParams
      const user = q.get("u") ?? "guest"
      const policy = q.get("policy")
      const handle = sse!.registerConnection(user, res, {
        rooms: q.getAll("room"),
        ...(policy === "oldest" || policy === "newest" || policy === "disconnect" ? { dropPolicy: policy } : {})
      })
      if (handle.connId !== "") handles.set(user, handle)
      res.on("close", () => {
        if (handles.get(user) === handle) handles.delete(user)
      })
      if (q.get("close") === "1") setImmediate(() => handle.close())
    })
    return new Promise<{ port: number; instanceId: string }>((resolve) =>
      server!.listen(0, "127.0.0.1", () =>
        resolve({ port: (server!.address() as AddressInfo).port, instanceId: sse!.instanceId })))
  },

  ready: () => sse!.ready(),

  /** Event-loop delay (max, p99, ms) and CPU time since the last call; with `stalls`, the times (epoch ms) the loop was late by more than 50 ms. */
  loop: () => {
    const out = {
      maxMs: Math.round(loopDelay.max / 1e6),
      p99Ms: Math.round(loopDelay.percentile(99) / 1e6),
      cpuMs: Math.round((process.cpuUsage().user + process.cpuUsage().system) / 1000),
      stalls: stalls.splice(0)
    }
    loopDelay.reset()
    return out
  },

  mem: () => {
    gc()
    const m = process.memoryUsage()
    return { rss: m.rss, heapUsed: m.heapUsed, external: m.external, arrayBuffers: m.arrayBuffers }
  },

  inspect: () => {
    const h = hub()
    return {
      stats: sse!.stats(),
      hub: { conns: h.conns.size, users: h.users.size, rooms: h.rooms.size, tickers: h.tickerCount },
      resources: resourceCounts(),
      listeners: {
        serverRequest: server!.listenerCount("request"),
        serverConnection: server!.listenerCount("connection"),
        sse: sse!.eventNames().reduce((n, e) => n + sse!.listenerCount(e), 0),
        process: process.eventNames().reduce((n, e) => n + process.listenerCount(e), 0)
      },
      errorCodes: Object.fromEntries(errorCodes),
      errors: errors.slice(0, 50),
      drops: Object.fromEntries(dropsByUser),
      handles: handles.size
    }
  },

  /** Broadcasts `totalBytes` in messages of `msgBytes` (id = index) with sendToAll; samples RSS meanwhile. */
  broadcast: async (args: { totalBytes: number; msgBytes: number; event: string }) => {
    gc()
    const rssBefore = process.memoryUsage.rss()
    let rssPeak = rssBefore
    const sampler = setInterval(() => {
      const rss = process.memoryUsage.rss()
      if (rss > rssPeak) rssPeak = rss
    }, 10)
    const count = Math.ceil(args.totalBytes / args.msgBytes)
    const pad = "x".repeat(Math.max(0, args.msgBytes - 40))
    const started = Date.now()
    let delivered = 0
    for (let n = 0; n < count; n++) {
      delivered += sse!.sendToAll({ n, pad }, { event: args.event, id: String(n) })
      // let the sockets of readers that keep up drain between messages
      await new Promise((r) => setImmediate(r))
      if (n % 8 === 7) await new Promise((r) => setTimeout(r, 1))
    }
    const ms = Date.now() - started
    await new Promise((r) => setTimeout(r, 50))
    clearInterval(sampler)
    const rss = process.memoryUsage.rss()
    if (rss > rssPeak) rssPeak = rss
    return { messages: count, delivered, ms, rssBefore, rssPeak }
  },

  /**
   * Sends `frames` messages of about `bytes` bytes with sendToAll, as fast as it can (a
   * macrotask every 1 000 so drop reports and IPC go on), to clients that never read;
   * returns the time, heap and external memory after GC before and after, and the
   * connections' queues (items, bytes, ring slots) at the end.
   */
  flood: async (args: { frames: number; bytes: number; event: string }) => {
    gc()
    const before = process.memoryUsage()
    const pad = "x".repeat(Math.max(0, args.bytes - 40))
    const started = Date.now()
    let delivered = 0
    for (let n = 0; n < args.frames; n++) {
      delivered += sse!.sendToAll({ n, pad }, { event: args.event })
      if (n % 1000 === 999) await new Promise((r) => setImmediate(r))
    }
    const ms = Date.now() - started
    // the drop reports of the last tick
    await new Promise((r) => setTimeout(r, 50))
    const queues = [...hub().conns.values()].map((c) => ({
      user: c.userId,
      blocked: c.blocked,
      items: c.count,
      bytes: c.bytes,
      slots: c.queue?.capacity ?? 0
    }))
    gc()
    const after = process.memoryUsage()
    return {
      ms,
      delivered,
      heapBefore: before.heapUsed,
      heapAfter: after.heapUsed,
      externalBefore: before.external,
      externalAfter: after.external,
      queues
    }
  },

  /** A repeating send: `publish` (local at once, then the bus) or `sendToAll`, every `ms`. */
  tick: (args: { name: string; ms: number; mode: "publish" | "sendToAll"; event: string }) => {
    const s = { sent: 0, rejected: 0 }
    tickerStats.set(args.name, s)
    let n = 0
    const timer = setInterval(() => {
      const data = { n: n++, t: Date.now() }
      if (args.mode === "sendToAll") {
        sse!.sendToAll(data, { event: args.event })
        s.sent++
        return
      }
      sse!.publish(data, undefined, { event: args.event }).then(
        () => void s.sent++,
        () => void s.rejected++
      )
    }, args.ms)
    tickers.set(args.name, timer)
  },

  untick: (args: { name: string }) => {
    clearInterval(tickers.get(args.name))
    tickers.delete(args.name)
    return tickerStats.get(args.name)
  },

  /**
   * The chaos scenario's stream: `count` rounds, every `everyMs`, one frame to each user
   * (`{ u, n }`, id `n`, n = from … from + count - 1): `sendToUser` (local) or `publish` (local at once,
   * then the bus). Answers when every frame was sent (and every publish settled).
   */
  stream: async (args: { users: ReadonlyArray<string>; from: number; count: number; everyMs: number; publish: boolean }) => {
    const s = sse!
    const pending: Array<Promise<unknown>> = []
    let rejected = 0
    let delivered = 0
    const started = Date.now()
    let sameMs = 0
    let lastMs = 0
    for (let i = 0; i < args.count; i++) {
      const n = args.from + i
      const ms = Date.now()
      if (ms === lastMs) sameMs++
      lastMs = ms
      for (const u of args.users) {
        if (args.publish) pending.push(s.publish({ u, n }, u, { id: String(n) }).catch(() => void rejected++))
        else delivered += s.sendToUser(u, { u, n }, { id: String(n) })
      }
      // paced against the start, so a late turn does not stretch the run
      const wait = started + (i + 1) * args.everyMs - Date.now()
      await new Promise((r) => setTimeout(r, Math.max(0, wait)))
    }
    await Promise.all(pending)
    // rounds in the same millisecond as the one before (a late timer catching up)
    return { frames: args.count * args.users.length, rejected, delivered, ms: Date.now() - started, sameMs }
  },

  /** Runs one call of the API with hostile input; returns the error codes it produced. */
  hostile: async (args: { case: string; limit?: number }) => {
    const before = errors.length
    const codesBefore = new Map(errorCodes)
    const s = sse!
    let result: unknown
    const circular: Record<string, unknown> = { a: 1 }
    circular.self = circular
    switch (args.case) {
      case "event-crlf":
        result = s.sendToUser("target", { x: 1 }, { event: "evil\r\nid: 666\r\ndata: injected\n\nevent: x" })
        break
      case "id-crlf":
        result = s.sendToUser("target", { x: 2 }, { id: "1\r\n\r\ndata: injected\n\n" })
        break
      case "id-nul":
        result = s.sendToUser("target", { x: 3 }, { id: "1\u0000evil", event: "nul\u0000event" })
        break
      case "room-crlf":
        result = [handles.get("target")!.join("room\r\nevil"), s.sendToRoom("room\r\nevil", { x: 4 })]
        break
      case "circular":
        result = s.sendToAll(circular)
        break
      case "circular-publish":
        result = await s.publish(circular).then(() => "resolved", (e: unknown) => String((e as { code?: unknown }).code))
        break
      case "over-limit": // serialized: exactly one byte over maxPayloadBytes
        result = s.sendToAll({ pad: "y".repeat((args as { limit: number }).limit - 10 + 1) }, { event: "big" })
        break
      case "at-limit": // serialized: exactly maxPayloadBytes (delivered)
        result = s.sendToRoom("witness", { pad: "y".repeat((args as { limit: number }).limit - 10) }, { event: "big" })
        break
      case "rooms-10000": {
        const handle = handles.get("roomer")!
        const roomsBefore = s.stats().rooms
        let joined = 0
        for (let i = 0; i < 10_000; i++) if (handle.join(`r${i}`)) joined++
        result = { joined, newRooms: s.stats().rooms - roomsBefore }
        break
      }
      case "user-crlf":
        result = s.sendToUser("bad\r\nuser\u0000", { x: 5 })
        break
      default:
        throw new Error(`unknown case ${args.case}`)
    }
    const codes: Array<string> = []
    for (const [code, n] of errorCodes) for (let i = codesBefore.get(code) ?? 0; i < n; i++) codes.push(code)
    return { result, codes, messages: errors.slice(before, before + 3).map((e) => e.message) }
  },

  /** A numbered frame to every connection (the witnesses count them). */
  witness: (args: { seq: number }) => sse!.sendToRoom("witness", { seq: args.seq }, { event: "witness", id: `w${args.seq}` }),

  closeUser: (args: { user?: string }) => sse!.close(args.user),

  shutdown: async (args: { graceMs: number }) => {
    for (const t of tickers.values()) clearInterval(t)
    tickers.clear()
    const started = Date.now()
    await sse!.shutdown({ graceMs: args.graceMs })
    const ms = Date.now() - started
    await new Promise<void>((resolve) => {
      server!.close(() => resolve())
      server!.closeIdleConnections()
    })
    return { shutdownMs: ms, closedMs: Date.now() - started }
  }
}

process.on("message", (msg: { id: number; cmd: string; args: unknown }) => {
  const command = commands[msg.cmd]
  Promise.resolve()
    .then(() => {
      if (command === undefined) throw new Error(`unknown command ${msg.cmd}`)
      return command(msg.args as never)
    })
    .then(
      (result) => {
        process.send!({ id: msg.id, ok: true, result: result ?? null })
        // after the shutdown is answered nothing may keep the process alive: not even IPC
        if (msg.cmd === "shutdown") process.disconnect()
      },
      (error: unknown) => process.send!({ id: msg.id, ok: false, error: String((error as Error)?.stack ?? error) })
    )
})
