/**
 * One SSE connection.
 *
 * On the Node path a connection is a record in the hub — it owns no fiber, stream or
 * timer — and its lifetime is the response's: it ends when the client goes, when it
 * is closed (`handle.close()`, `sse.close(userId)`), when backpressure disconnects it,
 * or at shutdown. {@link scoped} ties it to an Effect `Scope` instead: closing the
 * scope removes it everywhere and ends the response.
 *
 * @since 0.2.0
 */
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import type { InvalidInput, LimitExceeded, ShuttingDown } from "./Errors.js"
import type { IncomingMessage, OutgoingHttpHeaders } from "node:http"
import type { Http2ServerRequest } from "node:http2"
import { SseKify } from "./SseKify.js"

/**
 * The Node response a connection is made on: `http.ServerResponse` (Express `res`,
 * Koa / Egg `ctx.res`, Fastify `reply.raw`, Hapi `request.raw.res`), `node:http2`'s
 * `Http2ServerResponse` (HTTP/2: no `Connection` header is sent), or anything with the
 * same members.
 *
 * @since 0.2.0
 * @category models
 */
export interface NodeResponse {
  write(chunk: Uint8Array): boolean
  end(): unknown
  on(event: "close" | "error", listener: (...args: Array<any>) => void): unknown
  once(event: "drain", listener: (...args: Array<any>) => void): unknown
  setHeader(name: string, value: string | number | ReadonlyArray<string>): unknown
  /** Used to send the SSE headers in one block when present (every `ServerResponse` has it). */
  writeHead?(statusCode: number, headers: OutgoingHttpHeaders): unknown
  readonly headersSent: boolean
  statusCode: number
  readonly writableEnded?: boolean
  readonly destroyed?: boolean
  readonly writableHighWaterMark?: number
  /** Set by compression middleware; called after each heartbeat. */
  flush?: () => void
  /** The request (Node >= 15.7 sets it): where `Last-Event-ID` is read from. */
  readonly req?: IncomingMessage | Http2ServerRequest | undefined
}

/**
 * What happens when a connection's write queue is full: drop the oldest queued frame,
 * drop the new frame, or close the connection.
 *
 * @since 0.2.0
 * @category models
 */
export type DropPolicy = "oldest" | "newest" | "disconnect"

/**
 * Options of `registerConnection`.
 *
 * @since 0.2.0
 * @category models
 */
export interface RegisterOptions {
  /** Rooms to join at once. Default: none. */
  readonly rooms?: ReadonlyArray<string> | undefined
  /**
   * Extra response headers (e.g. CORS). The SSE headers are set by the library; one
   * given here with the same name replaces it. Names must be HTTP tokens; values
   * strings, numbers or arrays of strings without CR, LF, NUL or other characters a
   * header cannot hold (else `InvalidInput`, 400); `undefined` / `null` values are left
   * out.
   */
  readonly headers?: Readonly<Record<string, string | number | ReadonlyArray<string>>> | undefined
  /** Heartbeat interval for this connection; default: the instance's `keepAliveMs`. 0: none. */
  readonly keepAliveMs?: number | undefined
  /** `retry:` sent to this connection; default: the instance's `retryMs`. */
  readonly retryMs?: number | undefined
  /** Frames that may wait for `'drain'`. Default 100. */
  readonly maxQueueItems?: number | undefined
  /** Bytes that may wait for `'drain'`. Default 256 KiB. */
  readonly maxQueueBytes?: number | undefined
  /** What to do when the queue is full. Default `'oldest'`. */
  readonly dropPolicy?: DropPolicy | undefined
  /**
   * The id to replay after. Default: the `Last-Event-ID` request header, else the
   * `lastEventId` / `last-event-id` query parameter of `res.req`.
   */
  readonly lastEventId?: string | undefined
}

/**
 * What `registerConnection` returns. When the instance is not accepting connections
 * (or the input was invalid, or the response is already registered), `connId` is `''`
 * and the methods do nothing.
 *
 * @since 0.2.0
 * @category models
 */
export interface ConnectionHandle {
  /** The connection's id (also in `getUserConnectionIds`). */
  readonly connId: string
  /** Ends the connection (frames sent before in the same tick are written first). */
  readonly close: () => void
  /** Joins a room; false when the connection is closed or the name is invalid. */
  readonly join: (room: string) => boolean
  /** Leaves a room; false when the connection is closed or the name is invalid. */
  readonly leave: (room: string) => boolean
}

/**
 * Registers a connection on a Node response for the lifetime of the current scope:
 * closing the scope closes the connection. The response ending first (the client
 * went away) removes it at once; the scope's finalizer then has nothing to do.
 *
 * @since 0.2.0
 * @category constructors
 */
export const scoped = (
  userId: string,
  res: NodeResponse,
  options?: RegisterOptions
): Effect.Effect<ConnectionHandle, InvalidInput | ShuttingDown | LimitExceeded, SseKify | Scope.Scope> =>
  Effect.flatMap(SseKify, (sse) =>
    Effect.acquireRelease(sse.registerConnection(userId, res, options), (handle) => Effect.sync(handle.close)))
