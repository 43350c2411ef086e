/**
 * The SSE response headers of a Node response, with a connection's extra headers; on
 * HTTP/2 without the connection-specific ones.
 */
import type { NodeResponse } from "./domain.js"

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
export const sseHeaders = (
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
