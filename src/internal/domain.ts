/**
 * The domain types: options, events, stats, the connection handle and the Node
 * response it is made on. A leaf module (it imports only types), re-exported under the
 * same names by the public modules `SseKify` and `Connection`; internals import them
 * from here, never from the public modules.
 *
 * @since 0.2.0
 */
import type * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import type { IncomingMessage, OutgoingHttpHeaders } from "node:http"
import type { Http2ServerRequest } from "node:http2"
import type * as Envelope from "../Envelope.js"
import type { InvalidInput, LimitExceeded, ShuttingDown, SseKifyError } from "../Errors.js"

export type {
  AutoField,
  AutoFieldsOptions,
  TraceIdField,
  FrameIdPolicy,
  Options,
  SendOptions,
  SeqOptions,
  ShutdownOptions
} from "./domainOptions.js"

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
  /** Heartbeat interval for this connection in ms (or `keepAlive`); default: the instance's. 0: none. */
  readonly keepAliveMs?: number | undefined
  /**
   * Heartbeat interval for this connection as a Duration (give this or `keepAliveMs`);
   * default: the instance's. Zero: none.
   *
   * @since 0.3.0
   */
  readonly keepAlive?: Duration.DurationInput | undefined
  /** `retry:` sent to this connection in ms (or `retry`); default: the instance's. */
  readonly retryMs?: number | undefined
  /**
   * `retry:` sent to this connection as a Duration (give this or `retryMs`); default:
   * the instance's.
   *
   * @since 0.3.0
   */
  readonly retry?: Duration.DurationInput | undefined
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
 * `stats()`: every field of the original, plus replay and bus counters.
 *
 * @since 0.2.0
 * @category models
 */
export interface Stats {
  readonly connections: number
  readonly users: number
  readonly rooms: number
  /** Frames written to connections (one per frame per connection). */
  readonly sent: number
  readonly droppedOldest: number
  readonly droppedNewest: number
  readonly disconnectedByBackpressure: number
  /** Largest queue seen (frames waiting for `'drain'`). */
  readonly queueItemsMax: number
  readonly queueBytesMax: number
  readonly errorCount: number
  readonly seqIncrsLocal: number
  readonly seqIncrsRedis: number
  /** Last fallback of the global seq to memory (epoch ms); 0: never. */
  readonly lastSeqKvFallbackAt: number
  /** Frames written by `Last-Event-ID` replays. */
  readonly replayed: number
  /** Reconnects whose `Last-Event-ID` was not found. */
  readonly replayMisses: number
  /** Messages this instance put on the bus. */
  readonly published: number
  /** Messages from other instances delivered here. */
  readonly received: number
  /**
   * Messages from the bus refused (`BUS_MESSAGE_INVALID`): malformed, over a field
   * limit, unsigned or forged on a signed bus, signed for another channel, replayed or
   * too old.
   */
  readonly busRejected: number
  /** False after `stopAccepting()` / `shutdown()`. */
  readonly accepting: boolean
}

/**
 * The events, by name, and what each carries.
 *
 * @since 0.2.0
 * @category models
 */
export interface SseKifyEventMap {
  readonly connect: { readonly userId: string; readonly connId: string }
  readonly disconnect: { readonly userId: string; readonly connId: string }
  /** A message from another instance arrived (the envelope as published). */
  readonly publish: Envelope.Envelope
  /** Once per delivery call. */
  readonly "message-sent":
    | { readonly scope: "user"; readonly userId: string; readonly count: number }
    | { readonly scope: "all"; readonly count: number }
    | { readonly scope: "room"; readonly room: string; readonly count: number }
  /** Frames dropped from a full queue (`dropPolicy` 'oldest' / 'newest'). */
  readonly drop: { readonly connId: string; readonly userId: string; readonly policy: Exclude<DropPolicy, "disconnect">; readonly frames: number }
  /** Every error is one of the library's typed errors: each has `_tag` and a stable `code`. */
  readonly error: SseKifyError
}

/**
 * One event.
 *
 * @since 0.2.0
 * @category models
 */
export type SseKifyEvent = {
  readonly [K in keyof SseKifyEventMap]: { readonly type: K; readonly payload: SseKifyEventMap[K] }
}[keyof SseKifyEventMap]

/**
 * The connections' write queues at one moment (see `SseKifyService.unsafeQueueSnapshot`).
 *
 * @since 0.2.0
 * @category models
 */
export interface QueueSnapshot {
  /** Frames waiting in all queues. */
  readonly frames: number
  /** Bytes waiting in all queues. */
  readonly bytes: number
  /** Frames waiting in the fullest queue. */
  readonly depthMax: number
  /** Connections waiting for `'drain'`. */
  readonly blocked: number
  readonly connections: number
  /** Connections with a queue depth at most 0, 1, 5, 10, 50, 100, 500, 1000 frames (in that order). */
  readonly byDepth: ReadonlyArray<number>
}

/**
 * What a connection writes to: a Node `ServerResponse` satisfies it, as does the
 * stream sink of the `ssekify/platform` body.
 *
 * @since 0.2.0
 * @category models
 */
export interface ConnectionSink {
  write(chunk: Uint8Array): boolean
  end(): unknown
  on(event: "close" | "error", listener: (...args: Array<any>) => void): unknown
  /** Listened to only while a connection waits for it. */
  once(event: "drain", listener: (...args: Array<any>) => void): unknown
  readonly writableEnded?: boolean
  readonly writableFinished?: boolean
  readonly destroyed?: boolean
  readonly writableHighWaterMark?: number
  /** Set by compression middleware; called after a heartbeat. */
  flush?: () => void
  /** Node responses: a connection closed for backpressure is destroyed, not ended. */
  destroy?: () => unknown
  /** Node responses: several large frames are written corked, not copied into one chunk. */
  cork?: () => void
  uncork?: () => void
}

/**
 * An admitted connection of an endpoint (see {@link Endpoint.admit}), to attach on the
 * endpoint's sink once its response is sent.
 *
 * @since 0.2.0
 * @category models
 */
export interface Admission {
  readonly connId: string
  /** The `lastEventId` option (the endpoint reads the request's header otherwise). */
  readonly lastEventId: string | undefined
  /** The checked extra response headers (no `undefined` values). */
  readonly headers: Readonly<Record<string, string | ReadonlyArray<string>>> | undefined
  /**
   * Makes the connection on `sink` (`retry:`, rooms, replay after `lastEventId`,
   * `'connect'`). Undefined, and nothing is made, when the instance stopped accepting or
   * `maxConnections` was reached meanwhile: the endpoint ends its sink. Once.
   */
  readonly attach: (sink: ConnectionSink, lastEventId: string | undefined) => ConnectionHandle | undefined
  /** The endpoint will not attach (a HEAD request, a response replaced): gives the admission back. */
  readonly cancel: () => void
}

/**
 * What an SSE endpoint built on the service uses (`ssekify/platform` is one): the same
 * registration path as `registerConnection` — checks, `maxConnections`,
 * `maxConnectionsPerUser` and the cluster-wide cap, refusals reported as `'error'`
 * events — split in two for endpoints that answer first and attach later, and the
 * instance's shutdown for endpoints that tie it to their server.
 *
 * @since 0.2.0
 * @category models
 */
export interface Endpoint {
  /**
   * Admits a connection of `userId` (with `connectionLimitScope: 'cluster'`, after one
   * Redis round trip); fails with the refusal, already reported.
   */
  readonly admit: (
    userId: string,
    options?: RegisterOptions,
    /** The endpoint's own checks of its options, run after the service's and before any limit is applied. */
    check?: () => InvalidInput | undefined
  ) => Effect.Effect<Admission, InvalidInput | ShuttingDown | LimitExceeded>
  /** False after `stopAccepting()` / `shutdown()`. */
  readonly accepting: () => boolean
  /** Whether the instance's shutdown has started. */
  readonly shuttingDown: () => boolean
  /** The shutdown the layer runs at release (its `shutdown` options); nothing once shut down. */
  readonly layerShutdown: Effect.Effect<void>
  /** Starts {@link layerShutdown} in the instance's background, once. */
  readonly shutdownInBackground: () => void
  /** The sinks of the open connections. */
  readonly sinks: () => Iterable<ConnectionSink>
}
