/**
 * The implementation behind the `SseKify` service and the `SSEKify` facade: the send
 * pipeline (auto fields → seq → frame id → serialize once → encode once → deliver →
 * record for replay), the bus, registration, stats and shutdown. Synchronous where the
 * API is synchronous; the Effect service wraps it.
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import type { ConnectionHandle, NodeResponse, RegisterOptions } from "../Connection.js"
import * as Envelope from "../Envelope.js"
import {
  BackpressureDisconnect,
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
import type { SendOptions, ShutdownOptions, SseKifyEvent, SseKifyEventMap, Stats } from "../SseKify.js"
import type { TransportService } from "../Transport.js"
import { instanceBits, Snowflake, TimestampIds } from "./frameId.js"
import { Conn, type ConnConfig, Hub, type SinkResponse } from "./hub.js"
import { DEFAULTS, describe, type Resolved, type ResolvedConnection, resolveConnection } from "./options.js"
import type { SequencerImpl } from "./sequencer.js"


type EventName = keyof SseKifyEventMap
type Listener = (event: SseKifyEvent) => void

type Prepared = { readonly data: unknown; readonly event: string | undefined; readonly id: string | undefined }
type PreparedData = { readonly data: unknown; readonly seqKey: string | undefined; readonly seqValue: unknown; readonly final: boolean }
type Encoded = { readonly frame: Uint8Array; readonly text: string }

const SSE_HEADER_OBJECT: Record<string, string | number | Array<string>> = Object.freeze({
  "Content-Type": "text/event-stream; charset=utf-8",
  "Cache-Control": "no-cache, no-transform",
  "Connection": "keep-alive",
  "X-Accel-Buffering": "no"
})

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
  admission: ((userId: string, res: NodeResponse, connId: string, open: () => ConnectionHandle) => ConnectionHandle) | undefined =
    undefined
  private readonly transport: TransportService
  private readonly replay: ReplayBufferService
  private readonly sequencer: SequencerImpl
  private readonly now: () => number
  private readonly fork: (effect: Effect.Effect<void>) => void
  private readonly listeners = new Set<{ readonly listener: Listener; readonly wants: ((type: EventName) => boolean) | undefined }>()
  private readonly counters = { errorCount: 0, replayed: 0, replayMisses: 0, published: 0, received: 0 }
  private readonly retryFrames = new Map<number, Uint8Array>()
  private readonly snowflake: Snowflake
  private readonly timestampIds: TimestampIds
  private readonly connPrefix: string
  private connCounter = 0
  private orderCounter = 0
  private isoMs = -1
  private iso = ""
  /** The serializer is `JSON.stringify` (its output has no raw line break). */
  private readonly jsonSerializer: boolean
  private readonly connConfigs = new Map<string, ConnConfig>()

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
      } catch {
        // a listener's failure is not the sender's
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
      return Either.right(this.admission(userId as string, res, connId, () => this.open(userId as string, res, options, resolved, connId)))
    }
    return Either.right(this.open(userId as string, res, options, checked.right, this.nextConnId()))
  }

  /** Sets the SSE headers and attaches (`register` after its checks). */
  private open(
    userId: string,
    res: NodeResponse,
    options: RegisterOptions | undefined,
    resolved: ResolvedConnection,
    connId: string
  ): ConnectionHandle {
    if (!res.headersSent) {
      try {
        const extra = options?.headers
        const headers = extra === undefined || extra === null
          ? SSE_HEADER_OBJECT
          : { ...SSE_HEADER_OBJECT, ...(extra as Record<string, string | number | Array<string>>) }
        if (typeof res.writeHead === "function") {
          // One header block, merged with headers the application set before; cheaper
          // per connection than one setHeader per header.
          res.writeHead(200, headers)
        } else {
          res.statusCode = 200
          for (const name of Object.keys(headers)) res.setHeader(name, headers[name]!)
        }
      } catch {
        // headers already sent by someone else: tolerated
      }
    }
    return this.attach(userId, res, resolved, options?.lastEventId ?? lastEventIdOf(res), connId)
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

  /** Validates what `register` / `attach` take. */
  check(userId: unknown, options: RegisterOptions | undefined): Either.Either<ResolvedConnection, InvalidInput> {
    const badUser = this.checkUserId(userId)
    if (badUser !== undefined) return Either.left(badUser)
    let resolved: ResolvedConnection
    try {
      resolved = resolveConnection(options, this.options)
    } catch (e) {
      return Either.left(e as InvalidInput)
    }
    const rooms = options?.rooms
    if (rooms !== undefined && rooms !== null) {
      if (!Array.isArray(rooms)) {
        return Either.left(new InvalidInput({ field: "options.rooms", reason: `must be an array of strings, got ${describe(rooms)}` }))
      }
      for (const room of rooms) {
        if (!isNonEmptyString(room) || room.length > this.options.maxRoomNameLength) {
          return Either.left(new InvalidInput({ field: "options.rooms", reason: `room names must be non-empty strings of at most ${this.options.maxRoomNameLength} characters, got ${describe(room)}` }))
        }
      }
      if (rooms.length > this.options.maxRoomsPerConnection) {
        return Either.left(new InvalidInput({ field: "options.rooms", reason: `more than maxRoomsPerConnection (${this.options.maxRoomsPerConnection}) rooms` }))
      }
    }
    return Either.right(resolved)
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
      ok = true
    }
    hub.add(conn)
    if (!ok) hub.block(conn)
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
    const write = (frames: ReadonlyArray<Uint8Array>, replayed: ReadonlyArray<Uint8Array>) => {
      if (conn.held === undefined) {
        this.hub.pushAll(conn, frames)
      } else {
        // Live frames held during an asynchronous lookup may also be in the replay:
        // the same message encodes to the same bytes on every instance.
        this.hub.release(conn, frames, (frame) => replayed.some((r) => sameBytes(r, frame)))
      }
    }
    const apply = (lookup: Lookup) => {
      if (lookup._tag === "Found") {
        this.counters.replayed += lookup.frames.length
        if (lookup.missed === true) this.counters.replayMisses++
        // Frames sent while the user had no connection were not kept: say so first.
        write(lookup.missed === true && gapEvent !== undefined ? [gap("offline"), ...lookup.frames] : lookup.frames, lookup.frames)
        return
      }
      this.counters.replayMisses++
      write(gapEvent === undefined ? [] : [gap(lookup.reason)], [])
    }
    const sync = this.replay.lookupSync
    if (sync !== undefined) {
      apply(sync(conn.userId, lastEventId))
      return
    }
    this.hub.hold(conn)
    this.fork(
      this.replay.lookup(conn.userId, lastEventId).pipe(
        Effect.matchEffect({
          onFailure: (error) =>
            Effect.sync(() => {
              this.report(error)
              this.hub.release(conn, [])
            }),
          onSuccess: (lookup) => Effect.sync(() => apply(lookup))
        })
      )
    )
  }

  close(userId?: unknown): void {
    if (userId === undefined || userId === null || userId === "") {
      for (const conn of Array.from(this.hub.conns.values())) this.hub.remove(conn, true)
      return
    }
    if (typeof userId !== "string") return
    for (const conn of Array.from(this.hub.connectionsOf(userId))) this.hub.remove(conn, true)
  }

  // ---------------------------------------------------------------------------
  // sending
  // ---------------------------------------------------------------------------

  /**
   * Auto fields, then the per-key seq: one copy of the caller's plain object with every
   * addition (the caller's object is never changed). With `localSeq`, the seq comes from
   * the in-memory counter now; otherwise `seqKey` says which global counter to ask.
   */
  private prepareData(data: unknown, now: number, localSeq: boolean): PreparedData | RequestIdRequired {
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
      if (addRequestId) current[r.fieldName] = r.getter!()
      if (addTraceId) current[t.fieldName] = t.getter!()
    }
    let seqKey: string | undefined
    let seqValue = current[o.seqField]
    let final = false
    if (o.enableSeq && seqValue == null) {
      try {
        seqKey = asKey(o.seqKey(current))
        if (seqKey !== undefined) final = Boolean(o.seqFinal(current))
      } catch {
        seqKey = undefined
      }
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

  private frameId(explicit: string | undefined, data: unknown, seq: unknown): string | undefined {
    if (explicit !== undefined) return explicit
    const policy = this.options.frameIdPolicy
    if (policy === "none") return undefined
    const n = typeof seq === "number" ? seq : 0
    if (policy === "timestamp") return this.timestampIds.next(n)
    if (policy === "snowflake") return this.snowflake.next()
    try {
      const id = policy(data, n)
      return id === undefined || id === null || id === "" ? undefined : String(id)
    } catch {
      return undefined
    }
  }

  private checkOptions(opts: SendOptions | undefined): { event: string | undefined; id: string | undefined } | InvalidInput {
    if (opts === undefined || opts === null) return { event: undefined, id: undefined }
    if (typeof opts !== "object") return new InvalidInput({ field: "opts", reason: `must be an object, got ${describe(opts)}` })
    const { event, id } = opts as { event?: unknown; id?: unknown }
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
      if (typeof id === "string") i = id
      else if (typeof id === "number" && Number.isFinite(id)) i = String(id)
      else return new InvalidInput({ field: "opts.id", reason: `must be a string, got ${describe(id)}` })
      if (i.length > this.options.maxIdLength) {
        return new InvalidInput({ field: "opts.id", reason: `is longer than maxIdLength (${this.options.maxIdLength})` })
      }
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
    if (p instanceof RequestIdRequired) return p
    return { data: p.data, event: checked.event, id: this.frameId(checked.id, p.data, p.seqValue) }
  }

  /** Preparation with the global seq (the `publish*` path). */
  private prepareGlobal(data: unknown, opts: SendOptions | undefined, now: number): Effect.Effect<Prepared, SendError> {
    const checked = this.checkOptions(opts)
    if (checked instanceof InvalidInput) return Effect.fail(checked)
    const p = this.prepareData(data, now, false)
    if (p instanceof RequestIdRequired) return Effect.fail(p)
    if (p.seqKey === undefined) {
      return Effect.succeed({ data: p.data, event: checked.event, id: this.frameId(checked.id, p.data, p.seqValue) })
    }
    return Effect.map(this.sequencer.next(p.seqKey, p.final), (seq) => {
      const out: Record<string, unknown> = Object.assign({}, p.data as Record<string, unknown>)
      out[this.options.seqField] = seq
      return { data: out, event: checked.event, id: this.frameId(checked.id, out, seq) }
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

  sendToUser(userId: unknown, data: unknown, opts?: SendOptions): number | SendError {
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
    const now = this.now()
    const p = this.prepareLocal(data, opts, now)
    if (!("data" in p)) return p
    const e = this.encode(p.data, p.event, p.id)
    if (!("frame" in e)) return e
    return this.deliverAll(e.frame, p.id, this.nextOrder(now))
  }

  sendToRoom(room: unknown, data: unknown, opts?: SendOptions): number | SendError {
    if (!isNonEmptyString(room) || room.length > this.options.maxRoomNameLength) {
      return new InvalidInput({ field: "room", reason: `must be a non-empty string of at most ${this.options.maxRoomNameLength} characters, got ${describe(room)}` })
    }
    const members = this.hub.rooms.get(room)
    if (members === undefined || members.size === 0) return 0
    const now = this.now()
    const p = this.prepareLocal(data, opts, now)
    if (!("data" in p)) return p
    const e = this.encode(p.data, p.event, p.id)
    if (!("frame" in e)) return e
    return this.deliverRoom(room, e.frame, p.id, this.nextOrder(now))
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
    this.orderCounter = (this.orderCounter + 1) & 1023
    return at * 1024 + this.orderCounter
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
    if (Array.isArray(entry)) {
      for (let i = 0; i < entry.length; i++) if (hub.push(entry[i]!, frame)) count++
    } else if (hub.push(entry, frame)) count++
    if (id !== undefined && this.replay.enabled) this.replay.record(userId, id, frame, order)
    if (this.wants("message-sent")) this.emit("message-sent", { scope: "user", userId, count })
    return count
  }

  private deliverAll(frame: Uint8Array, id: string | undefined, order: number): number {
    const hub = this.hub
    let count = 0
    for (const conn of hub.conns.values()) if (hub.push(conn, frame)) count++
    if (id !== undefined && this.replay.enabled) this.replay.recordAll(hub.users.keys(), id, frame, order)
    if (this.wants("message-sent")) this.emit("message-sent", { scope: "all", count })
    return count
  }

  private deliverRoom(room: string, frame: Uint8Array, id: string | undefined, order: number): number {
    const members = this.hub.rooms.get(room)
    if (members === undefined) return 0
    const hub = this.hub
    let count = 0
    for (const conn of members) if (hub.push(conn, frame)) count++
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
      if (type !== "all" && !isNonEmptyString(target)) {
        return Effect.fail(
          new InvalidInput({ field: type === "room" ? "room" : "userId", reason: `must be a non-empty string, got ${describe(target)}` })
        )
      }
      return Effect.flatMap(this.prepareGlobal(data, opts, this.now()), (p): Effect.Effect<void, SendError | TransportError> => {
        const e = this.encode(p.data, p.event, p.id)
        if (!("frame" in e)) return Effect.fail(e)
        const at = this.now()
        const order = this.nextOrder(at)
        if (type === "all") this.deliverAll(e.frame, p.id, order)
        else if (type === "user") this.deliverUser(target!, e.frame, p.id, true, order)
        else this.deliverRoom(target!, e.frame, p.id, order)
        if (this.transport.kind === "none") return Effect.void
        let message: string
        try {
          message = Envelope.encode(
            Envelope.make({ type, target, data: p.data, event: p.event, id: p.id, at, origin: this.instanceId, n: order & 1023 }),
            e.text
          )
        } catch (cause) {
          return Effect.fail(new SerializeFailed({ cause }))
        }
        if (this.options.busSecret !== undefined) message = Envelope.sign(message, this.options.busSecret)
        this.counters.published++
        return this.transport.publish(this.options.channel, message)
      })
    }).pipe(Effect.tapError((error) => Effect.sync(() => this.report(error))))
  }

  /** A message from the bus: checked, deduplicated by origin, serialized once. */
  receive(raw: string): void {
    const secret = this.options.busSecret
    let text = raw
    if (secret !== undefined) {
      const verified = Envelope.verify(raw, secret)
      if (Either.isLeft(verified)) {
        this.report(verified.left)
        return
      }
      text = verified.right
    }
    const decoded = Envelope.decode(text)
    if (Either.isLeft(decoded)) {
      this.report(decoded.left)
      return
    }
    const env = decoded.right
    if (env.origin === this.instanceId) return
    this.counters.received++
    if (this.wants("publish")) {
      // Listeners get the envelope in 0.1.6's shape, without the bus's own fields.
      const { n: _n, sig: _sig, ...published } = env
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
    for (const [userId, entry] of this.hub.users) out[userId] = Array.isArray(entry) ? entry.length : 1
    return out
  }

  stopAccepting(): void {
    this.accepting = false
  }

  /**
   * The shutdown the instance's layer runs when its scope closes (`LayerOptions.shutdown`),
   * also run by {@link shutdownInBackground}.
   */
  layerShutdown: ShutdownOptions | undefined = undefined

  /**
   * Stop accepting, announce, wait the grace period, close every connection. The
   * caller then releases the transport and timers (closing the layer's scope).
   *
   * The grace period is skipped when no connection is open and ends as soon as the
   * last one is gone. A second call while one runs does not announce again: it waits
   * for the connections and closes them.
   */
  shutdown(options: ShutdownOptions | undefined): Effect.Effect<void> {
    return Effect.suspend(() => {
      const announce = options?.announce ?? true
      const event = options?.event ?? DEFAULTS.shutdownEvent
      const graceMs = options?.graceMs ?? DEFAULTS.shutdownGraceMs
      const again = this.shutdownStarted
      this.shutdownStarted = true
      this.accepting = false
      if (announce && !again && this.hub.conns.size > 0) {
        this.settle(this.sendToAll({ code: "SHUTDOWN", at: this.now() }, { event }))
      }
      return Effect.andThen(
        graceMs > 0 && this.hub.conns.size > 0
          // Each side interruptible so the loser stops, even inside a finalizer.
          ? Effect.raceFirst(Effect.interruptible(Effect.sleep(graceMs)), Effect.interruptible(this.allGone))
          : Effect.void,
        Effect.sync(() => {
          this.close()
          this.hub.stopTickers()
          this.closedForGood = true
        })
      )
    })
  }

  /** Completes when no connection is open (at once when none is). */
  private readonly allGone: Effect.Effect<void> = Effect.async<void>((resume) => {
    if (this.hub.conns.size === 0) return resume(Effect.void)
    const unsubscribe = this.subscribe(() => {
      if (this.hub.conns.size === 0) resume(Effect.void)
    }, (type) => type === "disconnect")
    return Effect.sync(unsubscribe)
  })

  /**
   * Runs the layer's shutdown ({@link layerShutdown}) in the instance's background
   * (when the HTTP server the connections live on starts closing): once.
   */
  shutdownInBackground(): void {
    if (this.shutdownStarted) return
    this.fork(this.shutdown(this.layerShutdown))
  }
}

function* userIdsOf(conns: Iterable<Conn>): Iterable<string> {
  for (const conn of conns) yield conn.userId
}

const sameBytes = (a: Uint8Array, b: Uint8Array): boolean =>
  a === b || (a.length === b.length && Buffer.compare(a, b) === 0)

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
    // nothing more can be done with this response
  }
}

/** `Last-Event-ID` header, else `?lastEventId=` / `?last-event-id=` / `?Last-Event-ID=`. */
const lastEventIdOf = (res: NodeResponse): string | undefined => {
  const req = res.req
  if (req === undefined || req === null) return undefined
  const header = req.headers?.["last-event-id"]
  if (typeof header === "string" && header.length > 0) return header
  const url = req.url
  if (typeof url !== "string") return undefined
  const q = url.indexOf("?")
  if (q < 0) return undefined
  try {
    const params = new URLSearchParams(url.slice(q + 1))
    return params.get("lastEventId") || params.get("last-event-id") || params.get("Last-Event-ID") || undefined
  } catch {
    return undefined
  }
}
