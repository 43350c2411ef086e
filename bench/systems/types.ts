/**
 * What the bench needs from a system under test. Adding a system = one file in
 * this folder exporting a `SystemDef`, plus one line in `./index.ts`.
 *
 * The bench server (bench/server.ts) owns the `node:http` server on 127.0.0.1. For
 * every `GET /sse?u=<userId>&i=<index>` it calls `register(userId, req, res, rooms)`;
 * a system that wants the HTTP server itself (e.g. an `@effect/platform` app) may
 * implement `attach(server)` instead and answer `/sse` requests on its own.
 */
import type * as http from "node:http"
import type { Payload } from "../lib/stats.js"

export type DropPolicy = "oldest" | "newest" | "disconnect"

export interface QueueOptions {
  readonly maxQueueItems?: number
  readonly maxQueueBytes?: number
  readonly dropPolicy?: DropPolicy
}

export interface SystemConfig {
  /** `main` holds the SSE connections; `publisher` only publishes (scenario E). */
  readonly role: "main" | "publisher"
  readonly keepAliveMs: number
  readonly retryMs: number
  /** undefined = the library's default */
  readonly recentBufferSize: number | undefined
  /** ssekify's default `timestamp` auto field (false: frames carry the same bytes as raw's) */
  readonly autoTimestamp: boolean
  readonly queue: QueueOptions
  /** set in scenario E: a `redis://127.0.0.1:<port>` URL of the bench's own redis-server */
  readonly redisUrl: string | undefined
  /** set in scenario H (cluster): the startup nodes of the bench's own 3-master Redis Cluster (instead of `redisUrl`) */
  readonly redisCluster?: ReadonlyArray<{ readonly host: string; readonly port: number }> | undefined
  /**
   * How the bus routes (issue 16): `channel` = one shared channel (the default), `user` =
   * per-user and per-room channels. Only systems with `SystemDef.routing` take it.
   */
  readonly routing?: "channel" | "user" | undefined
  readonly channel: string
}

export interface SendOptions {
  readonly event: string
  readonly id: string
}

/** Counters the harness keeps for what systems report through events. */
export interface SystemEvents {
  /** an 'error' event, keyed by its code / tag / message */
  error(kind: string): void
  /** a drop event (ssekify: 'drop') reporting `frames` dropped frames */
  drop(frames: number): void
}

export interface SystemInstance {
  register?(userId: string, req: http.IncomingMessage, res: http.ServerResponse, rooms: ReadonlyArray<string>): void
  attach?(server: http.Server): void | Promise<void>
  /** the three local sends; each returns the number of connections it delivered to */
  sendToAll(data: Payload, opts: SendOptions): number
  sendToRoom(room: string, data: Payload, opts: SendOptions): number
  sendToUser(userId: string, data: Payload, opts: SendOptions): number
  /**
   * One message to each of `userIds` in one go (scenario B.users), when the system has a
   * cheaper form than one `sendToUser` call each: the Effect system runs the loop as one
   * effect, as an Effect app sends from inside a fiber, instead of one `runSync` per user.
   */
  sendToUsers?(userIds: ReadonlyArray<string>, data: Payload, opts: SendOptions): number
  /** cross-instance broadcast (role `publisher`, scenario E) */
  publish?(data: Payload, opts: SendOptions): Promise<unknown>
  /** cross-instance message to one user (role `publisher`, scenario H) */
  publishToUser?(userId: string, data: Payload, opts: SendOptions): Promise<unknown>
  /**
   * The local per-user send by the library's synchronous path, without an API wrapper
   * around it (the baseline of scenario H); default: `sendToUser`.
   */
  sendToUserDirect?(userId: string, data: Payload, opts: SendOptions): number
  /** true when the bus the system built routes per user (`routing: "user"` took effect) */
  routed?(): boolean
  /** numeric metrics (ssekify: `stats()`); systems without them return harness counters */
  stats(): Record<string, number>
  /** frames the system holds and has not handed to `res.write` yet (for drain waits); 0 if unknown */
  pending?(): number
  /** true when the system's subscription to the bus is live (scenario E); default: true after create */
  ready?(): boolean
  shutdown(): Promise<void>
}

export type Availability = { readonly ok: true } | { readonly ok: false; readonly reason: string }

export interface SystemDef {
  readonly name: string
  readonly description: string
  /** whether `dropPolicy` means anything (scenario G); systems without one buffer unboundedly */
  readonly hasDropPolicy: boolean
  /**
   * Whether the system passes `SystemConfig.routing` and `redisCluster` to its bus and
   * implements `publishToUser` / `routed`: scenario H and case E.routed run only for these.
   */
  readonly routing?: boolean
  available(): Promise<Availability>
  /**
   * Load what a server of this system loads (modules, a runtime), without serving.
   * Every bench server preloads every system of the run before creating its own, so
   * all server processes start from the same footprint: otherwise the allocator
   * slack of a bigger process absorbs the first connections' native memory and
   * makes its RSS per connection look smaller than it is.
   */
  preload?(): Promise<void>
  create(cfg: SystemConfig, events: SystemEvents): Promise<SystemInstance>
}

/** SSE response headers used by the hand-written systems. */
export const SSE_HEADERS: Readonly<Record<string, string>> = {
  "Content-Type": "text/event-stream",
  "Cache-Control": "no-cache, no-transform",
  Connection: "keep-alive",
  "X-Accel-Buffering": "no"
}
