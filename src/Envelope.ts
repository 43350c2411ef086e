/**
 * The message that travels between instances.
 *
 * The wire format is the JSON object of the original ssekify 0.1.6
 * (`{ type, target?, data, event?, id?, at, origin }`), so old and new instances can
 * share one channel during a rolling upgrade. What comes off the bus is checked with
 * {@link Envelope} (a `Schema`): a foreign or broken message becomes a
 * `BusMessageInvalid` error, never a crash.
 *
 * With `busSecret` the envelope also carries `b` (the publisher's boot nonce) and `c`
 * (its message counter) and ends with `sig`, an HMAC bound to the channel: receivers
 * refuse what is unsigned, forged, signed for another channel, older than
 * {@link MAX_AGE_MS} or already received (a replay window per publisher boot).
 *
 * @since 0.2.0
 */
import * as Either from "effect/Either"
import * as ParseResult from "effect/ParseResult"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import { createHmac, timingSafeEqual } from "node:crypto"
import { BusMessageInvalid } from "./Errors.js"

/**
 * Who a message is for: everyone, one user (`target` = user id) or one room
 * (`target` = room name).
 *
 * @since 0.2.0
 * @category models
 */
export type TargetType = "all" | "user" | "room"

/**
 * A frame id on the bus: a string, or a number written by an older publisher.
 * Numbers are turned into strings.
 *
 * @since 0.2.0
 * @category schemas
 */
export const FrameId = Schema.Union(
  Schema.String,
  Schema.transform(Schema.Number, Schema.String, {
    strict: true,
    decode: (n) => String(n),
    encode: (s) => Number(s)
  })
)

/**
 * The envelope schema.
 *
 * @since 0.2.0
 * @category schemas
 */
export const Envelope = Schema.Struct({
  type: Schema.Literal("all", "user", "room"),
  target: Schema.optional(Schema.String),
  data: Schema.Unknown,
  event: Schema.optional(Schema.String),
  id: Schema.optional(FrameId),
  at: Schema.Number,
  origin: Schema.optional(Schema.String),
  /** The publisher's message counter (0–1023): orders frames of one millisecond in a shared replay store. */
  n: Schema.optional(Schema.Int),
  /**
   * Signed bus only: the publisher's boot nonce (random for each instance and each
   * start), so a restarted publisher with a fixed `instanceId` opens a new replay window.
   */
  b: Schema.optional(Schema.String),
  /** Signed bus only: the publisher's message counter (1, 2, 3 … per boot), checked against replays. */
  c: Schema.optional(Schema.NonNegativeInt),
  /** HMAC of the envelope when the bus is signed (`busSecret`). */
  sig: Schema.optional(Schema.String)
}).pipe(
  Schema.filter((env) => {
    if (env.data === undefined) return "data is missing"
    if (env.type !== "all" && (env.target === undefined || env.target.length === 0)) {
      return `a '${env.type}' envelope needs a non-empty target`
    }
    return true
  })
)

/**
 * A decoded envelope.
 *
 * @since 0.2.0
 * @category models
 */
export type Envelope = typeof Envelope.Type

const decodeEither = Schema.decodeUnknownEither(Envelope, { onExcessProperty: "ignore" })

const sampleOf = (raw: string): string => (raw.length > 200 ? raw.slice(0, 200) + "…" : raw)

/**
 * A `BusMessageInvalid` for a message from the bus, with its first 200 characters.
 *
 * @since 0.2.0
 * @category decoding
 */
export const invalid = (reason: string, raw: string): BusMessageInvalid =>
  new BusMessageInvalid({ reason, sample: sampleOf(raw) })

const optionalString = (value: unknown): boolean => value === undefined || typeof value === "string"

/**
 * {@link Envelope}'s decoding without the schema machinery, for a JSON value: the
 * decoded envelope (fields in the schema's order, the excess ones left out, a numeric
 * `id` as a string), or `undefined` when the schema would refuse it.
 */
const check = (json: unknown): Envelope | undefined => {
  if (typeof json !== "object" || json === null) return undefined
  const o = json as { readonly [K in keyof Envelope]?: unknown }
  const { type, target, data, event, id, at, origin, n, b, c, sig } = o
  if (type !== "all" && type !== "user" && type !== "room") return undefined
  if (!optionalString(target) || !optionalString(event) || !optionalString(origin)) return undefined
  if (!optionalString(b) || !optionalString(sig)) return undefined
  if (id !== undefined && typeof id !== "string" && typeof id !== "number") return undefined
  if (typeof at !== "number") return undefined
  if (n !== undefined && !(typeof n === "number" && Number.isSafeInteger(n))) return undefined
  if (c !== undefined && !(typeof c === "number" && c >= 0 && Number.isSafeInteger(c))) return undefined
  if (data === undefined) return undefined
  if (type !== "all" && (target === undefined || (target as string).length === 0)) return undefined
  const env: { -readonly [K in keyof Envelope]: Envelope[K] } = { type } as Envelope
  if (target !== undefined) env.target = target as string
  env.data = data
  if (event !== undefined) env.event = event as string
  if (id !== undefined) env.id = typeof id === "number" ? String(id) : (id as string)
  env.at = at
  if (origin !== undefined) env.origin = origin as string
  if (n !== undefined) env.n = n as number
  if (b !== undefined) env.b = b as string
  if (c !== undefined) env.c = c as number
  if (sig !== undefined) env.sig = sig as string
  return env
}

/**
 * Parses and checks one message from the bus.
 *
 * @since 0.2.0
 * @category decoding
 */
export const decode = (raw: unknown): Either.Either<Envelope, BusMessageInvalid> => {
  if (typeof raw !== "string") {
    return Either.left(new BusMessageInvalid({ reason: `not a string but ${typeof raw}`, sample: "" }))
  }
  let json: unknown
  try {
    json = JSON.parse(raw)
  } catch (e) {
    return Either.left(
      new BusMessageInvalid({ reason: `not JSON (${(e as Error).message})`, sample: sampleOf(raw) })
    )
  }
  // The hand-written check accepts exactly what the schema accepts (a property test
  // proves it against the schema); a refusal goes through the schema for its message.
  const checked = check(json)
  if (checked !== undefined) return Either.right(checked)
  const result = decodeEither(json)
  if (Either.isLeft(result)) {
    return Either.left(
      new BusMessageInvalid({
        reason: ParseResult.TreeFormatter.formatIssueSync(result.left.issue),
        sample: sampleOf(raw)
      })
    )
  }
  return Either.right(result.right)
}

/**
 * The field limits an instance applies to what it sends, applied to what comes off the
 * bus too (the `max*Length` options).
 *
 * @since 0.2.0
 * @category models
 */
export interface FieldLimits {
  readonly maxUserIdLength: number
  readonly maxRoomNameLength: number
  readonly maxEventNameLength: number
  readonly maxIdLength: number
}

/**
 * Why an envelope from the bus breaks a field limit, or `undefined` when it does not.
 *
 * @since 0.2.0
 * @category decoding
 */
export const overLimit = (env: Envelope, limits: FieldLimits): string | undefined => {
  if (env.target !== undefined) {
    if (env.type === "user" && env.target.length > limits.maxUserIdLength) {
      return `target user id longer than maxUserIdLength (${env.target.length} > ${limits.maxUserIdLength})`
    }
    if (env.type === "room" && env.target.length > limits.maxRoomNameLength) {
      return `target room name longer than maxRoomNameLength (${env.target.length} > ${limits.maxRoomNameLength})`
    }
  }
  if (env.event !== undefined && env.event.length > limits.maxEventNameLength) {
    return `event name longer than maxEventNameLength (${env.event.length} > ${limits.maxEventNameLength})`
  }
  if (env.id !== undefined && env.id.length > limits.maxIdLength) {
    return `id longer than maxIdLength (${env.id.length} > ${limits.maxIdLength})`
  }
  return undefined
}

/**
 * How old (or how far in the future, for clock skew) the send time `at` of a signed
 * message may be: 60 s. Older ones are refused, so a captured message cannot be
 * replayed to an instance that never saw it (or forgot it) once a minute has passed;
 * within the minute, the receiver's replay window refuses what it has seen. The clocks
 * of the instances must agree within this.
 *
 * @since 0.2.0
 * @category signing
 */
export const MAX_AGE_MS = 60_000

/**
 * Builds an envelope.
 *
 * @since 0.2.0
 * @category constructors
 */
export const make = (fields: {
  readonly type: TargetType
  readonly target?: string | undefined
  readonly data: unknown
  readonly event?: string | undefined
  readonly id?: string | undefined
  readonly at: number
  readonly origin: string
  readonly n?: number | undefined
  readonly b?: string | undefined
  readonly c?: number | undefined
}): Envelope => {
  // Key order as the original wrote it; undefined fields vanish in JSON.
  const env: { -readonly [K in keyof Envelope]: Envelope[K] } = { type: fields.type, data: fields.data, at: fields.at }
  if (fields.target !== undefined) env.target = fields.target
  if (fields.event !== undefined) env.event = fields.event
  if (fields.id !== undefined) env.id = fields.id
  env.origin = fields.origin
  if (fields.n !== undefined) env.n = fields.n
  if (fields.b !== undefined) env.b = fields.b
  if (fields.c !== undefined) env.c = fields.c
  return env
}

/**
 * The JSON text of an envelope, in the original's key order. `data` is written with
 * `JSON.stringify`; when that throws (a circular object) but `serialized` — the
 * output of the configured serializer — is JSON, that text is spliced in instead.
 *
 * @since 0.2.0
 * @category encoding
 */
export const encode = (env: Envelope, serialized?: string): string => {
  const head: Record<string, unknown> = { type: env.type }
  if (env.target !== undefined) head.target = env.target
  const tail: Record<string, unknown> = {}
  if (env.event !== undefined) tail.event = env.event
  if (env.id !== undefined) tail.id = env.id
  tail.at = env.at
  if (env.origin !== undefined) tail.origin = env.origin
  if (env.n !== undefined) tail.n = env.n
  if (env.b !== undefined) tail.b = env.b
  if (env.c !== undefined) tail.c = env.c
  if (env.sig !== undefined) tail.sig = env.sig
  let data: string | undefined
  try {
    data = JSON.stringify(env.data)
  } catch (e) {
    if (serialized === undefined || !isJson(serialized)) throw e
    data = serialized
  }
  if (data === undefined) data = "null"
  const h = JSON.stringify(head)
  const t = JSON.stringify(tail)
  return h.slice(0, -1) + ',"data":' + data + "," + t.slice(1)
}

const SIGNED = /,"sig":"([0-9a-f]{64})"\}$/
const SIG_SUFFIX_LENGTH = ',"sig":"'.length + 64 + '"}'.length

/**
 * What the HMAC covers before the envelope text: a version tag and the channel
 * (length-prefixed, so no channel/text split is ambiguous). A message signed for one
 * channel does not verify on another; a message signed by the first 0.2.0 builds
 * (no tag, no channel) does not verify at all.
 */
const domainOf = (channel: string): string => `ssekify-bus/2\n${channel.length}:${channel}\n`

const hmac = (secret: Redacted.Redacted<string>, domain: string, text: string): Buffer =>
  createHmac("sha256", Redacted.value(secret)).update(domain, "utf8").update(text, "utf8").digest()

/**
 * Signs the JSON text of an envelope for one channel: appends `"sig"` (HMAC-SHA256, hex,
 * of a version tag, the channel and the text) as its last key. The envelope should
 * carry `origin`, `at`, `b` and `c`: receivers refuse signed messages without them, and
 * those too old or already seen (see {@link MAX_AGE_MS}).
 *
 * @since 0.2.0
 * @category signing
 */
export const sign = (message: string, secret: Redacted.Redacted<string>, channel: string): string =>
  message.slice(0, -1) + ',"sig":"' + hmac(secret, domainOf(channel), message).toString("hex") + '"}'

/**
 * Checks the signature of a message that arrived on `channel` and returns the text it
 * signed. Unsigned and wrongly signed messages — including one signed for another
 * channel — are a `BusMessageInvalid`.
 *
 * @since 0.2.0
 * @category signing
 */
export const verify = (
  raw: string,
  secret: Redacted.Redacted<string>,
  channel: string
): Either.Either<string, BusMessageInvalid> => {
  const match = SIGNED.exec(raw)
  if (match === null) {
    return Either.left(new BusMessageInvalid({ reason: "unsigned message on a signed bus (busSecret)", sample: sampleOf(raw) }))
  }
  const text = raw.slice(0, raw.length - SIG_SUFFIX_LENGTH) + "}"
  const expected = hmac(secret, domainOf(channel), text)
  const given = Buffer.from(match[1]!, "hex")
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
    return Either.left(new BusMessageInvalid({ reason: "bad signature (busSecret)", sample: sampleOf(raw) }))
  }
  return Either.right(text)
}

const isJson = (text: string): boolean => {
  try {
    JSON.parse(text)
    return true
  } catch {
    return false
  }
}
