/**
 * Reading the id a reconnecting client sends (`Last-Event-ID` header or query), shared
 * by the Node path (`internal/engine.ts`) and the platform path (`HttpSse.ts`).
 *
 * - Node decodes header bytes as latin1, while browsers send the id's UTF-8 bytes: a
 *   header with characters above U+007F is decoded again as UTF-8 when its bytes are
 *   valid UTF-8 (else it is kept as Node read it).
 * - HTTP trims spaces and tabs around a header value, so ids are sent trimmed (see
 *   {@link trimId}) and a query value is trimmed the same way.
 */

const NON_ASCII = /[^\x00-\x7f]/
const LATIN1_ONLY = /^[\x00-\xff]*$/
const EDGE_SPACE = /^[ \t]+|[ \t]+$/g

/** Spaces and tabs around an id removed (what HTTP does to a header value). */
export const trimId = (id: string): string => {
  const first = id.charCodeAt(0)
  const last = id.charCodeAt(id.length - 1)
  return first === 32 || first === 9 || last === 32 || last === 9 ? id.replace(EDGE_SPACE, "") : id
}

/** A header value as the client meant it: its latin1 bytes read as UTF-8 when they are UTF-8. */
export const decodeHeader = (value: string): string => {
  if (!NON_ASCII.test(value) || !LATIN1_ONLY.test(value)) return value
  const bytes = Buffer.from(value, "latin1")
  const decoded = bytes.toString("utf8")
  // Round trip: only valid UTF-8 decodes to a string that encodes back to the same bytes.
  return Buffer.from(decoded, "utf8").equals(bytes) ? decoded : value
}

/** The id from a `last-event-id` header value, else the query, or undefined. */
export const lastEventIdFrom = (header: unknown, url: unknown): string | undefined => {
  if (typeof header === "string" && header.length > 0) return decodeHeader(header)
  if (typeof url !== "string") return undefined
  const q = url.indexOf("?")
  if (q < 0) return undefined
  // URLSearchParams never throws on a string (malformed escapes are kept as they are).
  const params = new URLSearchParams(url.slice(q + 1))
  const value = params.get("lastEventId") || params.get("last-event-id") || params.get("Last-Event-ID")
  if (value === null || value === "") return undefined
  const trimmed = trimId(value)
  return trimmed === "" ? undefined : trimmed
}
