/**
 * The routed wire format (`routing: "user"`): a message carries the SSE frame the
 * publisher encoded, so a receiver checks it and writes it without parsing or
 * serializing the payload again. Not readable by 0.1.6 (which shares only the
 * single-channel mode's JSON envelope, `Envelope.ts`).
 *
 *     R1U<header>\n<frame>                 unsigned bus
 *     R1S<64 hex HMAC><header>\n<frame>    signed bus (`busSecret`)
 *
 * `<header>` is a JSON array `[type, target, id, event, at, n, origin]` (`null` for a
 * missing target, id or event), with `b` and `c` (the boot nonce and counter the replay
 * window checks) appended on a signed bus. The HMAC covers a version tag, the concrete
 * channel the message was published on (length-prefixed) and everything after the
 * signature: a message signed for one user's channel does not verify on another's.
 *
 * The receiver refuses (a `BusMessageInvalid`): a bad or missing signature, a header
 * of the wrong shape, a message whose target does not belong to the channel it came
 * on, and a frame that is not exactly one SSE event as `Frame.messageText` writes it
 * for that header: `id:` and `event:` lines equal to the header's (sanitized), then one
 * or more `data: ` lines, then one blank line, no CR anywhere; so a forged frame cannot
 * carry a second event, a `retry:` or a comment.
 */
import * as Either from "effect/Either"
import * as Redacted from "effect/Redacted"
import { createHmac, timingSafeEqual } from "node:crypto"
import type { FieldLimits, TargetType } from "../Envelope.js"
import { BusMessageInvalid } from "../Errors.js"
import { sanitizeField } from "../Frame.js"
import { roomChannel, userChannel } from "../Transport.js"

/** A message of the routed format, decoded and checked. */
export interface Routed {
  readonly type: TargetType
  readonly target: string | undefined
  readonly id: string | undefined
  readonly event: string | undefined
  /** The order's millisecond (send time). */
  readonly at: number
  /** The publisher's counter within `at` (0–1023). */
  readonly n: number
  readonly origin: string
  /** Signed bus: the publisher's boot nonce and message counter. */
  readonly b: string | undefined
  readonly c: number | undefined
  /** The SSE frame, as the publisher encoded it. */
  readonly frame: string
  /**
   * The payload's size as the frame carries it (line breaks as LF): in UTF-8 bytes when
   * it could pass the `maxBytes` given to `decode`, else in UTF-16 units (then within it).
   */
  readonly dataBytes: number
}

/** What `encode` takes: the header of a {@link Routed} message (`b`, `c` only on a signed bus). */
export interface Fields extends Pick<Routed, "type" | "target" | "id" | "event" | "at" | "n" | "origin"> {
  readonly b?: string | undefined
  readonly c?: number | undefined
}

const UNSIGNED = "R1U"
const SIGNED = "R1S"
const SIG_HEX = 64
/** The first characters of every routed message (a channel-mode receiver recognizes them). */
export const PREFIX = "R1"

/** The channel a message of `type` / `target` belongs on. */
export const channelOf = (channel: string, type: TargetType, target: string | undefined): string =>
  type === "all" ? channel : type === "user" ? userChannel(channel, target!) : roomChannel(channel, target!)

const domainOf = (channel: string): string => `ssekify-routed/1\n${channel.length}:${channel}\n`

const hmac = (secret: Redacted.Redacted<string>, channel: string, body: string): Buffer =>
  createHmac("sha256", Redacted.value(secret)).update(domainOf(channel), "utf8").update(body, "utf8").digest()

/**
 * The routed message for a frame (`frame`: the text `Frame.messageText` wrote for the
 * header's id and event). Signed for `channel` (the concrete one it is published on)
 * when `secret` is given.
 */
export const encode = (
  fields: Fields,
  frame: string,
  channel: string,
  secret: Redacted.Redacted<string> | undefined
): string => {
  const header: Array<unknown> = [
    fields.type,
    fields.target ?? null,
    fields.id ?? null,
    fields.event ?? null,
    fields.at,
    fields.n,
    fields.origin
  ]
  if (fields.b !== undefined || fields.c !== undefined) header.push(fields.b ?? null, fields.c ?? null)
  const body = JSON.stringify(header) + "\n" + frame
  if (secret === undefined) return UNSIGNED + body
  return SIGNED + hmac(secret, channel, body).toString("hex") + body
}

const sampleOf = (raw: string): string => (raw.length > 200 ? raw.slice(0, 200) + "…" : raw)

const invalid = (reason: string, raw: string): Either.Either<never, BusMessageInvalid> =>
  Either.left(new BusMessageInvalid({ reason, sample: sampleOf(raw) }))

const HEX64 = /^[0-9a-f]{64}$/

const optionalString = (value: unknown): value is string | null => value === null || typeof value === "string"

/**
 * Checks that `frame` is one SSE event as `Frame.messageText` writes it for `id` and
 * `event`; returns its payload size (in UTF-16 units when that many UTF-8 bytes could
 * not pass `maxBytes`, else in UTF-8 bytes; always bytes when `maxBytes` is given and
 * could be passed), or why it is refused.
 */
export const checkFrame = (
  frame: string,
  id: string | undefined,
  event: string | undefined,
  maxBytes?: number
): number | string => {
  if (frame.indexOf("\r") >= 0) return "the frame contains a CR"
  let prefix = ""
  if (id) prefix += "id: " + sanitizeField(id) + "\n"
  if (event) prefix += "event: " + sanitizeField(event) + "\n"
  if (!frame.startsWith(prefix)) return "the frame's id or event lines do not match the header"
  if (frame.length < prefix.length + 8 || !frame.endsWith("\n\n")) return "the frame does not end with one blank line"
  // data lines: from `prefix.length` to the final "\n\n"; each starts with "data: "
  const end = frame.length - 1
  let lines = 0
  let at = prefix.length
  while (at < end) {
    if (!frame.startsWith("data: ", at)) return "the frame has a line that is not 'data: ' after its id and event"
    const nl = frame.indexOf("\n", at)
    lines++
    at = nl + 1
  }
  // every char after the prefix is in a data line but the "data: " and LF of each, and the final LF
  const chars = frame.length - prefix.length - lines * 7 - 1 + (lines - 1)
  // UTF-8 takes 1 to 3 bytes per UTF-16 unit: measured only when that decides
  if (maxBytes === undefined || maxBytes <= 0 || chars * 3 <= maxBytes) return chars
  return Buffer.byteLength(frame.slice(prefix.length, end), "utf8") - lines * 6 - 1
}

/**
 * Parses and checks a routed message that arrived on `arrivedOn`: its signature (with
 * `secret`), its header, that it belongs on that channel (`channel` is the shared one),
 * and its frame.
 */
export const decode = (
  raw: string,
  channel: string,
  arrivedOn: string,
  secret: Redacted.Redacted<string> | undefined,
  maxBytes?: number
): Either.Either<Routed, BusMessageInvalid> => {
  if (typeof raw !== "string") return Either.left(new BusMessageInvalid({ reason: `not a string but ${typeof raw}`, sample: "" }))
  let body: string
  if (raw.startsWith(SIGNED)) {
    if (secret === undefined) return invalid("signed routed message on a bus without busSecret", raw)
    const sig = raw.slice(SIGNED.length, SIGNED.length + SIG_HEX)
    if (!HEX64.test(sig)) return invalid("bad signature (busSecret)", raw)
    body = raw.slice(SIGNED.length + SIG_HEX)
    const expected = hmac(secret, arrivedOn, body)
    const given = Buffer.from(sig, "hex")
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return invalid("bad signature (busSecret)", raw)
  } else if (raw.startsWith(UNSIGNED)) {
    if (secret !== undefined) return invalid("unsigned message on a signed bus (busSecret)", raw)
    body = raw.slice(UNSIGNED.length)
  } else {
    return invalid(
      raw.startsWith("{")
        ? "a single-channel (0.1.6) envelope on a routed bus (routing: 'user'): every instance on a channel must use the same routing"
        : "not a routed message",
      raw
    )
  }
  const nl = body.indexOf("\n")
  if (nl < 0) return invalid("no frame after the header", raw)
  let header: unknown
  try {
    header = JSON.parse(body.slice(0, nl))
  } catch {
    return invalid("the header is not JSON", raw)
  }
  if (!Array.isArray(header) || (header.length !== 7 && header.length !== 9)) return invalid("the header is not a 7- or 9-field array", raw)
  const [type, target, id, event, at, n, origin] = header as Array<unknown>
  if (type !== "all" && type !== "user" && type !== "room") return invalid("unknown type", raw)
  if (!optionalString(target) || !optionalString(id) || !optionalString(event)) return invalid("target, id and event must be strings or null", raw)
  if (type === "all" ? target !== null : target === null || target.length === 0) {
    return invalid(type === "all" ? "an 'all' message has no target" : `a '${type}' message needs a non-empty target`, raw)
  }
  if (id === "" || event === "") return invalid("an empty id or event is written as null", raw)
  if (typeof at !== "number" || !Number.isSafeInteger(at) || at < 0) return invalid("at must be a non-negative integer", raw)
  if (typeof n !== "number" || !Number.isInteger(n) || n < 0 || n > 1023) return invalid("n must be an integer 0–1023", raw)
  if (typeof origin !== "string" || origin.length === 0) return invalid("origin must be a non-empty string", raw)
  let b: string | undefined
  let c: number | undefined
  if (header.length === 9) {
    const [hb, hc] = header.slice(7) as Array<unknown>
    if (typeof hb !== "string" || typeof hc !== "number" || !Number.isSafeInteger(hc) || hc < 0) {
      return invalid("b must be a string and c a non-negative integer", raw)
    }
    b = hb
    c = hc
  }
  if (channelOf(channel, type, target ?? undefined) !== arrivedOn) return invalid("the message's target does not belong to the channel it came on", raw)
  const frame = body.slice(nl + 1)
  const checked = checkFrame(frame, id ?? undefined, event ?? undefined, maxBytes)
  if (typeof checked === "string") return invalid(checked, raw)
  return Either.right({
    type,
    target: target ?? undefined,
    id: id ?? undefined,
    event: event ?? undefined,
    at,
    n,
    origin,
    b,
    c,
    frame,
    dataBytes: checked
  })
}

/** Why a routed message breaks a field limit, or `undefined`. */
export const overLimit = (m: Routed, limits: FieldLimits & { readonly maxPayloadBytes: number }): string | undefined => {
  if (m.target !== undefined) {
    if (m.type === "user" && m.target.length > limits.maxUserIdLength) {
      return `target user id longer than maxUserIdLength (${m.target.length} > ${limits.maxUserIdLength})`
    }
    if (m.type === "room" && m.target.length > limits.maxRoomNameLength) {
      return `target room name longer than maxRoomNameLength (${m.target.length} > ${limits.maxRoomNameLength})`
    }
  }
  if (m.event !== undefined && m.event.length > limits.maxEventNameLength) {
    return `event name longer than maxEventNameLength (${m.event.length} > ${limits.maxEventNameLength})`
  }
  if (m.id !== undefined && m.id.length > limits.maxIdLength) {
    return `id longer than maxIdLength (${m.id.length} > ${limits.maxIdLength})`
  }
  if (limits.maxPayloadBytes > 0 && m.dataBytes > limits.maxPayloadBytes) {
    return `payload larger than maxPayloadBytes (${m.dataBytes} > ${limits.maxPayloadBytes})`
  }
  return undefined
}

/**
 * The payload of a frame as 0.1.6's envelope carried it (for the `'publish'` event): the
 * data lines joined by LF, parsed as JSON when it is JSON, else the text.
 */
export const dataOf = (m: Routed): unknown => {
  let prefix = 0
  if (m.id) prefix = m.frame.indexOf("\n") + 1
  if (m.event) prefix = m.frame.indexOf("\n", prefix) + 1
  const text = m.frame.slice(prefix, -2).split("\n").map((line) => line.slice(6)).join("\n")
  try {
    return JSON.parse(text)
  } catch {
    return text
  }
}
