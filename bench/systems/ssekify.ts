/**
 * ssekify through the documented imperative facade (`new SSEKify(options)`), loaded
 * from the built package (dist/index.js). Connections: `registerConnection(userId,
 * res, { rooms, ...queue options })`; sends: `sendToAll` / `sendToRoom` / `sendToUser`;
 * cross-instance (E): `redis: <url>` on both instances and `publish(data, undefined, opts)`.
 */
import type { ServerResponse } from "node:http"
import { distUrl, ensureBuilt } from "./build.js"
import type { SystemDef, SystemInstance } from "./types.js"

interface MessageOptions {
  readonly event?: string
  readonly id?: string
}

/** The slice of the facade the bench uses (typed locally: dist/ may not exist at type-check time). */
interface SSEKifyLike {
  registerConnection(userId: string, res: ServerResponse, options?: Record<string, unknown>): unknown
  sendToAll(data: unknown, options?: MessageOptions): number
  sendToRoom(room: string, data: unknown, options?: MessageOptions): number
  sendToUser(userId: string, data: unknown, options?: MessageOptions): number
  publish(data: unknown, userId?: string, options?: MessageOptions): Promise<unknown>
  stats(): Record<string, unknown>
  on(event: string, listener: (e: unknown) => void): unknown
  shutdown(options?: { announce?: boolean; graceMs?: number }): Promise<unknown>
}

export function errorKind(e: unknown): string {
  if (e !== null && typeof e === "object") {
    const o = e as Record<string, unknown>
    for (const k of ["code", "_tag", "name"]) {
      const v = o[k]
      if (typeof v === "string" && v !== "" && v !== "Error") return v
    }
    if (typeof o["message"] === "string") return (o["message"] as string).slice(0, 60)
  }
  return String(e).slice(0, 60)
}

export function numericStats(s: Record<string, unknown>): Record<string, number> {
  const out: Record<string, number> = {}
  for (const [k, v] of Object.entries(s)) if (typeof v === "number") out[k] = v
  return out
}

const ssekify: SystemDef = {
  name: "ssekify",
  description: "ssekify facade: new SSEKify(), registerConnection, sendToAll/Room/User, publish",
  hasDropPolicy: true,
  available: ensureBuilt,
  preload: async () => {
    const mod = (await import(distUrl())) as { SSEKify: new (options: Record<string, unknown>) => SSEKifyLike }
    // an idle instance, kept: its runtime is part of the footprint
    ;(globalThis as Record<string, unknown>)["__benchPreloadSsekify"] = new mod.SSEKify({ keepAliveMs: 15_000 })
  },
  async create(cfg, events) {
    const mod = (await import(distUrl())) as { SSEKify: new (options: Record<string, unknown>) => SSEKifyLike }
    const options: Record<string, unknown> = {
      keepAliveMs: cfg.keepAliveMs,
      retryMs: cfg.retryMs,
      channel: cfg.channel
    }
    if (cfg.recentBufferSize !== undefined) options["recentBufferSize"] = cfg.recentBufferSize
    if (cfg.redisUrl !== undefined) options["redis"] = cfg.redisUrl
    if (!cfg.autoTimestamp) options["autoFields"] = { timestamp: false }
    const sse = new mod.SSEKify(options)
    sse.on("error", (e) => events.error(errorKind(e)))
    sse.on("drop", (e) => {
      const frames = (e as { frames?: unknown } | null)?.frames
      events.drop(typeof frames === "number" ? frames : 1)
    })
    const registerOptions = (rooms: ReadonlyArray<string>): Record<string, unknown> => {
      const o: Record<string, unknown> = { rooms: [...rooms] }
      if (cfg.queue.maxQueueItems !== undefined) o["maxQueueItems"] = cfg.queue.maxQueueItems
      if (cfg.queue.maxQueueBytes !== undefined) o["maxQueueBytes"] = cfg.queue.maxQueueBytes
      if (cfg.queue.dropPolicy !== undefined) o["dropPolicy"] = cfg.queue.dropPolicy
      return o
    }
    const instance: SystemInstance = {
      register: (userId, _req, res, rooms) => void sse.registerConnection(userId, res, registerOptions(rooms)),
      sendToAll: (data, o) => sse.sendToAll(data, o),
      sendToRoom: (room, data, o) => sse.sendToRoom(room, data, o),
      sendToUser: (userId, data, o) => sse.sendToUser(userId, data, o),
      publish: (data, o) => sse.publish(data, undefined, o),
      stats: () => numericStats(sse.stats()),
      shutdown: async () => {
        await sse.shutdown({ announce: false, graceMs: 0 })
      }
    }
    return instance
  }
}

export default ssekify
