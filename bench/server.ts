/**
 * Bench server process: one system under test behind a `node:http` server on
 * 127.0.0.1, driven over IPC by bench/run.ts. Started with --expose-gc and pinned
 * to its own core. The harness keeps only an array of responses (for drain waits),
 * so its own per-connection footprint is ~16 bytes.
 */
import * as http from "node:http"
import type { ServerApi, CpuUsage, SendResult } from "./protocol.js"
import { serve, type Handlers } from "./lib/rpc.js"
import { hrMs, immediate, padFor, pickUser, sleep, type Payload } from "./lib/stats.js"
import { loadSystem } from "./systems/index.js"
import type { SendOptions, SystemInstance } from "./systems/types.js"

const ROOMS: ReadonlyArray<string> = ["r1"]
const EVENT = "tick"

let inst: SystemInstance | undefined
let server: http.Server | undefined
const events: Record<string, number> = {}
const drops = { events: 0, frames: 0 }
let resList: http.ServerResponse[] = []
let idxList: number[] = []
let excludeEvery = 0

const isExcluded = (index: number): boolean => excludeEvery > 0 && index % excludeEvery === excludeEvery - 1

function system(): SystemInstance {
  if (inst === undefined) throw new Error("not initialised")
  return inst
}

function onRequest(req: http.IncomingMessage, res: http.ServerResponse): void {
  const url = req.url ?? ""
  const sys = system()
  if (!url.startsWith("/sse?")) {
    if (sys.register !== undefined) {
      res.statusCode = 404
      res.end()
    }
    return
  }
  let userId = "anon"
  let index = -1
  for (const part of url.slice(5).split("&")) {
    const eq = part.indexOf("=")
    if (eq < 0) continue
    const k = part.slice(0, eq)
    if (k === "u") userId = decodeURIComponent(part.slice(eq + 1))
    else if (k === "i") index = Number(part.slice(eq + 1))
  }
  resList.push(res)
  idxList.push(index)
  sys.register?.(userId, req, res, ROOMS)
}

function prune(): number {
  const r: http.ServerResponse[] = []
  const x: number[] = []
  for (let k = 0; k < resList.length; k++) {
    const res = resList[k] as http.ServerResponse
    if (!res.destroyed) {
      r.push(res)
      x.push(idxList[k] as number)
    }
  }
  resList = r
  idxList = x
  return r.length
}

function drainOf(res: http.ServerResponse, ms: number): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer)
      res.off("drain", done)
      res.off("close", done)
      resolve()
    }
    const timer = setTimeout(done, ms)
    res.once("drain", done)
    res.once("close", done)
  })
}

/** Wait until no (non-excluded, open) response has buffered bytes. Returns the number of waits. */
async function waitDrain(deadline: number, includeExcluded: boolean): Promise<number> {
  let waits = 0
  for (;;) {
    await immediate()
    const pending: http.ServerResponse[] = []
    for (let k = 0; k < resList.length; k++) {
      const res = resList[k] as http.ServerResponse
      if (res.destroyed) continue
      if (!includeExcluded && isExcluded(idxList[k] as number)) continue
      if (res.writableLength > 0) pending.push(res)
    }
    const held = inst?.pending?.() ?? 0
    if (pending.length === 0 && held === 0) return waits
    waits++
    if (hrMs() > deadline) {
      throw new Error(`drain timeout: ${pending.length} responses still buffered, ${held} frames held by the system`)
    }
    let waited = false
    for (const res of pending) {
      if (res.writableNeedDrain) {
        await drainOf(res, 1000)
        waited = true
      }
    }
    if (!waited) await sleep(1)
  }
}

const cpu = (): CpuUsage => {
  const c = process.cpuUsage()
  return { user: c.user, system: c.system }
}

const opts = (n: number): SendOptions => ({ event: EVENT, id: String(n) })

const gc = (globalThis as { gc?: () => void }).gc

const api: Handlers<ServerApi> = {
  async init({ system: name, cfg, backlog, preload }) {
    for (const other of preload) await (await loadSystem(other)).preload?.()
    const def = await loadSystem(name)
    inst = await def.create(cfg, {
      error: (kind) => {
        events[kind] = (events[kind] ?? 0) + 1
      },
      drop: (frames) => {
        drops.events++
        drops.frames += frames
      }
    })
    const srv = http.createServer()
    server = srv
    srv.requestTimeout = 0
    srv.headersTimeout = 60_000
    srv.keepAliveTimeout = 0
    srv.on("request", onRequest)
    if (inst.attach !== undefined) await inst.attach(srv)
    if (!srv.listening) {
      await new Promise<void>((resolve, reject) => {
        srv.once("error", reject)
        srv.listen({ port: 0, host: "127.0.0.1", backlog }, () => resolve())
      })
    }
    const addr = srv.address()
    if (addr === null || typeof addr === "string") throw new Error("no port")
    return { port: addr.port, pid: process.pid, routed: inst.routed?.() ?? false }
  },

  live: () => ({ live: prune() }),

  async mem({ gc: doGc }) {
    if (doGc && gc !== undefined) {
      for (let i = 0; i < 3; i++) {
        gc()
        await immediate()
      }
    }
    const m = process.memoryUsage()
    return {
      rss: m.rss,
      heapUsed: m.heapUsed,
      heapTotal: m.heapTotal,
      external: m.external,
      arrayBuffers: m.arrayBuffers,
      maxRSS: process.resourceUsage().maxRSS * 1024
    }
  },

  cpu: () => cpu(),

  exclude({ every }) {
    excludeEvery = every
    let n = 0
    for (const i of idxList) if (isExcluded(i)) n++
    return { excluded: n }
  },

  async sendPaced({ mode, messages, batch, payloadBytes, users, timeoutMs }): Promise<SendResult> {
    const sys = system()
    prune()
    const pad = padFor(payloadBytes)
    const userIds = mode === "users" ? Array.from({ length: users }, (_, i) => `u${i}`) : []
    const deadline = hrMs() + timeoutMs
    let delivered = 0
    let drainWaits = 0
    const cpuStart = cpu()
    const startAt = hrMs()
    for (let n = 0; n < messages; ) {
      const end = Math.min(messages, n + batch)
      for (; n < end; n++) {
        const data: Payload = { t: hrMs(), n, p: pad }
        const o = opts(n)
        if (mode === "all") delivered += sys.sendToAll(data, o)
        else if (mode === "room") delivered += sys.sendToRoom("r1", data, o)
        else if (sys.sendToUsers !== undefined) delivered += sys.sendToUsers(userIds, data, o)
        else for (const u of userIds) delivered += sys.sendToUser(u, data, o)
      }
      drainWaits += await waitDrain(deadline, false)
    }
    return { startAt, endAt: hrMs(), cpuStart, delivered, drainWaits, lateMaxMs: 0 }
  },

  async sendRate({ rate, messages, payloadBytes }): Promise<SendResult> {
    const sys = system()
    const pad = padFor(payloadBytes)
    const period = 1000 / rate
    let delivered = 0
    let lateMaxMs = 0
    const cpuStart = cpu()
    const t0 = hrMs() + 2
    for (let n = 0; n < messages; n++) {
      const due = t0 + n * period
      const ahead = due - hrMs()
      if (ahead > 0) await sleep(ahead)
      const now = hrMs()
      lateMaxMs = Math.max(lateMaxMs, now - due)
      delivered += sys.sendToAll({ t: now, n, p: pad }, opts(n))
    }
    return { startAt: t0, endAt: hrMs(), cpuStart, delivered, drainWaits: 0, lateMaxMs }
  },

  burst({ messages, payloadBytes }): SendResult {
    const sys = system()
    const pad = padFor(payloadBytes)
    let delivered = 0
    const cpuStart = cpu()
    const startAt = hrMs()
    for (let n = 0; n < messages; n++) delivered += sys.sendToAll({ t: hrMs(), n, p: pad }, opts(n))
    return { startAt, endAt: hrMs(), cpuStart, delivered, drainWaits: 0, lateMaxMs: 0 }
  },

  async quiesce({ timeoutMs }) {
    const t0 = hrMs()
    try {
      await waitDrain(t0 + timeoutMs, true)
    } catch {
      // report what is left
    }
    let buffered = 0
    for (const res of resList) if (!res.destroyed && res.writableLength > 0) buffered++
    return { ms: hrMs() - t0, buffered }
  },

  sendWindow({ from, count, payloadBytes }): SendResult {
    const sys = system()
    const pad = padFor(payloadBytes)
    let delivered = 0
    const cpuStart = cpu()
    const startAt = hrMs()
    for (let n = from; n < from + count; n++) delivered += sys.sendToAll({ t: hrMs(), n, p: pad }, opts(n))
    return { startAt, endAt: hrMs(), cpuStart, delivered, drainWaits: 0, lateMaxMs: 0 }
  },

  async publishWindow({ from, count, payloadBytes }): Promise<SendResult> {
    const sys = system()
    if (sys.publish === undefined) throw new Error("this system cannot publish across instances")
    const pad = padFor(payloadBytes)
    const cpuStart = cpu()
    const startAt = hrMs()
    const all: Array<Promise<unknown>> = []
    for (let n = from; n < from + count; n++) all.push(sys.publish({ t: hrMs(), n, p: pad }, opts(n)))
    await Promise.all(all)
    return { startAt, endAt: hrMs(), cpuStart, delivered: count, drainWaits: 0, lateMaxMs: 0 }
  },

  async usersWindow({ from, count, payloadBytes, users, via }): Promise<SendResult> {
    const sys = system()
    const pad = padFor(payloadBytes)
    const cpuStart = cpu()
    const startAt = hrMs()
    if (via === "local") {
      const send = sys.sendToUserDirect ?? sys.sendToUser
      let delivered = 0
      for (let n = from; n < from + count; n++) delivered += send(`u${pickUser(n, users)}`, { t: hrMs(), n, p: pad }, opts(n))
      return { startAt, endAt: hrMs(), cpuStart, delivered, drainWaits: 0, lateMaxMs: 0 }
    }
    const publish = sys.publishToUser
    if (publish === undefined) throw new Error("this system cannot publish to a user across instances")
    const all: Array<Promise<unknown>> = []
    for (let n = from; n < from + count; n++) all.push(publish(`u${pickUser(n, users)}`, { t: hrMs(), n, p: pad }, opts(n)))
    await Promise.all(all)
    return { startAt, endAt: hrMs(), cpuStart, delivered: count, drainWaits: 0, lateMaxMs: 0 }
  },

  stats: () => ({ system: system().stats(), events: { ...events }, drops: { ...drops } }),

  async shutdown() {
    const sys = inst
    if (sys !== undefined) {
      await Promise.race([sys.shutdown().catch(() => undefined), sleep(3000)])
    }
    if (server !== undefined) {
      server.closeAllConnections()
      server.close()
    }
    setTimeout(() => process.exit(0), 20).unref()
    return { ok: true }
  }
}

process.on("SIGTERM", () => process.exit(0))
serve(api)
