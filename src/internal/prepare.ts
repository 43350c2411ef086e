/**
 * Send preparation, before any connection is touched: the input checks (user ids, room
 * names, `opts`), the automatic fields (timestamp, traceId, requestId), the per-key
 * `seq`, the frame id, then serialize once and encode once; and the order key that
 * places a frame among a user's frames in a replay store.
 */
import * as Effect from "effect/Effect"
import {
  CallbackFailed,
  InvalidInput,
  PayloadTooLarge,
  RequestIdRequired,
  SerializeFailed,
  type SendError
} from "../Errors.js"
import * as Frame from "../Frame.js"
import type { SendOptions } from "./domain.js"
import { type Events, textOf } from "./events.js"
import { instanceBits, Snowflake, TimestampIds } from "./frameId.js"
import { trimId } from "./lastEventId.js"
import { describe, type Resolved } from "./options.js"
import { userIdTooLong } from "./refusal.js"
import type { SequencerImpl } from "./sequencer.js"

export type Prepared = { readonly data: unknown; readonly event: string | undefined; readonly id: string | undefined }
type PreparedData = { readonly data: unknown; readonly seqKey: string | undefined; readonly seqValue: unknown; readonly final: boolean }
type PrepareError = RequestIdRequired | SerializeFailed | CallbackFailed
/** `text`: the serialized data; `frameText`: the frame as text (what the routed bus carries). */
export type Encoded = { readonly frame: Uint8Array; readonly text: string; readonly frameText: string }

/** Calls a user function from the options; what it throws becomes a `CallbackFailed` (thrown, caught by the send). */
const call = <A, R>(callback: string, f: (a: A) => R, a: A): R => {
  try {
    return f(a)
  } catch (cause) {
    throw new CallbackFailed({ callback, cause })
  }
}

const isPlainObject = (value: unknown): value is Record<string, unknown> => {
  if (typeof value !== "object" || value === null) return false
  const proto = Object.getPrototypeOf(value)
  return proto === Object.prototype || proto === null
}

const FIELD_UNSAFE = /[\r\n\0]/

export const isNonEmptyString = (value: unknown): value is string => typeof value === "string" && value.length > 0

/** A seq key from `keyExtractor`: a non-empty string or a finite number. */
const asKey = (value: unknown): string | undefined => {
  if (typeof value === "string") return value.length > 0 ? value : undefined
  if (typeof value === "number" && Number.isFinite(value)) return String(value)
  return undefined
}

export class SendPrep {
  /** The last order key given (see `nextOrder`). */
  private lastOrder = 0
  private isoMs = -1
  private iso = ""
  /** The serializer is `JSON.stringify` (its output has no raw line break). */
  private readonly jsonSerializer: boolean
  private readonly snowflake: Snowflake
  private readonly timestampIds: TimestampIds

  constructor(
    private readonly options: Resolved,
    private readonly sequencer: SequencerImpl,
    private readonly events: Events,
    instanceId: string,
    private readonly now: () => number
  ) {
    this.jsonSerializer = options.serializer === JSON.stringify
    this.snowflake = new Snowflake(instanceBits(instanceId), now)
    this.timestampIds = new TimestampIds(instanceId, now)
  }

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
    let addTraceId = t.mode === "ifMissing" && data[t.fieldName] == null
    // the current span: of the `ssekify.publish` span of a send from within an Effect
    const span = addTraceId ? this.events.observe.current?.span : undefined
    // 'span' without a span (the facade's synchronous sends): the field is left out
    if (addTraceId && t.fromSpan === true && span === undefined) addTraceId = false
    let current: Record<string, unknown> = data
    if (addTimestamp || addRequestId || addTraceId) {
      // Object.assign, not a spread: measured on Node 20, a spread copy is ~4x slower to
      // make and makes JSON.stringify of the copy ~2x slower.
      current = Object.assign({}, data)
      if (addTimestamp) current.timestamp = o.timestamp === "epochMs" ? now : this.isoOf(now)
      if (addRequestId) current[r.fieldName] = call("autoFields.requestId.getter", r.getter!, undefined)
      if (addTraceId) current[t.fieldName] = call("autoFields.traceId.getter", t.getter!, span)
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
      this.events.report(new InvalidInput({ field, reason: "contains CR, LF or NUL (replaced by spaces on the wire)" }))
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
      this.events.report(new InvalidInput({ field: "opts.event", reason: "contains CR, LF or NUL (replaced by spaces on the wire)" }))
    }
    if (i !== undefined && FIELD_UNSAFE.test(i)) {
      this.events.report(new InvalidInput({ field: "opts.id", reason: "contains CR, LF or NUL (replaced by spaces on the wire)" }))
    }
    return { event: e, id: i }
  }

  /** Synchronous preparation (local seq): the `sendTo*` path. */
  prepareLocal(data: unknown, opts: SendOptions | undefined, now: number): Prepared | SendError {
    const checked = this.checkOptions(opts)
    if (checked instanceof InvalidInput) return checked
    const p = this.prepareData(data, now, true)
    if (!("data" in p)) return p
    const id = this.frameId(checked.id, p.data, p.seqValue)
    if (typeof id === "object") return id
    return { data: p.data, event: checked.event, id }
  }

  /** Preparation with the global seq (the `publish*` path). */
  prepareGlobal(data: unknown, opts: SendOptions | undefined, now: number): Effect.Effect<Prepared, SendError> {
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
  encode(data: unknown, event: string | undefined, id: string | undefined): Encoded | SerializeFailed | PayloadTooLarge {
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
    const frameText = Frame.messageText(text, { id, event }, this.jsonSerializer)
    return { frame: Buffer.from(frameText, "utf8"), text, frameText }
  }

  /** An `InvalidInput` when `userId` is not a non-empty string within `maxUserIdLength`. */
  checkUserId(userId: unknown): InvalidInput | undefined {
    if (isNonEmptyString(userId) && userId.length <= this.options.maxUserIdLength) return undefined
    return new InvalidInput({
      field: "userId",
      reason: isNonEmptyString(userId)
        ? userIdTooLong(this.options.maxUserIdLength)
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

  /**
   * Where a frame goes among a user's frames in a shared replay store: send time × 1024
   * plus this instance's counter (the envelope carries both as `at` and `n`, so every
   * instance that records the frame gives it the same place).
   */
  nextOrder(at = this.now()): number {
    // Strictly increasing: a counter cycling through 1024 values apart from the clock
    // wrapped inside a millisecond (two frames of that millisecond for one user then
    // swapped places in the store), as did a clock stepping back. More than 1024 in one
    // millisecond run ahead of the clock; the envelope carries the order's millisecond as its `at`.
    const order = Math.max(at * 1024, this.lastOrder + 1)
    this.lastOrder = order
    return order
  }
}
