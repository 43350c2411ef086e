/**
 * Validation and defaults of the options. Bad options are an `InvalidInput` naming the
 * option, never a silent default.
 */
import * as Redacted from "effect/Redacted"
import type * as Tracer from "effect/Tracer"
import { InvalidInput } from "../Errors.js"
import type { AutoFieldsOptions, DropPolicy, FrameIdPolicy, Options, RegisterOptions, SeqOptions } from "./domain.js"
import type { RedisKvLike } from "../Transport.js"
import { Policy } from "./hub.js"
import type { ConnectionLimitScope } from "../Presence.js"
import { either } from "./durations.js"
import { resolveOptions as resolvePresence, type ResolvedPresence } from "./presenceOptions.js"

export const DEFAULTS = {
  channel: "ssekify:bus",
  keepAliveMs: 15_000,
  retryMs: 2_000,
  recentBufferSize: 20,
  maxPayloadBytes: 1024 * 1024,
  recentTTLMs: 30 * 60 * 1000,
  recentMaxUsers: 10_000,
  maxLastEventIdLength: 1024,
  maxQueueItems: 100,
  maxQueueBytes: 256 * 1024,
  seqKeyPrefix: "ssekify:seq:",
  seqTTLSeconds: 86_400,
  seqMaxKeys: 100_000,
  shutdownEvent: "server:shutdown",
  shutdownGraceMs: 5_000,
  maxConnections: 0,
  maxConnectionsPerUser: 0,
  maxRoomsPerConnection: 1024,
  maxUserIdLength: 256,
  maxRoomNameLength: 256,
  maxEventNameLength: 256,
  maxIdLength: 1024
} as const

type Data = Readonly<Record<string, unknown>>

export interface ResolvedAutoField {
  readonly mode: "off" | "ifMissing" | "require"
  /** Called with the current span (`undefined` outside an Effect). */
  readonly getter: ((span: Tracer.AnySpan | undefined) => unknown) | undefined
  /** `traceId.getter: 'span'`: the span's trace id, the field left out without a span. */
  readonly fromSpan?: boolean
  readonly fieldName: string
}

export interface Resolved {
  readonly channel: string
  readonly keepAliveMs: number
  readonly keepAliveEvent: string | undefined
  readonly retryMs: number
  readonly recentBufferSize: number
  readonly serializer: (data: unknown) => unknown
  readonly maxPayloadBytes: number
  readonly recentTTLMs: number
  readonly recentMaxUsers: number
  readonly replayGapEvent: string | undefined
  readonly replayOffline: boolean
  readonly replay: "memory" | "redis"
  readonly replayKeyPrefix: string | undefined
  readonly maxLastEventIdLength: number
  readonly timestamp: "iso" | "epochMs" | false
  readonly traceId: ResolvedAutoField
  readonly requestId: ResolvedAutoField
  readonly enableSeq: boolean
  readonly seqField: string
  readonly seqStartAt: 0 | 1
  readonly seqKey: (data: Data) => unknown
  readonly seqFinal: (data: Data) => unknown
  readonly frameIdPolicy: FrameIdPolicy
  readonly seqKeyPrefix: string
  readonly seqTTLSeconds: number
  readonly seqMaxKeys: number
  /** `seq.redis`: undefined = inherit from the transport, null = no store. */
  readonly seqKv: RedisKvLike | null | undefined
  readonly instanceId: string | undefined
  /** 0: no limit. */
  readonly maxConnections: number
  /** 0: no limit. */
  readonly maxConnectionsPerUser: number
  readonly connectionLimitPolicy: "reject" | "closeOldest"
  readonly maxRoomsPerConnection: number
  readonly maxUserIdLength: number
  readonly maxRoomNameLength: number
  readonly maxEventNameLength: number
  readonly maxIdLength: number
  /** HMAC key of the bus messages; undefined: unsigned (compatible with 0.1.6). */
  readonly busSecret: Redacted.Redacted<string> | undefined
  /** Cluster-wide presence (`internal/presence.ts`); undefined: off. */
  readonly presence: ResolvedPresence | undefined
  readonly connectionLimitScope: ConnectionLimitScope
}

const fail = (field: string, reason: string): never => {
  throw new InvalidInput({ field, reason })
}

/** A non-negative finite number, or the default when undefined. */
export const count = (field: string, value: unknown, fallback: number, min = 0): number => {
  if (value === undefined) return fallback
  if (typeof value !== "number" || !Number.isFinite(value)) {
    return fail(field, `must be a finite number, got ${describe(value)}`)
  }
  if (value < min) return fail(field, `must be >= ${min}, got ${value}`)
  return value
}

const number = (field: string, value: unknown): number => count(field, value, 0)

/** The grace period of a shutdown in ms: `grace` (a Duration) or `graceMs`; throws `InvalidInput`. */
export const graceOf = (options: { readonly grace?: unknown; readonly graceMs?: unknown } | undefined): number =>
  options === undefined || options === null
    ? DEFAULTS.shutdownGraceMs
    : either("shutdown.grace", options.grace, "shutdown.graceMs", options.graceMs, number, DEFAULTS.shutdownGraceMs)

const optionalString = (field: string, value: unknown): string | undefined => {
  if (value === undefined || value === null) return undefined
  if (typeof value !== "string") return fail(field, `must be a string, got ${describe(value)}`)
  return value.length === 0 ? undefined : value
}

/** Characters that cannot reach the SSE wire in a field (`event:`, `id:`). */
const FIELD_UNSAFE = /[\r\n\0]/

/**
 * A string option written on the wire as an `event:` name (or inside an `id:`): refused
 * when it holds CR, LF or NUL (a line break would end the field) or is longer than
 * `maxLength`, instead of being rewritten on the wire.
 */
const wireString = (field: string, value: unknown, maxLength: number): string | undefined => {
  const s = optionalString(field, value)
  if (s === undefined) return undefined
  if (FIELD_UNSAFE.test(s)) return fail(field, "must not contain CR, LF or NUL (it is written on the SSE wire)")
  if (s.length > maxLength) return fail(field, `is longer than ${maxLength} characters`)
  return s
}

/** A field name set on the data (`seq.fieldName`, `autoFields.*.fieldName`). */
const fieldName = (field: string, value: unknown, fallback: string): string => {
  const s = optionalString(field, value) ?? fallback
  if (s === "__proto__") return fail(field, "must not be '__proto__'")
  return s
}

const fn = <F>(field: string, value: unknown): F | undefined => {
  if (value === undefined || value === null) return undefined
  if (typeof value !== "function") return fail(field, `must be a function, got ${describe(value)}`)
  return value as F
}

export const describe = (value: unknown): string => {
  if (value === null) return "null"
  if (Array.isArray(value)) return "an array"
  if (typeof value === "string") return value.length > 40 ? `'${value.slice(0, 40)}…'` : `'${value}'`
  if (typeof value === "number" || typeof value === "boolean") return String(value)
  return typeof value
}

const defaultSeqKey = (d: Data): unknown => d.requestId || d.streamId
const defaultFinal = (d: Data): unknown => d.final === true || d.phase === "done" || d.phase === "error"

const spanTraceId = (span: Tracer.AnySpan | undefined): string | undefined => span?.traceId

const autoField = (
  field: string,
  value: AutoFieldsOptions["requestId"] | AutoFieldsOptions["traceId"],
  fallbackName: string,
  modes: ReadonlyArray<string>
): ResolvedAutoField => {
  if (value === undefined || value === null) return { mode: "off", getter: undefined, fieldName: fallbackName }
  if (typeof value !== "object") return fail(field, `must be an object, got ${describe(value)}`)
  const mode = value.mode ?? "off"
  if (!modes.includes(mode)) return fail(`${field}.mode`, `must be one of ${modes.join(", ")}, got ${describe(mode)}`)
  const fromSpan = field === "autoFields.traceId" && value.getter === "span"
  const getter = fromSpan ? spanTraceId : fn<ResolvedAutoField["getter"]>(`${field}.getter`, value.getter)
  if (mode === "ifMissing" && getter === undefined) return fail(`${field}.getter`, "is required with mode 'ifMissing'")
  return {
    mode: mode as ResolvedAutoField["mode"],
    getter,
    fromSpan,
    fieldName: fieldName(`${field}.fieldName`, value.fieldName, fallbackName)
  }
}

export const resolve = (options: Options | undefined): Resolved => {
  const o: Options = options ?? {}
  if (typeof o !== "object") fail("options", `must be an object, got ${describe(o)}`)
  const af: AutoFieldsOptions = o.autoFields ?? {}
  const timestamp = af.timestamp === undefined ? "iso" : af.timestamp
  if (timestamp !== "iso" && timestamp !== "epochMs" && timestamp !== false) {
    fail("autoFields.timestamp", `must be 'iso', 'epochMs' or false, got ${describe(timestamp)}`)
  }
  const seq: SeqOptions = o.seq ?? {}
  const startAt = seq.startAt ?? 0
  if (startAt !== 0 && startAt !== 1) fail("seq.startAt", `must be 0 or 1, got ${describe(startAt)}`)
  const policy = seq.frameIdPolicy ?? "none"
  if (typeof policy !== "function" && policy !== "none" && policy !== "timestamp" && policy !== "snowflake") {
    fail("seq.frameIdPolicy", `must be 'none', 'timestamp', 'snowflake' or a function, got ${describe(policy)}`)
  }
  const serializer = fn<(data: unknown) => unknown>("serializer", o.serializer) ?? JSON.stringify
  const maxEventNameLength = Math.floor(count("maxEventNameLength", o.maxEventNameLength, DEFAULTS.maxEventNameLength, 1))
  return {
    channel: optionalString("channel", o.channel) ?? DEFAULTS.channel,
    keepAliveMs: either("keepAlive", o.keepAlive, "keepAliveMs", o.keepAliveMs, number, DEFAULTS.keepAliveMs),
    keepAliveEvent: wireString("keepAliveEvent", o.keepAliveEvent, maxEventNameLength),
    retryMs: either("retry", o.retry, "retryMs", o.retryMs, number, DEFAULTS.retryMs),
    recentBufferSize: Math.floor(count("recentBufferSize", o.recentBufferSize, DEFAULTS.recentBufferSize)),
    serializer,
    maxPayloadBytes: count("maxPayloadBytes", o.maxPayloadBytes, DEFAULTS.maxPayloadBytes),
    recentTTLMs: either("recentTTL", o.recentTTL, "recentTTLMs", o.recentTTLMs, number, DEFAULTS.recentTTLMs),
    recentMaxUsers: Math.floor(count("recentMaxUsers", o.recentMaxUsers, DEFAULTS.recentMaxUsers)),
    replayGapEvent: wireString("replayGapEvent", o.replayGapEvent, maxEventNameLength),
    replayOffline: o.replayOffline === true,
    replay: o.replay === undefined ? "memory" : o.replay === "memory" || o.replay === "redis"
      ? o.replay
      : fail("replay", `must be 'memory' or 'redis', got ${describe(o.replay)}`),
    replayKeyPrefix: optionalString("replayKeyPrefix", o.replayKeyPrefix),
    maxLastEventIdLength: count("maxLastEventIdLength", o.maxLastEventIdLength, DEFAULTS.maxLastEventIdLength, 1),
    timestamp,
    traceId: autoField("autoFields.traceId", af.traceId, "traceId", ["off", "ifMissing"]),
    requestId: autoField("autoFields.requestId", af.requestId, "requestId", ["off", "ifMissing", "require"]),
    enableSeq: o.enableSeq === undefined ? true : Boolean(o.enableSeq),
    seqField: fieldName("seq.fieldName", seq.fieldName, "seq"),
    seqStartAt: startAt,
    seqKey: fn<(d: Data) => unknown>("seq.keyExtractor", seq.keyExtractor) ?? defaultSeqKey,
    seqFinal: fn<(d: Data) => unknown>("seq.finalPredicate", seq.finalPredicate) ?? defaultFinal,
    frameIdPolicy: policy,
    // Tenants on their own channel get their own seq keys; the default channel keeps
    // 0.1.6's prefix, so old and new instances share counters during an upgrade.
    seqKeyPrefix: optionalString("seq.redisKeyPrefix", seq.redisKeyPrefix) ??
      ((optionalString("channel", o.channel) ?? DEFAULTS.channel) === DEFAULTS.channel
        ? DEFAULTS.seqKeyPrefix
        : `${o.channel}:seq:`),
    seqTTLSeconds: seq.redisTTL === undefined
      ? count("seq.redisTTLSeconds", seq.redisTTLSeconds, DEFAULTS.seqTTLSeconds)
      : Math.ceil(either("seq.redisTTL", seq.redisTTL, "seq.redisTTLSeconds", seq.redisTTLSeconds, number, 0) / 1000),
    seqMaxKeys: Math.floor(count("seq.maxKeys", seq.maxKeys, DEFAULTS.seqMaxKeys, 1)),
    seqKv: seqKvOf(seq),
    // Part of the frame ids of frameIdPolicy 'timestamp': it reaches the wire.
    instanceId: wireString("instanceId", o.instanceId, 256),
    maxConnections: Math.floor(count("maxConnections", o.maxConnections, DEFAULTS.maxConnections)),
    maxConnectionsPerUser: Math.floor(count("maxConnectionsPerUser", o.maxConnectionsPerUser, DEFAULTS.maxConnectionsPerUser)),
    connectionLimitPolicy: o.connectionLimitPolicy === undefined
      ? "reject"
      : o.connectionLimitPolicy === "reject" || o.connectionLimitPolicy === "closeOldest"
      ? o.connectionLimitPolicy
      : fail("connectionLimitPolicy", `must be 'reject' or 'closeOldest', got ${describe(o.connectionLimitPolicy)}`),
    maxRoomsPerConnection: Math.floor(count("maxRoomsPerConnection", o.maxRoomsPerConnection, DEFAULTS.maxRoomsPerConnection, 1)),
    maxUserIdLength: Math.floor(count("maxUserIdLength", o.maxUserIdLength, DEFAULTS.maxUserIdLength, 1)),
    maxRoomNameLength: Math.floor(count("maxRoomNameLength", o.maxRoomNameLength, DEFAULTS.maxRoomNameLength, 1)),
    maxEventNameLength,
    maxIdLength: Math.floor(count("maxIdLength", o.maxIdLength, DEFAULTS.maxIdLength, 1)),
    busSecret: secretOf(o.busSecret),
    ...resolvePresence(o.presence, o.connectionLimitScope)
  }
}

const secretOf = (value: unknown): Redacted.Redacted<string> | undefined => {
  if (value === undefined || value === null) return undefined
  const secret = Redacted.isRedacted(value) ? Redacted.value(value) : value
  if (typeof secret !== "string" || secret.length < 16) {
    return fail("busSecret", "must be a string (or Redacted string) of at least 16 characters")
  }
  return Redacted.make(secret)
}

const seqKvOf = (seq: SeqOptions): RedisKvLike | null | undefined => {
  if (!Object.prototype.hasOwnProperty.call(seq, "redis")) return undefined
  const kv = seq.redis
  if (kv === undefined || kv === null) return null
  if (typeof kv !== "object" || typeof kv.incr !== "function") {
    return fail("seq.redis", `must be a client with incr() (and expire()), got ${describe(kv)}`)
  }
  return kv
}

export interface ResolvedConnection {
  readonly rooms: ReadonlyArray<string>
  readonly keepAliveMs: number
  readonly retryMs: number
  readonly maxItems: number
  readonly maxBytes: number
  readonly policy: Policy
  /** `options.headers`, checked: names are tokens, values legal; `undefined` / `null` values left out. */
  readonly headers: Readonly<Record<string, string | ReadonlyArray<string>>> | undefined
  /** `options.lastEventId`, read once. */
  readonly lastEventId: string | undefined
}

const POLICIES: Record<DropPolicy, Policy> = {
  oldest: Policy.Oldest,
  newest: Policy.Newest,
  disconnect: Policy.Disconnect
}

/** RFC 7230 `token`: what a header name may be. */
const HEADER_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/
/** What Node refuses in a header value (CR, LF, NUL, other controls, above U+00FF). */
const HEADER_VALUE_INVALID = /[^\t\x20-\x7e\x80-\xff]/

const headerValue = (name: string, value: unknown, inArray = false): string | ReadonlyArray<string> => {
  if (typeof value === "number" && Number.isFinite(value)) return String(value)
  if (typeof value === "string") {
    if (HEADER_VALUE_INVALID.test(value)) {
      return fail("options.headers", `${name}: the value contains CR, LF, NUL or another character not allowed in a header`)
    }
    return value
  }
  if (Array.isArray(value) && !inArray) {
    const out: Array<string> = []
    for (const item of value as ReadonlyArray<unknown>) out.push(headerValue(name, item, true) as string)
    return out
  }
  return fail("options.headers", `${name}: must be a string, a number or an array of strings, got ${describe(value)}`)
}

/**
 * The extra headers of a connection, checked before anything is sent: a bad header
 * would make `writeHead` throw after the connection was counted (and the response
 * would go out without `Content-Type: text/event-stream`).
 */
const headersOf = (value: unknown): Readonly<Record<string, string | ReadonlyArray<string>>> | undefined => {
  if (value === undefined || value === null) return undefined
  if (typeof value !== "object" || Array.isArray(value)) {
    return fail("options.headers", `must be an object of header names and values, got ${describe(value)}`)
  }
  const out: Record<string, string | ReadonlyArray<string>> = Object.create(null)
  for (const name of Object.keys(value)) {
    if (!HEADER_NAME.test(name)) return fail("options.headers", `${describe(name)} is not a valid header name`)
    const v = (value as Record<string, unknown>)[name]
    // a header computed from a missing request header (e.g. CORS without Origin): none
    if (v === undefined || v === null) continue
    out[name] = headerValue(name, v)
  }
  return out
}

/** Room names of `options.rooms`, checked, copied. */
const roomsOf = (value: unknown, base: Resolved): ReadonlyArray<string> => {
  if (value === undefined || value === null) return []
  if (!Array.isArray(value)) return fail("options.rooms", `must be an array of strings, got ${describe(value)}`)
  const rooms: Array<string> = []
  for (const room of value as ReadonlyArray<unknown>) {
    if (typeof room !== "string" || room.length === 0 || room.length > base.maxRoomNameLength) {
      return fail("options.rooms", `room names must be non-empty strings of at most ${base.maxRoomNameLength} characters, got ${describe(room)}`)
    }
    rooms.push(room)
  }
  if (rooms.length > base.maxRoomsPerConnection) {
    return fail("options.rooms", `more than maxRoomsPerConnection (${base.maxRoomsPerConnection}) rooms`)
  }
  return rooms
}

/**
 * Reads and checks the options of one registration, each field once (a getter is not
 * read twice). Throws `InvalidInput`; anything else thrown comes from reading the
 * options (a getter or proxy), see `Engine.check`.
 */
export const resolveConnection = (options: RegisterOptions | undefined, base: Resolved): ResolvedConnection => {
  const o = options ?? {}
  if (typeof o !== "object") fail("options", `must be an object, got ${describe(o)}`)
  const policyName = o.dropPolicy ?? "oldest"
  const policy = POLICIES[policyName as DropPolicy]
  if (policy === undefined || !Object.prototype.hasOwnProperty.call(POLICIES, policyName)) {
    fail("options.dropPolicy", `must be 'oldest', 'newest' or 'disconnect', got ${describe(policyName)}`)
  }
  const lastEventId = o.lastEventId
  if (lastEventId !== undefined && lastEventId !== null && typeof lastEventId !== "string") {
    fail("options.lastEventId", `must be a string, got ${describe(lastEventId)}`)
  }
  return {
    rooms: roomsOf(o.rooms, base),
    keepAliveMs: either("options.keepAlive", o.keepAlive, "options.keepAliveMs", o.keepAliveMs, number, base.keepAliveMs),
    retryMs: either("options.retry", o.retry, "options.retryMs", o.retryMs, number, base.retryMs),
    maxItems: count("options.maxQueueItems", o.maxQueueItems, DEFAULTS.maxQueueItems),
    maxBytes: count("options.maxQueueBytes", o.maxQueueBytes, DEFAULTS.maxQueueBytes),
    policy: policy!,
    headers: headersOf(o.headers),
    lastEventId: typeof lastEventId === "string" ? lastEventId : undefined
  }
}
