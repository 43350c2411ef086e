/**
 * Frames as `ssekify/client` sees them: the message model (`phase`, `payload`, the
 * top-level `requestId` and `seq`), where a frame came from, the callbacks that receive
 * them, and the parsing of a frame's data and id.
 *
 * @since 0.2.0
 */

/**
 * The `phase` values the client acts on: `'done'` and `'error'` end a subscription.
 *
 * @since 0.2.0
 * @category models
 */
export type Phase = "progress" | "done" | "error"

/**
 * A message routed to a `postAndListen` callback: the server's data, which carries the
 * `requestId` at its top level. `P` types the `payload`.
 *
 * @since 0.2.0
 * @category models
 */
export interface ListenMessage<P = unknown> {
  readonly requestId: string
  readonly phase?: Phase | (string & {}) | undefined
  readonly type?: string | undefined
  readonly payload?: P | undefined
  readonly error?: { readonly code?: string | undefined; readonly message?: string | undefined; readonly [field: string]: unknown } | undefined
  /** The server's per-`requestId` sequence number (ssekify adds it by default). */
  readonly seq?: number | undefined
  readonly timestamp?: string | number | undefined
  readonly [field: string]: unknown
}

/**
 * Where a frame came from.
 *
 * @since 0.2.0
 * @category models
 */
export interface FrameMeta {
  /** The SSE event name. */
  readonly event: string
  /** The frame's `id:`, when it had one. */
  readonly id: string | undefined
  /** The raw `data:` text. */
  readonly raw: string
}

/**
 * Called for each message of a `postAndListen` request, in order and at most once per
 * frame (duplicates after a replay or reconnect are dropped). It may run before the
 * `postAndListen` promise resolves: frames can arrive before the POST response.
 *
 * @since 0.2.0
 * @category models
 */
export type MessageHandler<P = unknown> = (message: ListenMessage<P>, meta: FrameMeta) => void

/**
 * Called for frames of the configured event that belong to no request of this client:
 * no top-level `requestId` (or one this client did not start), or data that is not a
 * JSON object (then `message` is the parsed JSON value or the raw string).
 *
 * @since 0.2.0
 * @category models
 */
export type BroadcastHandler = (message: unknown, meta: FrameMeta) => void


const isPlainRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value)

/** What routing needs of a frame's data. */
export interface ParsedFrame {
  /** The parsed JSON, or the raw text when it is not JSON. */
  readonly message: unknown
  /** The top-level `requestId`, when the data is a JSON object with a string one. */
  readonly requestId: string | undefined
  /** The top-level sequence number, when it is a finite number. */
  readonly seq: number | undefined
}

/** Parses a frame's data: JSON when it is JSON (else the text itself), its `requestId` and its `seqField`. */
export const parseFrame = (raw: string, seqField: string): ParsedFrame => {
  let message: unknown = raw
  try {
    message = JSON.parse(raw)
  } catch {
    // not JSON: the text itself is the message (a broadcast)
  }
  if (!isPlainRecord(message)) return { message, requestId: undefined, seq: undefined }
  const requestId = typeof message.requestId === "string" ? message.requestId : undefined
  const seqValue = message[seqField]
  const seq = typeof seqValue === "number" && Number.isFinite(seqValue) ? seqValue : undefined
  return { message, requestId, seq }
}

/** The text of a frame's data (always a string from an EventSource). */
export const frameText = (data: unknown): string => (typeof data === "string" ? data : String(data))

/**
 * The frame's own id, given the `lastEventId` of this event and of the previous one on
 * the same EventSource. Browsers give every event the EventSource's last id, also to
 * frames without an `id:` line (the `eventsource` package gives those ''), so an id is
 * the frame's own only when it differs from the previous event's.
 */
export const ownFrameId = (last: string, previous: string): string | undefined =>
  last !== "" && last !== previous ? last : undefined
