/**
 * Registration: one path from a request to a connection. The checks (response, user id,
 * options), admission (`maxConnections`, `maxConnectionsPerUser` and its policy, then
 * the cluster-wide hook of presence), the SSE headers and `Last-Event-ID` of a Node
 * response, the refusal of what is not admitted (400 / 429 / 503 + `Retry-After`), and
 * `attach`: `retry:`, the registry, rooms, replay on connect, `'connect'`.
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import type { OutgoingHttpHeaders } from "node:http"
import { CallbackFailed, InvalidInput, LimitExceeded, ShuttingDown, type SseKifyError } from "../Errors.js"
import * as Frame from "../Frame.js"
import { Conn, type ConnConfig, kConn, type SinkResponse } from "./conn.js"
import type { Admission, ConnectionHandle, NodeResponse, RegisterOptions } from "./domain.js"
import { type Events, textOf } from "./events.js"
import type { Hub } from "./hub.js"
import { lastEventIdFrom } from "./lastEventId.js"
import { sseHeaders } from "./sseHeaders.js"
import { describe, type Resolved, type ResolvedConnection, resolveConnection } from "./options.js"
import { isNonEmptyString, type SendPrep } from "./prepare.js"
import { invalidInputText } from "./refusal.js"
import type { ClusterAdmission } from "./presence.js"
import type { Reconnect } from "./reconnect.js"

export const inert: ConnectionHandle = Object.freeze({
  connId: "",
  close: () => {},
  join: () => false,
  leave: () => false
})

/** Whether `res` has what an SSE response needs (write, end, on, setHeader). */
export const isResponse = (res: unknown): res is NodeResponse =>
  typeof res === "object" && res !== null &&
  typeof (res as NodeResponse).write === "function" &&
  typeof (res as NodeResponse).end === "function" &&
  typeof (res as NodeResponse).on === "function" &&
  typeof (res as NodeResponse).setHeader === "function"

/** Answers a request that will not become an SSE connection. */
export const refuse = (res: NodeResponse, status: number, body: string, retryAfter: boolean): void => {
  try {
    if (!res.headersSent) {
      res.statusCode = status
      if (retryAfter) res.setHeader("Retry-After", "2")
      res.setHeader("Content-Type", "text/plain; charset=utf-8")
    }
    if (res.writableEnded !== true) (res as unknown as { end(body: string): void }).end(body)
  } catch {
    // The response cannot be answered (its socket is gone, or it refuses to write):
    // destroyed, so the request does not hang; nothing more can be done with it.
    try {
      ;(res as { destroy?: () => unknown }).destroy?.()
    } catch {
      // already destroyed
    }
  }
}

/** `Last-Event-ID` header (decoded as UTF-8), else `?lastEventId=` / `?last-event-id=` / `?Last-Event-ID=`. */
const lastEventIdOf = (res: NodeResponse): string | undefined => {
  const req = res.req
  if (req === undefined || req === null) return undefined
  return lastEventIdFrom(req.headers?.["last-event-id"], req.url)
}

export class Registration {
  /** False after `stopAccepting()` / `shutdown()`: new connections get 503 + `Retry-After`. */
  accepting = true
  /**
   * Set by cluster-wide presence (`connectionLimitScope: 'cluster'`, see
   * `internal/presence.ts`): a registration that passed the local checks is opened by
   * the hook once the cluster admits it (`open` sets the SSE headers and attaches).
   */
  private admission: ClusterAdmission | undefined = undefined
  private readonly retryFrames = new Map<number, Uint8Array>()
  private readonly connConfigs = new Map<string, ConnConfig>()
  private readonly connPrefix = Math.random().toString(36).slice(2, 8)
  private connCounter = 0

  constructor(
    private readonly options: Resolved,
    private readonly hub: Hub,
    private readonly events: Events,
    private readonly prep: SendPrep,
    private readonly reconnect: Reconnect
  ) {}

  /**
   * Registers an SSE connection on a Node response. Invalid input or a stopped
   * instance answer the response (400 / 503) and return the error; the caller gets
   * an inert handle.
   */
  register(
    userId: unknown,
    res: NodeResponse,
    options: RegisterOptions | undefined
  ): Either.Either<ConnectionHandle, InvalidInput | ShuttingDown | LimitExceeded> {
    if (!isResponse(res)) {
      return Either.left(new InvalidInput({ field: "res", reason: `must be a writable http.ServerResponse, got ${describe(res)}` }))
    }
    // Before any refusal: refusing would end the response of the live connection.
    const existing = (res as { [kConn]?: Conn | undefined })[kConn]
    if (existing !== undefined && !existing.closed) {
      return Either.left(new InvalidInput({ field: "res", reason: `is already registered (connection ${existing.id})` }))
    }
    if (!this.accepting) {
      refuse(res, 503, "Server is shutting down", true)
      return Either.left(new ShuttingDown({ operation: "registerConnection" }))
    }
    if (res.writableEnded === true || res.destroyed === true) {
      return Either.left(new InvalidInput({ field: "res", reason: "is already ended" }))
    }
    const checked = this.check(userId, options)
    if (Either.isLeft(checked)) {
      refuse(res, 400, invalidInputText(checked.left), false)
      return Either.left(checked.left)
    }
    const admitted = this.admit(userId as string)
    if (Either.isLeft(admitted)) {
      const perUser = admitted.left.limit === "maxConnectionsPerUser"
      refuse(res, perUser ? 429 : 503, perUser ? "Too many connections for this user" : "Too many connections", !perUser)
      return Either.left(admitted.left)
    }
    if (this.admission !== undefined) {
      const connId = this.nextConnId()
      const resolved = checked.right
      return Either.right(this.admission.now(userId as string, res, connId, () => {
        const opened = this.open(userId as string, res, resolved, connId)
        if (opened instanceof InvalidInput) {
          this.events.report(opened)
          return inert
        }
        return opened
      }))
    }
    const opened = this.open(userId as string, res, checked.right, this.nextConnId())
    return opened instanceof InvalidInput ? Either.left(opened) : Either.right(opened)
  }

  /**
   * Sets the SSE headers and attaches (`register` after its checks). A response whose
   * headers cannot be written is answered with 500 and not counted: it would go out
   * without `Content-Type: text/event-stream`, which an EventSource refuses.
   */
  private open(userId: string, res: NodeResponse, resolved: ResolvedConnection, connId: string): ConnectionHandle | InvalidInput {
    const existing = (res as { [kConn]?: Conn | undefined })[kConn]
    if (existing !== undefined && !existing.closed) {
      // registered meanwhile (while the cluster-wide admission was pending)
      return new InvalidInput({ field: "res", reason: `is already registered (connection ${existing.id})` })
    }
    if (!res.headersSent) {
      const headers = sseHeaders(res, resolved.headers)
      try {
        if (typeof res.writeHead === "function") {
          // One header block, merged with headers the application set before; cheaper
          // per connection than one setHeader per header.
          res.writeHead(200, headers as OutgoingHttpHeaders)
        } else {
          res.statusCode = 200
          for (const name of Object.keys(headers)) res.setHeader(name, headers[name]!)
        }
      } catch (cause) {
        refuse(res, 500, "could not start the SSE response", false)
        return new InvalidInput({ field: "res", reason: `the SSE headers could not be written: ${textOf(cause)}` })
      }
    }
    // Headers sent by the application before (documented as tolerated): used as they are.
    return this.attach(userId, res, resolved, resolved.lastEventId ?? lastEventIdOf(res), connId)
  }

  /** The shared settings of connections registered with the same options. */
  private connConfig(resolved: ResolvedConnection, highWaterMark: number): ConnConfig {
    const key = `${resolved.maxItems}|${resolved.maxBytes}|${resolved.policy}|${resolved.keepAliveMs}|${highWaterMark}`
    let config = this.connConfigs.get(key)
    if (config === undefined) {
      config = {
        hub: this.hub,
        maxItems: resolved.maxItems,
        maxBytes: resolved.maxBytes,
        policy: resolved.policy,
        keepAliveMs: resolved.keepAliveMs,
        highWaterMark
      }
      if (this.connConfigs.size < 256) this.connConfigs.set(key, config)
    }
    return config
  }

  /** Installs (or, with `undefined`, removes) the cluster-wide admission hook (presence). */
  setAdmission(admission: ClusterAdmission | undefined): void {
    this.admission = admission
  }

  /**
   * The registration path of an endpoint that answers first and attaches later (the
   * platform's): the checks and limits of `register` (no response to refuse: the
   * endpoint maps the refusal), then the cluster-wide cap; the connection is then made
   * by the admission's `attach` on the endpoint's sink, with the same id. Reports nothing.
   */
  admitEndpoint(
    userId: unknown,
    options: RegisterOptions | undefined,
    extraCheck?: () => InvalidInput | undefined
  ): Effect.Effect<Admission, InvalidInput | ShuttingDown | LimitExceeded> {
    return Effect.suspend((): Effect.Effect<Admission, InvalidInput | ShuttingDown | LimitExceeded> => {
      if (!this.accepting) return Effect.fail(new ShuttingDown({ operation: "registerConnection" }))
      const checked = this.check(userId, options)
      if (Either.isLeft(checked)) return Effect.fail(checked.left)
      const bad = extraCheck?.()
      if (bad !== undefined) return Effect.fail(bad)
      const admitted = this.admit(userId as string)
      if (Either.isLeft(admitted)) return Effect.fail(admitted.left)
      const resolved = checked.right
      const connId = this.nextConnId()
      const cluster = this.admission
      const admission = this.endpointAdmission(userId as string, resolved, connId, cluster)
      if (cluster === undefined) return Effect.succeed(admission)
      return Effect.flatMap(cluster.later(userId as string, connId), (): Effect.Effect<Admission, ShuttingDown> => {
        if (this.accepting) return Effect.succeed(admission)
        cluster.cancel(connId)
        return Effect.fail(new ShuttingDown({ operation: "registerConnection" }))
      })
    })
  }

  private endpointAdmission(userId: string, resolved: ResolvedConnection, connId: string, cluster: ClusterAdmission | undefined): Admission {
    let done = false
    return {
      connId,
      lastEventId: resolved.lastEventId,
      headers: resolved.headers,
      attach: (sink, lastEventId) => {
        if (done) return undefined
        done = true
        // Checked when admitted; checked again now, as connections admitted together
        // before any of them attached could otherwise overshoot `maxConnections`.
        const max = this.options.maxConnections
        if (!this.accepting || (max > 0 && this.hub.conns.size >= max)) {
          cluster?.cancel(connId)
          return undefined
        }
        try {
          return this.attach(userId, sink, resolved, lastEventId, connId)
        } catch (error) {
          // a sink that throws where a response would not (its listeners, its first write)
          this.events.report(new CallbackFailed({ callback: "endpoint sink", cause: error }))
          return undefined
        }
      },
      cancel: () => {
        if (done) return
        done = true
        cluster?.cancel(connId)
      }
    }
  }

  /** Closes connection `connId`, reporting `reason` first when given; false: no such connection. */
  closeConnection(connId: string, reason?: SseKifyError): boolean {
    const conn = this.hub.conns.get(connId)
    if (conn === undefined) return false
    if (reason !== undefined) this.events.report(reason)
    this.hub.remove(conn, true)
    return true
  }

  /** A new connection id. */
  nextConnId(): string {
    return this.connPrefix + (++this.connCounter).toString(36)
  }

  /**
   * Applies `maxConnections` and `maxConnectionsPerUser` before a connection is made:
   * refuses it, or (policy `'closeOldest'`) closes the user's oldest connections.
   */
  admit(userId: string): Either.Either<void, LimitExceeded> {
    const o = this.options
    if (o.maxConnections > 0 && this.hub.conns.size >= o.maxConnections) {
      return Either.left(new LimitExceeded({ limit: "maxConnections", value: o.maxConnections }))
    }
    const max = o.maxConnectionsPerUser
    if (max > 0 && this.hub.userConnectionCount(userId) >= max) {
      const error = new LimitExceeded({ limit: "maxConnectionsPerUser", value: max, userId })
      if (o.connectionLimitPolicy === "reject") return Either.left(error)
      this.events.report(error)
      const conns = this.hub.connectionsOf(userId)
      const excess = conns.length - max + 1
      for (const conn of conns.slice(0, excess)) this.hub.remove(conn, true)
    }
    return Either.right(undefined)
  }

  /** Joins a room within the name and count limits; a refusal is an `'error'` event. */
  join(conn: Conn, room: unknown): boolean {
    if (conn.closed) return false
    if (!isNonEmptyString(room) || room.length > this.options.maxRoomNameLength) {
      this.events.report(new InvalidInput({ field: "room", reason: `must be a non-empty string of at most ${this.options.maxRoomNameLength} characters, got ${describe(room)}` }))
      return false
    }
    if (conn.rooms !== undefined && conn.rooms.size >= this.options.maxRoomsPerConnection && !conn.rooms.has(room)) {
      this.events.report(new LimitExceeded({ limit: "maxRoomsPerConnection", value: this.options.maxRoomsPerConnection, userId: conn.userId }))
      return false
    }
    return this.hub.join(conn, room)
  }

  /**
   * Validates what `register` / `attach` take. The options are read once, here; a
   * getter or proxy that throws while they are read makes them invalid.
   */
  check(userId: unknown, options: RegisterOptions | undefined): Either.Either<ResolvedConnection, InvalidInput> {
    const badUser = this.prep.checkUserId(userId)
    if (badUser !== undefined) return Either.left(badUser)
    try {
      return Either.right(resolveConnection(options, this.options))
    } catch (e) {
      if (e instanceof InvalidInput) return Either.left(e)
      return Either.left(new InvalidInput({ field: "options", reason: `could not be read: ${textOf(e)}` }))
    }
  }

  /**
   * Makes a connection on any sink (a Node response whose headers are set, or the
   * platform path's stream sink): writes `retry:`, registers it, joins its rooms,
   * replays after `lastEventId`, emits `'connect'`.
   */
  attach(
    userId: string,
    sink: SinkResponse,
    resolved: ResolvedConnection,
    lastEventId: string | undefined,
    connId: string = this.nextConnId()
  ): ConnectionHandle {
    const conn = new Conn(connId, userId, sink, this.connConfig(resolved, sink.writableHighWaterMark ?? 16_384))
    const hub = this.hub
    let ok: boolean
    try {
      ok = sink.write(this.retryFrame(resolved.retryMs))
    } catch {
      // the socket is gone: its 'close' removes the connection
      ok = true
    }
    hub.add(conn)
    if (!ok) hub.writer.block(conn)
    for (const room of resolved.rooms) hub.join(conn, room)
    const routes = hub.routes
    if (routes !== undefined && !conn.closed) {
      // Routed mode: the user's (and the rooms') channels may not be confirmed yet.
      // Local sends reach the connection at once; its replay runs, and 'connect' fires,
      // once they are, so what another instance published meanwhile comes from the
      // replay store. Until then a reconnect's live frames are held (written after the
      // replay, those it had skipped).
      const channels = [routes.userChannel(userId)]
      for (const room of resolved.rooms) channels.push(routes.roomChannel(room))
      const ready = routes.whenReady(channels, () => {
        if (conn.closed) return
        if (lastEventId !== undefined) this.reconnect.replayTo(conn, lastEventId)
        if (!conn.closed) this.events.emit("connect", { userId, connId })
      })
      if (!ready) {
        if (lastEventId !== undefined) hub.writer.hold(conn)
        return this.handleOf(conn)
      }
    }
    if (lastEventId !== undefined) this.reconnect.replayTo(conn, lastEventId)
    if (!conn.closed) this.events.emit("connect", { userId, connId })
    return this.handleOf(conn)
  }

  private handleOf(conn: Conn): ConnectionHandle {
    const hub = this.hub
    return {
      connId: conn.id,
      close: () => hub.remove(conn, true),
      join: (room: string) => this.join(conn, room),
      leave: (room: string) => isNonEmptyString(room) ? hub.leave(conn, room) : false
    }
  }

  private retryFrame(ms: number): Uint8Array {
    let frame = this.retryFrames.get(ms)
    if (frame === undefined) {
      frame = Frame.retry(ms)
      if (this.retryFrames.size < 64) this.retryFrames.set(ms, frame)
    }
    return frame
  }
}
