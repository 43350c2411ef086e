/**
 * Pure Server-Sent Events wire encoding.
 *
 * A frame is encoded once into one `Uint8Array` and the same bytes are written to
 * every connection that receives it. Field values (`id:`, `event:`) never carry a
 * line break or NUL into the wire, and every CR, LF or CRLF inside the data starts a
 * new `data:` line, so a payload can never set its own `id:` or `event:`.
 *
 * @since 0.2.0
 */

/**
 * The fields of one SSE message besides its data.
 *
 * @since 0.2.0
 * @category models
 */
export interface FrameFields {
  /** `id:` line; the browser echoes the last one as `Last-Event-ID` when it reconnects. */
  readonly id?: string | undefined
  /** `event:` line; the name a page passes to `addEventListener`. Omitted: `message`. */
  readonly event?: string | undefined
}

const FIELD_UNSAFE = /[\r\n\0]/
const FIELD_UNSAFE_ALL = /[\r\n\0]/g
const LINE_BREAK = /[\r\n]/
const LINE_BREAKS = /\r\n|\r|\n/

/**
 * Makes a value safe for a single-line SSE field: CR, LF and NUL become spaces
 * (the original 0.1.6 replaced CR and LF the same way).
 *
 * @since 0.2.0
 * @category encoding
 */
export const sanitizeField = (value: string): string =>
  FIELD_UNSAFE.test(value) ? value.replace(FIELD_UNSAFE_ALL, " ") : value

/**
 * The text of a message frame: `id:`, `event:`, one `data:` line per line of `data`,
 * and the blank line that ends the frame. `singleLine`: the caller knows `data` has no
 * CR or LF (e.g. it comes from `JSON.stringify`), so it is not searched.
 *
 * @since 0.2.0
 * @category encoding
 */
export const messageText = (data: string, fields?: FrameFields, singleLine = false): string => {
  let text = ""
  if (fields !== undefined) {
    if (fields.id) text += "id: " + sanitizeField(fields.id) + "\n"
    if (fields.event) text += "event: " + sanitizeField(fields.event) + "\n"
  }
  if (!singleLine && LINE_BREAK.test(data)) {
    const lines = data.split(LINE_BREAKS)
    for (let i = 0; i < lines.length; i++) text += "data: " + lines[i] + "\n"
  } else {
    text += "data: " + data + "\n"
  }
  return text + "\n"
}

/**
 * Encodes one message frame to bytes (UTF-8).
 *
 * @since 0.2.0
 * @category encoding
 */
export const message = (data: string, fields?: FrameFields, singleLine = false): Uint8Array =>
  Buffer.from(messageText(data, fields, singleLine), "utf8")

/**
 * Encodes the `retry:` frame that tells the browser how long to wait before it
 * reconnects.
 *
 * @since 0.2.0
 * @category encoding
 */
export const retry = (ms: number): Uint8Array => Buffer.from(`retry: ${Math.max(0, Math.floor(ms))}\n\n`, "latin1")

/**
 * Encodes a comment frame (`: text`), which browsers ignore: the heartbeat.
 *
 * @since 0.2.0
 * @category encoding
 */
export const comment = (text: string): Uint8Array =>
  Buffer.from(": " + text.replace(FIELD_UNSAFE_ALL, " ") + "\n\n", "utf8")

/**
 * The heartbeat comment the original wrote: `: ping <epoch ms>`.
 *
 * @since 0.2.0
 * @category encoding
 */
export const ping = (now: number): Uint8Array => Buffer.from(`: ping ${now}\n\n`, "latin1")
