/**
 * The typed errors of ssekify.
 *
 * Every error is a `Data.TaggedError` (so it can be `yield*`-ed and matched with
 * `Effect.catchTag`) and an `Error` with a stable `code` (so the facade can emit it
 * as the documented `'error'` event). Messages of the errors the original 0.1.6
 * reported keep its wording prefix (`payload_too_large: …`, `serialize_failed: …`,
 * `backpressure: …`) so existing log filters keep matching.
 *
 * @since 0.2.0
 */
import * as Data from "effect/Data"

/**
 * Severity attached to errors emitted as `'error'` events. Only `SEQ_KV_FALLBACK`
 * is a warning.
 *
 * @since 0.2.0
 * @category models
 */
export type Level = "error" | "warn"

/** The text of a thrown value, for a message; never throws (a hostile `toString` is named by its type). */
const textOf = (cause: unknown): string => {
  try {
    return cause instanceof Error ? cause.message : String(cause)
  } catch {
    // a thrown value whose conversion to text throws too: named by its type
    return typeof cause
  }
}

/**
 * A value handed to the API is not of the documented shape (an empty user id, a
 * response that is not writable, a negative limit, an unknown `dropPolicy` …).
 *
 * @since 0.2.0
 * @category errors
 */
export class InvalidInput extends Data.TaggedError("InvalidInput")<{
  /** The argument or option that was rejected, e.g. `userId` or `options.dropPolicy`. */
  readonly field: string
  /** Why it was rejected. */
  readonly reason: string
}> {
  readonly code = "INVALID_INPUT" as const
  readonly level: Level = "error"
  override get message(): string {
    return `invalid_input: ${this.field} ${this.reason}`
  }
}

/**
 * The serializer threw (a circular object with `JSON.stringify`) or returned
 * something that is not a string. The message was delivered to nobody.
 *
 * @since 0.2.0
 * @category errors
 */
export class SerializeFailed extends Data.TaggedError("SerializeFailed")<{
  readonly cause: unknown
}> {
  readonly code = "SERIALIZE_FAILED" as const
  readonly level: Level = "error"
  override get message(): string {
    return `serialize_failed: ${textOf(this.cause)}`
  }
}

/**
 * The serialized payload is larger than `maxPayloadBytes`. The message was
 * delivered to nobody.
 *
 * @since 0.2.0
 * @category errors
 */
export class PayloadTooLarge extends Data.TaggedError("PayloadTooLarge")<{
  readonly size: number
  readonly limit: number
}> {
  readonly code = "PAYLOAD_TOO_LARGE" as const
  readonly level: Level = "error"
  override get message(): string {
    return `payload_too_large: ${this.size} > ${this.limit}`
  }
}

/**
 * A connection's write queue overflowed under `dropPolicy: 'disconnect'`; the
 * connection was closed.
 *
 * @since 0.2.0
 * @category errors
 */
export class BackpressureDisconnect extends Data.TaggedError("BackpressureDisconnect")<{
  readonly connId: string
  readonly userId: string
  readonly queueItems: number
  readonly queueBytes: number
}> {
  readonly code = "BACKPRESSURE_DISCONNECT" as const
  readonly level: Level = "error"
  override get message(): string {
    return `backpressure: queue limit exceeded, disconnecting ${this.connId}`
  }
}

/**
 * The instance has stopped accepting connections or has shut down.
 *
 * @since 0.2.0
 * @category errors
 */
export class ShuttingDown extends Data.TaggedError("ShuttingDown")<{
  readonly operation: string
}> {
  readonly code = "SHUTTING_DOWN" as const
  readonly level: Level = "error"
  override get message(): string {
    return `shutting_down: ${this.operation} refused, the instance is shutting down`
  }
}

/**
 * The cross-instance transport (Redis or another bus) failed: publishing, subscribing
 * or a connection error reported by the client.
 *
 * @since 0.2.0
 * @category errors
 */
export class TransportError extends Data.TaggedError("TransportError")<{
  readonly operation: string
  readonly cause: unknown
}> {
  readonly code = "TRANSPORT_ERROR" as const
  readonly level: Level = "error"
  override get message(): string {
    return `transport_error: ${this.operation}: ${textOf(this.cause)}`
  }
}

/**
 * A message on the bus channel was not a valid envelope (not JSON, wrong shape,
 * bad signature). It was dropped; the subscription goes on.
 *
 * @since 0.2.0
 * @category errors
 */
export class BusMessageInvalid extends Data.TaggedError("BusMessageInvalid")<{
  readonly reason: string
  /** The first bytes of the offending message, for the log. */
  readonly sample: string
}> {
  readonly code = "BUS_MESSAGE_INVALID" as const
  readonly level: Level = "error"
  override get message(): string {
    return `bus_message_invalid: ${this.reason}`
  }
}

/**
 * `autoFields.requestId.mode` is `'require'` and the data carries no request id.
 * Nothing was sent.
 *
 * @since 0.2.0
 * @category errors
 */
export class RequestIdRequired extends Data.TaggedError("RequestIdRequired")<{
  readonly fieldName: string
}> {
  readonly code = "REQUEST_ID_REQUIRED" as const
  readonly level: Level = "error"
  override get message(): string {
    return `${this.fieldName} is required but missing`
  }
}

/**
 * A Redis adapter without key/value commands was configured: `seq` falls back to a
 * per-instance memory counter. Emitted once, as a warning.
 *
 * @since 0.2.0
 * @category errors
 */
export class SeqKvFallback extends Data.TaggedError("SeqKvFallback")<{
  readonly reason: string
}> {
  readonly code = "SEQ_KV_FALLBACK" as const
  readonly level: Level = "warn"
  override get message(): string {
    return "seq_kv_unavailable_fallback_memory"
  }
}

/**
 * A reconnecting client sent a `Last-Event-ID` longer than the accepted bound; it was
 * ignored (no replay) and the connection was kept.
 *
 * @since 0.2.0
 * @category errors
 */
export class LastEventIdTooLong extends Data.TaggedError("LastEventIdTooLong")<{
  readonly length: number
  readonly limit: number
}> {
  readonly code = "LAST_EVENT_ID_TOO_LONG" as const
  readonly level: Level = "error"
  override get message(): string {
    return `last_event_id_too_long: ${this.length} > ${this.limit}`
  }
}

/**
 * A configured limit refused something: a connection beyond `maxConnections` (503) or
 * `maxConnectionsPerUser` (429, or the user's oldest connection was closed), a room
 * beyond `maxRoomsPerConnection`.
 *
 * @since 0.2.0
 * @category errors
 */
export class LimitExceeded extends Data.TaggedError("LimitExceeded")<{
  readonly limit: "maxConnections" | "maxConnectionsPerUser" | "maxRoomsPerConnection"
  readonly value: number
  readonly userId?: string | undefined
  /** Where the limit counted: this instance (default) or the cluster (`connectionLimitScope: 'cluster'`). */
  readonly scope?: "instance" | "cluster" | undefined
}> {
  readonly code = "LIMIT_EXCEEDED" as const
  readonly level: Level = "error"
  override get message(): string {
    return `limit_exceeded: ${this.limit} (${this.value})${this.userId === undefined ? "" : ` for user ${this.userId}`}${this.scope === "cluster" ? " in the cluster" : ""}`
  }
}

/**
 * Errors of a send (`sendTo*`, `publish*`) before anything is delivered: the payload
 * (`SerializeFailed`, `PayloadTooLarge`), the arguments (`InvalidInput`,
 * `RequestIdRequired`), a user callback (`CallbackFailed`), or an instance that has
 * shut down (`ShuttingDown`).
 *
 * @since 0.2.0
 * @category models
 */
export type SendError = SerializeFailed | PayloadTooLarge | InvalidInput | RequestIdRequired | CallbackFailed | ShuttingDown

/**
 * Every error ssekify reports.
 *
 * @since 0.2.0
 * @category models
 */
export type SseKifyError =
  | InvalidInput
  | SerializeFailed
  | PayloadTooLarge
  | BackpressureDisconnect
  | ShuttingDown
  | TransportError
  | BusMessageInvalid
  | RequestIdRequired
  | SeqKvFallback
  | LastEventIdTooLong
  | LimitExceeded
  | CallbackFailed

/**
 * A function from the options threw: `seq.keyExtractor`, `seq.finalPredicate`, a
 * `seq.frameIdPolicy` function, an `autoFields` getter (the send fails: nothing was
 * delivered), or an event listener (the event's delivery to the other listeners and
 * the operation that emitted it go on). `callback` names it, `cause` is what it threw.
 *
 * @since 0.2.0
 * @category errors
 */
export class CallbackFailed extends Data.TaggedError("CallbackFailed")<{
  /** The option (`seq.keyExtractor`, …) or `'<event>' listener`. */
  readonly callback: string
  readonly cause: unknown
}> {
  readonly code = "CALLBACK_FAILED" as const
  readonly level: Level = "error"
  override get message(): string {
    return `callback_failed: ${this.callback}: ${textOf(this.cause)}`
  }
}

const tags: ReadonlySet<string> = new Set<SseKifyError["_tag"]>([
  "InvalidInput",
  "SerializeFailed",
  "PayloadTooLarge",
  "BackpressureDisconnect",
  "ShuttingDown",
  "TransportError",
  "BusMessageInvalid",
  "RequestIdRequired",
  "SeqKvFallback",
  "LastEventIdTooLong",
  "LimitExceeded",
  "CallbackFailed"
])

/**
 * Whether `u` is one of ssekify's typed errors (narrows an `SSEKify` `'error'` payload,
 * which may also be an adapter's own {@link AdapterError}).
 *
 * @since 0.2.0
 * @category guards
 */
export const isSseKifyError = (u: unknown): u is SseKifyError =>
  u instanceof Error && tags.has((u as { readonly _tag?: unknown })._tag as string) &&
  typeof (u as { readonly code?: unknown }).code === "string"

/**
 * What a `RedisLike` adapter reported on its own `'error'` event (an ioredis
 * `ECONNREFUSED`, …), as the `SSEKify` facade re-emits it: the adapter's own object,
 * as ssekify 0.1.6 did, with the `code` its client set, if any. The facade re-emits it
 * only when it is an `Error` whose `code` is a string or absent; anything else an
 * adapter reports goes out as the `TransportError` (operation `'adapter'`) that the
 * Effect API always gets, with the adapter's value as `cause`.
 *
 * @since 0.2.0
 * @category models
 */
export type AdapterError = Error & { readonly code?: string | undefined }
