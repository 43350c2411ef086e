/**
 * The implementation behind the `SseKify` service and the `SSEKify` facade: the send
 * pipeline (auto fields → seq → frame id → serialize once → encode once → deliver →
 * record for replay), the bus, registration, stats and shutdown. Synchronous where the
 * API is synchronous; the Effect service wraps it.
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import { randomBytes } from "node:crypto"
import type { OutgoingHttpHeaders } from "node:http"
import * as Envelope from "../Envelope.js"
import {
  BackpressureDisconnect,
  type BusMessageInvalid,
  CallbackFailed,
  InvalidInput,
  LastEventIdTooLong,
  LimitExceeded,
  PayloadTooLarge,
  RequestIdRequired,
  SerializeFailed,
  ShuttingDown,
  type SendError,
  type SseKifyError,
  type TransportError
} from "../Errors.js"
import * as Frame from "../Frame.js"
import type { Lookup, ReplayBufferService } from "../ReplayBuffer.js"
import type {
  ConnectionHandle,
  NodeResponse,
  RegisterOptions,
  SendOptions,
  ShutdownOptions,
  SseKifyEvent,
  SseKifyEventMap,
  Stats
} from "./domain.js"
import type { TransportService } from "../Transport.js"
import { instanceBits, Snowflake, TimestampIds } from "./frameId.js"
import { Conn, type ConnConfig, Hub, kConn, type SinkResponse } from "./hub.js"
import { lastEventIdFrom, trimId } from "./lastEventId.js"
import { DEFAULTS, describe, type Resolved, type ResolvedConnection, resolveConnection } from "./options.js"
import type { Admission } from "./presence.js"
import { ReplayGuard } from "./replayGuard.js"
import type { SequencerImpl } from "./sequencer.js"


type EventName = keyof SseKifyEventMap
type Listener = (event: SseKifyEvent) => void

type Prepared = { readonly data: unknown; readonly event: string | undefined; readonly id: string | undefined }
type PreparedData = { readonly data: unknown; readonly seqKey: string | undefined; readonly seqValue: unknown; readonly final: boolean }
type PrepareError = RequestIdRequired | SerializeFailed | CallbackFailed
type Encoded = { readonly frame: Uint8Array; readonly text: string }

const SSE_HEADER_OBJECT: Record<string, string | ReadonlyArray<string>> = Object.freeze({
  "Content-Type": "text/event-stream; charset=utf-8",
  "Cache-Control": "no-cache, no-transform",
  "Connection": "keep-alive",
  "X-Accel-Buffering": "no"
})

/** HTTP/2 forbids connection-specific headers (RFC 9113 §8.2.2): no `Connection`. */
const SSE_HEADER_OBJECT_H2: Record<string, string | ReadonlyArray<string>> = Object.freeze({
  "Content-Type": "text/event-stream; charset=utf-8",
  "Cache-Control": "no-cache, no-transform",
  "X-Accel-Buffering": "no"
})

/** Connection-specific headers: not sent on an HTTP/2 response, whoever sets them (RFC 9113 §8.2.2). */
const H2_FORBIDDEN = new Set(["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"])

/**
 * Whether `res` is an HTTP/2 response (`node:http2`'s compat `Http2ServerResponse`: its
 * request says version 2; without a request, it has a `stream`), where Node would drop
 * a `Connection` header with an `UnsupportedWarning`.
 */
const isHttp2 = (res: NodeResponse): boolean =>
  res.req != null ? res.req.httpVersionMajor >= 2 : "stream" in res

/**
 * The SSE headers for `res` with the connection's (checked) extra headers; an extra one
 * replaces an SSE one of the same name. On HTTP/2, connection-specific extra headers are
 * left out (Node would refuse or drop them).
 */
const sseHeaders = (
  res: NodeResponse,
  extra: Readonly<Record<string, string | ReadonlyArray<string>>> | undefined
): Record<string, string | ReadonlyArray<string>> => {
  const h2 = isHttp2(res)
  const base = h2 ? SSE_HEADER_OBJECT_H2 : SSE_HEADER_OBJECT
  if (extra === undefined) return base
  const names = Object.keys(extra)
  if (names.length === 0) return base
  const lower = new Set(names.map((name) => name.toLowerCase()))
  // no prototype: a header named `__proto__` is a header like any other
  const out: Record<string, string | ReadonlyArray<string>> = Object.create(null)
  for (const name of Object.keys(base)) if (!lower.has(name.toLowerCase())) out[name] = base[name]!
  for (const name of names) if (!h2 || !H2_FORBIDDEN.has(name.toLowerCase())) out[name] = extra[name]!
  return out
}

/** Calls a user function from the options; what it throws becomes a `CallbackFailed` (thrown, caught by the send). */
const call = <A, R>(callback: string, f: (a: A) => R, a: A): R => {
  try {
    return f(a)
  } catch (cause) {
    throw new CallbackFailed({ callback, cause })
  }
}

const textOf = (cause: unknown): string => {
  try {
    return cause instanceof Error ? cause.message : String(cause)
  } catch {
    // a thrown value whose conversion to text throws too: named by its type
    return typeof cause
  }
}

const isPlainObject = (value: unknown): value is Record<string, unknown> => {
  if (typeof value !== "object" || value === null) return false
  const proto = Object.getPrototypeOf(value)
  return proto === Object.prototype || proto === null
}

const FIELD_UNSAFE = /[\r\n\0]/

const isNonEmptyString = (value: unknown): value is string => typeof value === "string" && value.length > 0

/** A seq key from `keyExtractor`: a non-empty string or a finite number. */
const asKey = (value: unknown): string | undefined => {
  if (typeof value === "string") return value.length > 0 ? value : undefined
  if (typeof value === "number" && Number.isFinite(value)) return String(value)
  return undefined
}

const inert: ConnectionHandle = Object.freeze({
  connId: "",
  close: () => {},
  join: () => false,
  leave: () => false
})

let instanceCounter = 0

export interface EngineDeps {
  readonly options: Resolved
  readonly transport: TransportService
  readonly replay: ReplayBufferService
  readonly sequencer: SequencerImpl
  readonly now: () => number
  /** Starts a repeating background ticker; returns its stop function. */
  readonly every: (ms: number, tick: () => void) => () => void
  /** Runs an effect in the background (replay lookups that are not synchronous). */
  readonly fork: (effect: Effect.Effect<void>) => void
}

export class Engine {
  readonly instanceId: string
  readonly hub: Hub
  readonly options: Resolved
  accepting = true
  shutdownStarted = false
  /** Set once the instance has shut down for good (after the grace period). */
  closedForGood = false
  /**
   * Set by cluster-wide presence (`connectionLimitScope: 'cluster'`, see
   * `internal/presence.ts`): a registration that passed the local checks is opened by
   * the hook once the cluster admits it (`open` sets the SSE headers and attaches).
   */
  private admission: Admission | undefined = undefined
  private readonly transport: TransportService
  private readonly replay: ReplayBufferService
  private readonly sequencer: SequencerImpl
  private readonly now: () => number
  private readonly fork: (effect: Effect.Effect<void>) => void
  private readonly listeners = new Set<{ readonly listener: Listener; readonly wants: ((type: EventName) => boolean) | undefined }>()
  private readonly counters = { errorCount: 0, replayed: 0, replayMisses: 0, published: 0, received: 0, busRejected: 0 }
  /** Signed bus: this boot's nonce and message counter, and the replay window of what arrives. */
  private readonly signedBus = { boot: randomBytes(9).toString("base64url"), counter: 0, guard: new ReplayGuard(Envelope.MAX_AGE_MS) }
  private readonly retryFrames = new Map<number, Uint8Array>()
  private readonly snowflake: Snowflake
  private readonly timestampIds: TimestampIds
  private readonly connPrefix: string
  private connCounter = 0
  /** The last order key given (see `nextOrder`). */
  private lastOrder = 0
  private isoMs = -1
  private iso = ""
  /** The serializer is `JSON.stringify` (its output has no raw line break). */
  private readonly jsonSerializer: boolean
  private readonly connConfigs = new Map<string, ConnConfig>()
  private errorListenerWarned = false

  constructor(deps: EngineDeps) {
    this.options = deps.options
    this.transport = deps.transport
    this.replay = deps.replay
    this.sequencer = deps.sequencer
    this.now = deps.now
    this.fork = deps.fork
    this.jsonSerializer = deps.options.serializer === JSON.stringify
    const pid = typeof process === "object" ? process.pid : 0
    this.instanceId = deps.options.instanceId ??
      `${Math.random().toString(36).slice(2, 10)}${(instanceCounter++).toString(36)}-${pid}`
    this.connPrefix = Math.random().toString(36).slice(2, 8)
    this.snowflake = new Snowflake(instanceBits(this.instanceId), this.now)
    this.timestampIds = new TimestampIds(this.instanceId, this.now)
    const keepAliveEvent = deps.options.keepAliveEvent
    this.hub = new Hub({
      onDisconnect: (conn) => this.emit("disconnect", { userId: conn.userId, connId: conn.id }),
      onBackpressureDisconnect: (error) => this.report(error),
      onDrop: (conn, policy, frames) => {
        if (this.wants("drop")) this.emit("drop", { connId: conn.id, userId: conn.userId, policy, frames })
      },
      backpressureError: (conn) =>
        new BackpressureDisconnect({
          connId: conn.id,
          userId: conn.userId,
          queueItems: conn.count,
          queueBytes: conn.bytes
        }),
      every: deps.every,
      now: this.now,
      ping: keepAliveEvent === undefined
        ? Frame.ping
        : (now) => {
          const ping = Frame.ping(now)
          const named = Frame.message(String(now), { event: keepAliveEvent })
          return Buffer.concat([ping, named])
        }
    })
  }

  // ---------------------------------------------------------------------------
  // events
  // ---------------------------------------------------------------------------

  /**
   * Adds an event listener. `wants` (optional) says which events it takes, so that
   * frequent events nobody takes cost nothing (no payload is built).
   */
  subscribe(listener: Listener, wants?: (type: EventName) => boolean): () => void {
    const entry = { listener, wants }
    this.listeners.add(entry)
    return () => this.listeners.delete(entry)
  }

  /** Whether a listener takes events of `type` (check before building a frequent payload). */
  wants(type: EventName): boolean {
    for (const entry of this.listeners) if (entry.wants === undefined || entry.wants(type)) return true
    return false
  }

  emit<K extends EventName>(type: K, payload: SseKifyEventMap[K]): void {
    if (this.listeners.size === 0) return
    const event = { type, payload } as SseKifyEvent
    for (const entry of this.listeners) {
      if (entry.wants !== undefined && !entry.wants(type)) continue
      try {
        entry.listener(event)
      } catch (cause) {
        // A listener's failure is not the sender's: the operation goes on and the failure
        // is reported; an 'error' listener's own failure as a process warning (once per
        // instance), since reporting it as an 'error' would call that listener again.
        if (type !== "error") this.report(new CallbackFailed({ callback: `'${type}' listener`, cause }))
        else if (!this.errorListenerWarned) {
          this.errorListenerWarned = true
          warn(`an 'error' listener threw: ${textOf(cause)}`, "CALLBACK_FAILED")
        }
      }
    }
  }

  /** Counts an error and emits it as an `'error'` event. */
  report(error: SseKifyError | Error): void {
    this.counters.errorCount++
    this.emit("error", error)
  }

  // ---------------------------------------------------------------------------
  // connections
  // ---------------------------------------------------------------------------

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
      refuse(res, 400, checked.left.field === "userId" ? "userId required" : "invalid SSE connection options", false)
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
      return Either.right(this.admission(userId as string, res, connId, () => {
        const opened = this.open(userId as string, res, resolved, connId)
        if (opened instanceof InvalidInput) {
          this.report(opened)
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
  setAdmission(admission: Admission | undefined): void {
    this.admission = admission
  }

  /** Closes connection `connId`, reporting `reason` first when given; false: no such connection. */
  closeConnection(connId: string, reason?: Error): boolean {
    const conn = this.hub.conns.get(connId)
    if (conn === undefined) return false
    if (reason !== undefined) this.report(reason)
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
      this.report(error)
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
      this.report(new InvalidInput({ field: "room", reason: `must be a non-empty string of at most ${this.options.maxRoomNameLength} characters, got ${describe(room)}` }))
      return false
    }
    if (conn.rooms !== undefined && conn.rooms.size >= this.options.maxRoomsPerConnection && !conn.rooms.has(room)) {
      this.report(new LimitExceeded({ limit: "maxRoomsPerConnection", value: this.options.maxRoomsPerConnection, userId: conn.userId }))
      return false
    }
    return this.hub.join(conn, room)
  }

  /**
   * Validates what `register` / `attach` take. The options are read once, here; a
   * getter or proxy that throws while they are read makes them invalid.
   */
  check(userId: unknown, options: RegisterOptions | undefined): Either.Either<ResolvedConnection, InvalidInput> {
    const badUser = this.checkUserId(userId)
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
    if (lastEventId !== undefined) this.replayTo(conn, lastEventId)
    if (!conn.closed) this.emit("connect", { userId, connId })
    return {
      connId,
      close: () => hub.remove(conn, true),
      join: (room: string) => this.join(conn, room),
      leave: (room: string) => isNonEmptyString(room) ? hub.leave(conn, room) : false
    }
  }

  static readonly inert = inert

  private retryFrame(ms: number): Uint8Array {
    let frame = this.retryFrames.get(ms)
    if (frame === undefined) {
      frame = Frame.retry(ms)
      if (this.retryFrames.size < 64) this.retryFrames.set(ms, frame)
    }
    return frame
  }

  /** Writes what `conn` missed after `lastEventId`, before any live frame. */
  private replayTo(conn: Conn, lastEventId: string): void {
    if (lastEventId.length > this.options.maxLastEventIdLength) {
      this.report(new LastEventIdTooLong({ length: lastEventId.length, limit: this.options.maxLastEventIdLength }))
      return
    }
    if (!this.replay.enabled || lastEventId.length === 0) return
    const gapEvent = this.options.replayGapEvent
    const gap = (reason: string) => Frame.message(JSON.stringify({ lastEventId, reason }), { event: gapEvent! })
    const write = (frames: ReadonlyArray<Uint8Array>, lastOrder: number | undefined) => {
      if (conn.held === undefined) {
        this.hub.writer.pushAll(conn, frames)
      } else {
        // A shared store (Redis) may already hold frames this instance has not received
        // yet (the publisher recorded them first): they arrive live after the lookup,
        // or arrived while it ran (held). Live frames at or below the newest order key
        // of the lookup are not written again.
        this.hub.writer.release(conn, frames, lastOrder)
      }
    }
    const apply = (lookup: Lookup) => {
      if (lookup._tag === "Found") {
        this.counters.replayed += lookup.frames.length
        if (lookup.missed === true) this.counters.replayMisses++
        // Frames sent while the user had no connection were not kept: say so first.
        write(lookup.missed === true && gapEvent !== undefined ? [gap("offline"), ...lookup.frames] : lookup.frames, lookup.lastOrder)
        return
      }
      this.counters.replayMisses++
      write(gapEvent === undefined ? [] : [gap(lookup.reason)], undefined)
    }
    const sync = this.replay.lookupSync
    if (sync !== undefined) {
      apply(sync(conn.userId, lastEventId))
      return
    }
    this.hub.writer.hold(conn)
    this.fork(
      this.replay.lookup(conn.userId, lastEventId).pipe(
        Effect.matchEffect({
          onFailure: (error) =>
            Effect.sync(() => {
              this.report(error)
              this.hub.writer.release(conn, [])
            }),
          onSuccess: (lookup) => Effect.sync(() => apply(lookup))
        })
      )
    )
  }

  /**
   * Closes a user's connections, or every connection when `userId` is `undefined`
   * (omitted). Any other value that is not a user id (`''`, `null`, a number) is an
   * `InvalidInput` and closes nothing.
   */
  close(userId?: unknown): InvalidInput | undefined {
    if (userId === undefined) {
      for (const conn of Array.from(this.hub.conns.values())) this.hub.remove(conn, true)
      return undefined
    }
    const bad = this.checkUserId(userId)
    if (bad !== undefined) return bad
    for (const conn of Array.from(this.hub.connectionsOf(userId as string))) this.hub.remove(conn, true)
    return undefined
  }

  // ---------------------------------------------------------------------------
  // sending
  // ---------------------------------------------------------------------------

  /**
   * Auto fields, then the per-key seq: one copy of the caller's plain object with every
   * addition (the caller's object is never changed). With `localSeq`, the seq comes from
   * the in-memory counter now; otherwise `seqKey` says which global counter to ask.
   *
   * Everything that touches the caller's object (its prototype, its fields, the copy)
   * runs inside one `try`: a getter or proxy trap that throws is a `SerializeFailed`, as
   * it would be in the serializer; a function of the options that throws (`call`) is a
   * `CallbackFailed`. Either way nothing is sent.
   */
  private prepareData(data: unknown, now: number, localSeq: boolean): PreparedData | PrepareError {
    try {
      return this.prepareDataUnsafe(data, now, localSeq)
    } catch (e) {
      return e instanceof CallbackFailed ? e : new SerializeFailed({ cause: e })
    }
  }

  private prepareDataUnsafe(data: unknown, now: number, localSeq: boolean): PreparedData | RequestIdRequired {
    const o = this.options
    if (!isPlainObject(data)) return { data, seqKey: undefined, seqValue: undefined, final: false }
    const addTimestamp = o.timestamp !== false && data.timestamp == null
    const r = o.requestId
    const addRequestId = r.mode !== "off" && data[r.fieldName] == null
    if (addRequestId && r.mode === "require") return new RequestIdRequired({ fieldName: r.fieldName })
    const t = o.traceId
    const addTraceId = t.mode === "ifMissing" && data[t.fieldName] == null
    let current: Record<string, unknown> = data
    if (addTimestamp || addRequestId || addTraceId) {
      // Object.assign, not a spread: measured on Node 20, a spread copy is ~4x slower to
      // make and makes JSON.stringify of the copy ~2x slower.
      current = Object.assign({}, data)
      if (addTimestamp) current.timestamp = o.timestamp === "epochMs" ? now : this.isoOf(now)
      if (addRequestId) current[r.fieldName] = call("autoFields.requestId.getter", r.getter!, undefined)
      if (addTraceId) current[t.fieldName] = call("autoFields.traceId.getter", t.getter!, undefined)
    }
    let seqKey: string | undefined
    let seqValue = current[o.seqField]
    let final = false
    if (o.enableSeq && seqValue == null) {
      seqKey = asKey(call("seq.keyExtractor", o.seqKey, current))
      if (seqKey !== undefined) final = Boolean(call("seq.finalPredicate", o.seqFinal, current))
      if (seqKey !== undefined && localSeq) {
        seqValue = this.sequencer.nextLocal(seqKey, final)
        if (current === data) current = Object.assign({}, data)
        current[o.seqField] = seqValue
        seqKey = undefined
      }
    }
    return { data: current, seqKey, seqValue, final }
  }

  /** `new Date(ms).toISOString()`, computed once per millisecond. */
  private isoOf(ms: number): string {
    if (ms !== this.isoMs) {
      this.isoMs = ms
      this.iso = new Date(ms).toISOString()
    }
    return this.iso
  }

  /**
   * The frame's id: the explicit one, else the policy's. A policy function that throws
   * is a `CallbackFailed`; one that returns something that cannot be an id (not a string
   * or finite number, too long) an `InvalidInput`. Ids are trimmed like explicit ones.
   */
  private frameId(explicit: string | undefined, data: unknown, seq: unknown): string | undefined | CallbackFailed | InvalidInput {
    if (explicit !== undefined) return explicit
    const policy = this.options.frameIdPolicy
    if (policy === "none") return undefined
    const n = typeof seq === "number" ? seq : 0
    if (policy === "timestamp") return this.timestampIds.next(n)
    if (policy === "snowflake") return this.snowflake.next()
    let id: unknown
    try {
      id = policy(data, n)
    } catch (cause) {
      return new CallbackFailed({ callback: "seq.frameIdPolicy", cause })
    }
    if (id === undefined || id === null || id === "") return undefined
    if (typeof id !== "string" && !(typeof id === "number" && Number.isFinite(id))) {
      return new InvalidInput({ field: "seq.frameIdPolicy", reason: `must return a string, returned ${describe(id)}` })
    }
    return this.checkId("seq.frameIdPolicy", String(id))
  }

  /**
   * An id as it goes on the wire: spaces and tabs around it removed (HTTP trims the
   * `Last-Event-ID` header the browser echoes, so an id with them could never match),
   * within `maxIdLength`; CR / LF / NUL are reported (the frame replaces them).
   */
  private checkId(field: string, raw: string, reportUnsafe = true): string | InvalidInput {
    const id = trimId(raw)
    if (id.length === 0) return new InvalidInput({ field, reason: "is only spaces" })
    if (id.length > this.options.maxIdLength) {
      return new InvalidInput({ field, reason: `is longer than maxIdLength (${this.options.maxIdLength})` })
    }
    if (reportUnsafe && FIELD_UNSAFE.test(id)) {
      this.report(new InvalidInput({ field, reason: "contains CR, LF or NUL (replaced by spaces on the wire)" }))
    }
    return id
  }

  private checkOptions(opts: SendOptions | undefined): { event: string | undefined; id: string | undefined } | InvalidInput {
    if (opts === undefined || opts === null) return { event: undefined, id: undefined }
    if (typeof opts !== "object") return new InvalidInput({ field: "opts", reason: `must be an object, got ${describe(opts)}` })
    let event: unknown
    let id: unknown
    try {
      ;({ event, id } = opts as { event?: unknown; id?: unknown })
    } catch (cause) {
      return new InvalidInput({ field: "opts", reason: `could not be read: ${textOf(cause)}` })
    }
    let e: string | undefined
    if (event !== undefined && event !== null && event !== "") {
      if (typeof event !== "string") return new InvalidInput({ field: "opts.event", reason: `must be a string, got ${describe(event)}` })
      if (event.length > this.options.maxEventNameLength) {
        return new InvalidInput({ field: "opts.event", reason: `is longer than maxEventNameLength (${this.options.maxEventNameLength})` })
      }
      e = event
    }
    let i: string | undefined
    if (id !== undefined && id !== null && id !== "") {
      let raw: string
      if (typeof id === "string") raw = id
      else if (typeof id === "number" && Number.isFinite(id)) raw = String(id)
      else return new InvalidInput({ field: "opts.id", reason: `must be a string, got ${describe(id)}` })
      const checked = this.checkId("opts.id", raw, false)
      if (checked instanceof InvalidInput) return checked
      i = checked
    }
    // CR, LF and NUL cannot reach the wire (Frame replaces them by spaces, as 0.1.6 did);
    // the frame still goes out, and the caller hears of it.
    if (e !== undefined && FIELD_UNSAFE.test(e)) {
      this.report(new InvalidInput({ field: "opts.event", reason: "contains CR, LF or NUL (replaced by spaces on the wire)" }))
    }
    if (i !== undefined && FIELD_UNSAFE.test(i)) {
      this.report(new InvalidInput({ field: "opts.id", reason: "contains CR, LF or NUL (replaced by spaces on the wire)" }))
    }
    return { event: e, id: i }
  }

  /** Synchronous preparation (local seq): the `sendTo*` path. */
  private prepareLocal(data: unknown, opts: SendOptions | undefined, now: number): Prepared | SendError {
    const checked = this.checkOptions(opts)
    if (checked instanceof InvalidInput) return checked
    const p = this.prepareData(data, now, true)
    if (!("data" in p)) return p
    const id = this.frameId(checked.id, p.data, p.seqValue)
    if (typeof id === "object") return id
    return { data: p.data, event: checked.event, id }
  }

  /** Preparation with the global seq (the `publish*` path). */
  private prepareGlobal(data: unknown, opts: SendOptions | undefined, now: number): Effect.Effect<Prepared, SendError> {
    const checked = this.checkOptions(opts)
    if (checked instanceof InvalidInput) return Effect.fail(checked)
    const p = this.prepareData(data, now, false)
    if (!("data" in p)) return Effect.fail(p)
    if (p.seqKey === undefined) {
      const id = this.frameId(checked.id, p.data, p.seqValue)
      if (typeof id === "object") return Effect.fail(id)
      return Effect.succeed({ data: p.data, event: checked.event, id })
    }
    return Effect.flatMap(this.sequencer.next(p.seqKey, p.final), (seq): Effect.Effect<Prepared, SendError> => {
      let out: Record<string, unknown>
      try {
        // the caller's object itself when no auto field was added: copied again here
        out = Object.assign({}, p.data as Record<string, unknown>)
      } catch (cause) {
        return Effect.fail(new SerializeFailed({ cause }))
      }
      out[this.options.seqField] = seq
      const id = this.frameId(checked.id, out, seq)
      if (typeof id === "object") return Effect.fail(id)
      return Effect.succeed({ data: out, event: checked.event, id })
    })
  }

  /** Serializes once and encodes once; the size limit applies to the serialized data. */
  private encode(data: unknown, event: string | undefined, id: string | undefined): Encoded | SerializeFailed | PayloadTooLarge {
    let text: unknown
    try {
      text = this.options.serializer(data)
    } catch (cause) {
      return new SerializeFailed({ cause })
    }
    if (typeof text !== "string") {
      return new SerializeFailed({ cause: new TypeError(`the serializer returned ${describe(text)}, not a string`) })
    }
    const limit = this.options.maxPayloadBytes
    // UTF-8 needs at most 3 bytes per UTF-16 unit: only long strings need measuring.
    if (limit > 0 && text.length * 3 > limit) {
      const size = Buffer.byteLength(text, "utf8")
      if (size > limit) return new PayloadTooLarge({ size, limit })
    }
    // JSON.stringify never writes a raw line break: no need to look for one.
    return { frame: Frame.message(text, { id, event }, this.jsonSerializer), text }
  }

  private failed(error: SendError): number {
    this.report(error)
    return 0
  }

  /** An `InvalidInput` when `userId` is not a non-empty string within `maxUserIdLength`. */
  checkUserId(userId: unknown): InvalidInput | undefined {
    if (isNonEmptyString(userId) && userId.length <= this.options.maxUserIdLength) return undefined
    return new InvalidInput({
      field: "userId",
      reason: isNonEmptyString(userId)
        ? `is longer than maxUserIdLength (${this.options.maxUserIdLength})`
        : `must be a non-empty string, got ${describe(userId)}`
    })
  }

  /** An `InvalidInput` when `room` is not a non-empty string within `maxRoomNameLength`. */
  checkRoom(room: unknown): InvalidInput | undefined {
    if (isNonEmptyString(room) && room.length <= this.options.maxRoomNameLength) return undefined
    return new InvalidInput({
      field: "room",
      reason: `must be a non-empty string of at most ${this.options.maxRoomNameLength} characters, got ${describe(room)}`
    })
  }

  sendToUser(userId: unknown, data: unknown, opts?: SendOptions): number | SendError {
    if (this.closedForGood) return new ShuttingDown({ operation: "sendToUser" })
    const badUser = this.checkUserId(userId)
    if (badUser !== undefined) return badUser
    const now = this.now()
    const p = this.prepareLocal(data, opts, now)
    if (!("data" in p)) return p
    const e = this.encode(p.data, p.event, p.id)
    if (!("frame" in e)) return e
    return this.deliverUser(userId as string, e.frame, p.id, false, this.nextOrder(now))
  }

  sendToAll(data: unknown, opts?: SendOptions): number | SendError {
    if (this.closedForGood) return new ShuttingDown({ operation: "sendToAll" })
    const now = this.now()
    const p = this.prepareLocal(data, opts, now)
    if (!("data" in p)) return p
    const e = this.encode(p.data, p.event, p.id)
    if (!("frame" in e)) return e
    return this.deliverAll(e.frame, p.id, this.nextOrder(now))
  }

  sendToRoom(room: unknown, data: unknown, opts?: SendOptions): number | SendError {
    if (this.closedForGood) return new ShuttingDown({ operation: "sendToRoom" })
    const badRoom = this.checkRoom(room)
    if (badRoom !== undefined) return badRoom
    const members = this.hub.rooms.get(room as string)
    if (members === undefined || members.size === 0) return 0
    const now = this.now()
    const p = this.prepareLocal(data, opts, now)
    if (!("data" in p)) return p
    const e = this.encode(p.data, p.event, p.id)
    if (!("frame" in e)) return e
    return this.deliverRoom(room as string, e.frame, p.id, this.nextOrder(now))
  }

  /** The facade's form: failures become `'error'` events and a count of 0. */
  settle(result: number | SendError): number {
    return typeof result === "number" ? result : this.failed(result)
  }

  /** `published`: this instance published the message (it did not come off the bus). */
  /**
   * Where a frame goes among a user's frames in a shared replay store: send time × 1024
   * plus this instance's counter (the envelope carries both as `at` and `n`, so every
   * instance that records the frame gives it the same place).
   */
  private nextOrder(at = this.now()): number {
    // Strictly increasing: a counter cycling through 1024 values apart from the clock
    // wrapped inside a millisecond (two frames of that millisecond for one user then
    // swapped places in the store), as did a clock stepping back. More than 1024 in one
    // millisecond run ahead of the clock; the envelope carries the order's millisecond as its `at`.
    const order = Math.max(at * 1024, this.lastOrder + 1)
    this.lastOrder = order
    return order
  }

  private deliverUser(userId: string, frame: Uint8Array, id: string | undefined, published: boolean, order: number): number {
    const entry = this.hub.users.get(userId)
    if (entry === undefined) {
      // Not connected here: the replay buffer decides (memory: keep it with
      // `replayOffline` or remember it was missed; Redis: the publisher keeps it).
      if (id !== undefined && this.replay.enabled) this.replay.offline?.(userId, id, frame, published, order)
      return 0
    }
    const hub = this.hub
    let count = 0
    // `order <= conn.replayedTo`: the connection's replay is being fetched, or already
    // wrote this frame (see `Hub.holdOrSkip`); one compare for the others.
    if (Array.isArray(entry)) {
      for (let i = 0; i < entry.length; i++) {
        const conn = entry[i]!
        if (order <= conn.replayedTo ? hub.writer.holdOrSkip(conn, frame, order) : hub.writer.push(conn, frame)) count++
      }
    } else if (order <= entry.replayedTo ? hub.writer.holdOrSkip(entry, frame, order) : hub.writer.push(entry, frame)) count++
    if (id !== undefined && this.replay.enabled) this.replay.record(userId, id, frame, order)
    if (this.wants("message-sent")) this.emit("message-sent", { scope: "user", userId, count })
    return count
  }

  private deliverAll(frame: Uint8Array, id: string | undefined, order: number): number {
    const hub = this.hub
    let count = 0
    for (const conn of hub.conns.values()) {
      if (order <= conn.replayedTo ? hub.writer.holdOrSkip(conn, frame, order) : hub.writer.push(conn, frame)) count++
    }
    if (id !== undefined && this.replay.enabled) this.replay.recordAll(hub.users.keys(), id, frame, order)
    if (this.wants("message-sent")) this.emit("message-sent", { scope: "all", count })
    return count
  }

  private deliverRoom(room: string, frame: Uint8Array, id: string | undefined, order: number): number {
    const members = this.hub.rooms.get(room)
    if (members === undefined) return 0
    const hub = this.hub
    let count = 0
    for (const conn of members) {
      if (order <= conn.replayedTo ? hub.writer.holdOrSkip(conn, frame, order) : hub.writer.push(conn, frame)) count++
    }
    if (id !== undefined && this.replay.enabled) this.replay.recordAll(userIdsOf(members), id, frame, order)
    if (this.wants("message-sent")) this.emit("message-sent", { scope: "room", room, count })
    return count
  }

  /**
   * Delivers locally at once, then publishes on the bus. Local delivery happens even
   * when the bus fails; the bus failure is then the result.
   */
  publish(
    type: Envelope.TargetType,
    target: string | undefined,
    data: unknown,
    opts: SendOptions | undefined
  ): Effect.Effect<void, SendError | TransportError | ShuttingDown> {
    return Effect.suspend((): Effect.Effect<void, SendError | TransportError | ShuttingDown> => {
      if (this.closedForGood) {
        return Effect.fail(new ShuttingDown({ operation: type === "room" ? "publishToRoom" : "publish" }))
      }
      // "everyone" is a separate type: a user or room target must be a valid id
      // (`''` / `null` never widen a message to everyone)
      const badTarget = type === "all" ? undefined : type === "room" ? this.checkRoom(target) : this.checkUserId(target)
      if (badTarget !== undefined) return Effect.fail(badTarget)
      return Effect.flatMap(this.prepareGlobal(data, opts, this.now()), (p): Effect.Effect<void, SendError | TransportError> => {
        const e = this.encode(p.data, p.event, p.id)
        if (!("frame" in e)) return Effect.fail(e)
        const order = this.nextOrder(this.now())
        // the order's millisecond (ahead of the clock only past 1024 sends in one)
        const at = Math.floor(order / 1024)
        if (type === "all") this.deliverAll(e.frame, p.id, order)
        else if (type === "user") this.deliverUser(target!, e.frame, p.id, true, order)
        else this.deliverRoom(target!, e.frame, p.id, order)
        if (this.transport.kind === "none") return Effect.void
        const secret = this.options.busSecret
        let message: string
        try {
          message = Envelope.encode(
            Envelope.make({
              type,
              target,
              data: p.data,
              event: p.event,
              id: p.id,
              at,
              origin: this.instanceId,
              n: order & 1023,
              // signed bus: what the receivers' replay window checks (covered by the HMAC)
              b: secret === undefined ? undefined : this.signedBus.boot,
              c: secret === undefined ? undefined : this.signedBus.counter + 1
            }),
            e.text
          )
        } catch (cause) {
          return Effect.fail(new SerializeFailed({ cause }))
        }
        if (secret !== undefined) {
          this.signedBus.counter++
          message = Envelope.sign(message, secret, this.options.channel)
        }
        this.counters.published++
        return this.transport.publish(this.options.channel, message)
      })
    }).pipe(Effect.tapError((error) => Effect.sync(() => this.report(error))))
  }

  /**
   * A message from the bus: checked (signature bound to the channel, shape, field
   * limits, replay window), deduplicated by origin, serialized once.
   */
  receive(raw: string): void {
    const secret = this.options.busSecret
    let text = raw
    if (secret !== undefined) {
      const verified = Envelope.verify(raw, secret, this.options.channel)
      if (Either.isLeft(verified)) return this.rejectBusMessage(verified.left)
      text = verified.right
    }
    const decoded = Envelope.decode(text)
    if (Either.isLeft(decoded)) return this.rejectBusMessage(decoded.left)
    const env = decoded.right
    if (env.origin === this.instanceId) return
    const over = Envelope.overLimit(env, this.options)
    if (over !== undefined) return this.rejectBusMessage(Envelope.invalid(over, raw))
    if (secret !== undefined) {
      const refused = env.origin === undefined || env.b === undefined || env.c === undefined
        ? "signed without origin, boot nonce and counter (an older signed format): refused, it could be replayed"
        : this.signedBus.guard.admit(env.origin.length + ":" + env.origin + env.b, env.c, env.at, this.now())
      if (refused !== undefined) return this.rejectBusMessage(Envelope.invalid(refused, raw))
    }
    this.counters.received++
    if (this.wants("publish")) {
      // Listeners get the envelope in 0.1.6's shape, without the bus's own fields.
      const { b: _b, c: _c, n: _n, sig: _sig, ...published } = env
      this.emit("publish", published)
    }
    const e = this.encode(env.data, env.event, env.id)
    if (!("frame" in e)) {
      this.report(e)
      return
    }
    const order = env.at * 1024 + ((env.n ?? 0) & 1023)
    if (env.type === "all") this.deliverAll(e.frame, env.id, order)
    else if (env.type === "user") this.deliverUser(env.target!, e.frame, env.id, false, order)
    else if (env.type === "room") {
      const members = this.hub.rooms.get(env.target!)
      if (members !== undefined && members.size > 0) this.deliverRoom(env.target!, e.frame, env.id, order)
    }
  }

  /** A message from the bus refused: reported and counted in `stats().busRejected`. */
  private rejectBusMessage(error: BusMessageInvalid): void {
    this.counters.busRejected++
    this.report(error)
  }

  // ---------------------------------------------------------------------------
  // stats and lifecycle
  // ---------------------------------------------------------------------------

  stats(): Stats {
    const m = this.hub.metrics
    const s = this.sequencer.counters
    return {
      connections: this.hub.conns.size,
      users: this.hub.users.size,
      rooms: this.hub.rooms.size,
      sent: m.sent,
      droppedOldest: m.droppedOldest,
      droppedNewest: m.droppedNewest,
      disconnectedByBackpressure: m.disconnectedByBackpressure,
      queueItemsMax: m.queueItemsMax,
      queueBytesMax: m.queueBytesMax,
      errorCount: this.counters.errorCount,
      seqIncrsLocal: s.seqIncrsLocal,
      seqIncrsRedis: s.seqIncrsRedis,
      lastSeqKvFallbackAt: s.lastSeqKvFallbackAt,
      replayed: this.counters.replayed,
      replayMisses: this.counters.replayMisses,
      published: this.counters.published,
      received: this.counters.received,
      busRejected: this.counters.busRejected,
      accepting: this.accepting
    }
  }

  userConnectionIds(userId: unknown): Array<string> {
    if (!isNonEmptyString(userId)) return []
    return this.hub.connectionsOf(userId).map((conn) => conn.id)
  }

  userConnectionCount(userId: unknown): number {
    return isNonEmptyString(userId) ? this.hub.userConnectionCount(userId) : 0
  }

  allUsersConnectionStats(): Record<string, number> {
    const out: Record<string, number> = {}
    for (const [userId, entry] of this.hub.users) {
      const n = Array.isArray(entry) ? entry.length : 1
      // `out.__proto__ = n` would set the prototype, not add the user
      if (userId === "__proto__") Object.defineProperty(out, userId, { value: n, enumerable: true, writable: true, configurable: true })
      else out[userId] = n
    }
    return out
  }

  stopAccepting(): void {
    this.accepting = false
  }

  /**
   * Stop accepting, announce, wait the grace period, close every connection. The
   * caller then releases the transport and timers (closing the layer's scope).
   */
  shutdown(options: ShutdownOptions | undefined): Effect.Effect<void> {
    return Effect.suspend(() => {
      const announce = options?.announce ?? true
      const event = options?.event ?? DEFAULTS.shutdownEvent
      const graceMs = options?.graceMs ?? DEFAULTS.shutdownGraceMs
      this.shutdownStarted = true
      this.accepting = false
      if (announce) this.settle(this.sendToAll({ code: "SHUTDOWN", at: this.now() }, { event }))
      return Effect.andThen(
        graceMs > 0 ? Effect.sleep(graceMs) : Effect.void,
        Effect.sync(() => {
          this.close()
          this.hub.stopTickers()
          this.closedForGood = true
        })
      )
    })
  }
}

function* userIdsOf(conns: Iterable<Conn>): Iterable<string> {
  for (const conn of conns) yield conn.userId
}

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

/**
 * A process warning (`process.emitWarning`, name `SsekifyWarning`, with the error's
 * `code`): what ssekify does with a failure it has nobody to report to.
 */
export const warn = (message: string, code: string): void => {
  if (typeof process !== "object" || typeof process.emitWarning !== "function") return
  process.emitWarning(message, { type: "SsekifyWarning", code })
}
