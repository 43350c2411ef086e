/**
 * Public types of `ssekify/client`. Structural on purpose: they describe just what the
 * client uses of `EventSource`, `fetch`, `Response` and `AbortSignal`, so the same
 * declarations fit the browser's DOM objects, Node's globals and the `eventsource`
 * package, without depending on the DOM or Node type libraries.
 *
 * @since 0.2.0
 */

// A method's parameters are compared bivariantly, a function type's are not: this
// lets a DOM `fetch` / listener (whose parameters are richer DOM types) be passed
// where these structural types are expected.
type Bivariant<F extends (...args: Array<never>) => unknown> = { m(...args: Parameters<F>): ReturnType<F> }["m"]

/**
 * What the client reads from an SSE message event.
 *
 * @since 0.2.0
 * @category models
 */
export interface MessageEventLike {
  /** The frame's data (always a string for SSE). */
  readonly data: unknown
  /** The last `id:` the EventSource saw ('' when none). */
  readonly lastEventId: string
}

/**
 * A listener the client registers on an `EventSource`.
 *
 * @since 0.2.0
 * @category models
 */
export type EventSourceListener = Bivariant<(event: MessageEventLike) => void>

/**
 * What the client uses of an `EventSource` (the browser's, Node 22+'s global one, or
 * the `eventsource` package's).
 *
 * @since 0.2.0
 * @category models
 */
export interface EventSourceLike {
  /** 0 connecting, 1 open, 2 closed. */
  readonly readyState: number
  addEventListener(type: string, listener: EventSourceListener): void
  removeEventListener(type: string, listener: EventSourceListener): void
  close(): void
}

/**
 * The second argument of the `EventSource` constructor (`withCredentials`, or the
 * `eventsource` package's extra options such as its own `fetch`).
 *
 * @since 0.2.0
 * @category models
 */
export interface EventSourceInitLike {
  readonly withCredentials?: boolean
  readonly [option: string]: unknown
}

/**
 * An `EventSource` class.
 *
 * @since 0.2.0
 * @category models
 */
export type EventSourceConstructor = new (url: string, init?: EventSourceInitLike) => EventSourceLike

/**
 * What the client uses of an `AbortSignal`.
 *
 * @since 0.2.0
 * @category models
 */
export interface AbortSignalLike {
  readonly aborted: boolean
  addEventListener(type: "abort", listener: () => void): void
  removeEventListener(type: "abort", listener: () => void): void
}

/**
 * What the client uses of a fetch `Response`. `json()` / `text()` are there for the
 * caller (the client never reads the body).
 *
 * @since 0.2.0
 * @category models
 */
export interface ResponseLike {
  readonly status: number
  readonly ok: boolean
  readonly statusText: string
  readonly headers: { get(name: string): string | null }
  json(): Promise<unknown>
  text(): Promise<string>
}

/**
 * The request the client makes with `fetch` for `postAndListen`.
 *
 * @since 0.2.0
 * @category models
 */
export interface PostRequestInit {
  readonly method: "POST"
  readonly headers: Record<string, string>
  readonly body: string
  readonly credentials: "omit" | "same-origin" | "include"
  /** The signal of the platform's `AbortController` (absent when there is none). */
  readonly signal?: AbortSignal
}

/**
 * A `fetch` function (the global one, or one passed in the options).
 *
 * @since 0.2.0
 * @category models
 */
export type FetchLike<R extends ResponseLike = ResponseLike> = Bivariant<(url: string, init: PostRequestInit) => Promise<R>>

/**
 * A bearer token, or a function returning the current one (called for each POST).
 * `null` / `undefined` / `''`: no `Authorization` header.
 *
 * @since 0.2.0
 * @category models
 */
export type TokenSource =
  | string
  | null
  | undefined
  | (() => string | null | undefined | Promise<string | null | undefined>)

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

/**
 * Why a subscription ended.
 *
 * - `'done'` / `'error'`: the server sent that `phase`;
 * - `'unsubscribed'`: `unsubscribe()` was called;
 * - `'timeout'`: nothing arrived for the request within `idleTimeoutMs`;
 * - `'http'`: the POST answered with a non-2xx status (the server did not take the task);
 * - `'failed'`: the POST itself failed (network error, abort, timeout);
 * - `'closed'`: the client was closed.
 *
 * @since 0.2.0
 * @category models
 */
export type EndReason = "done" | "error" | "unsubscribed" | "timeout" | "http" | "failed" | "closed"

/**
 * A subscription's end.
 *
 * @since 0.2.0
 * @category models
 */
export interface SubscriptionEnd {
  readonly requestId: string
  readonly reason: EndReason
  /** Messages delivered to the callback. */
  readonly messages: number
}

/**
 * What `postAndListen` resolves to.
 *
 * @since 0.2.0
 * @category models
 */
export interface PostAndListenResult<R extends ResponseLike = ResponseLike> {
  /** The id the client generated (or was given) and sent in the body. */
  readonly requestId: string
  /** The POST's response (its body is left unread). */
  readonly response: R
  /** Stops routing this request's frames to the callback (idempotent). */
  readonly unsubscribe: () => void
  /** Resolves when the subscription ends, whatever the reason (never rejects). */
  readonly ended: Promise<SubscriptionEnd>
}

/**
 * Options of one `postAndListen` call.
 *
 * @since 0.2.0
 * @category models
 */
export interface PostAndListenOptions {
  /** Use this requestId instead of a generated one. */
  readonly requestId?: string | undefined
  /** Extra request headers (after the client's `headers`). */
  readonly headers?: Readonly<Record<string, string>> | undefined
  /** Overrides the client's `token` for this call. */
  readonly token?: TokenSource
  /** fetch `credentials`. Default: the client's (`'same-origin'`). */
  readonly credentials?: "omit" | "same-origin" | "include" | undefined
  /** Aborts the POST (and ends the subscription with `'failed'`) when it fires before the response. */
  readonly signal?: AbortSignalLike | undefined
  /** Fails the POST after this many ms without a response. Default: the client's `postTimeoutMs` (30 000); 0: none. */
  readonly timeoutMs?: number | undefined
  /** Ends the subscription with `'timeout'` when nothing arrives for it this long. Default: the client's `idleTimeoutMs` (0: never). */
  readonly idleTimeoutMs?: number | undefined
  /** Called once when the subscription ends. */
  readonly onEnd?: ((end: SubscriptionEnd) => void) | undefined
}

/**
 * Why the client reopened its EventSource.
 *
 * - `'watchdog'`: neither a frame nor a heartbeat arrived within `expectedPingInterval × watchdogFactor`;
 * - `'closed'`: the EventSource gave up (a non-200 answer, a wrong content type) and the client opened a new one.
 *
 * @since 0.2.0
 * @category models
 */
export type ReconnectReason = "watchdog" | "closed"

/**
 * Why a frame was not delivered.
 *
 * - `'frame-id'`: a frame with this `id:` was already delivered (replay overlap);
 * - `'seq'`: its request's `seq` is not above the last one delivered;
 * - `'ended'`: its request is known to this client but its subscription has ended.
 *
 * @since 0.2.0
 * @category models
 */
export type DropReason = "frame-id" | "seq" | "ended"

/**
 * The client's events, by name, and what each carries.
 *
 * @since 0.2.0
 * @category models
 */
export interface SSEClientEventMap {
  /** The EventSource opened (`connection` counts the EventSources this client opened, from 1). */
  readonly open: { readonly url: string; readonly connection: number }
  /** The client closed its EventSource and opened a new one. */
  readonly reconnect: {
    readonly reason: ReconnectReason
    /** How long nothing had arrived. */
    readonly silentMs: number
    /** The id the new EventSource asks the server to replay after (`lastEventIdParam`). */
    readonly lastEventId: string | undefined
  }
  /** A heartbeat (`keepAliveEvent`) arrived. */
  readonly heartbeat: { readonly at: number }
  /** A frame routed to no request (also given to `onBroadcast`). */
  readonly broadcast: { readonly message: unknown; readonly meta: FrameMeta }
  /** A duplicate or late frame was dropped. */
  readonly dropped: {
    readonly reason: DropReason
    readonly requestId: string | undefined
    readonly seq: number | undefined
    readonly meta: FrameMeta
  }
  /** A subscription ended. */
  readonly end: SubscriptionEnd
  /**
   * Something went wrong without a caller to tell: the EventSource reported an error
   * (`'connection'`; it usually reconnects by itself), a callback threw (`'handler'`).
   */
  readonly error: { readonly kind: "connection" | "handler"; readonly error: unknown }
}

/**
 * Options of `new SSEClient(options)`.
 *
 * @since 0.2.0
 * @category models
 */
export interface SSEClientOptions<R extends ResponseLike = ResponseLike> {
  /** The SSE endpoint (relative URLs work in browsers), e.g. `/sse?userId=alice`. */
  readonly url: string
  /** The event the server sends request frames under (`sendToUser(..., { event })`). Default `'message'`. */
  readonly eventName?: string | undefined
  /**
   * The server's heartbeat interval (`keepAliveMs`). When set (> 0), a watchdog reopens
   * the EventSource when neither a frame nor a heartbeat arrives for
   * `expectedPingInterval × watchdogFactor`. Browsers do not see comment heartbeats:
   * set the server's `keepAliveEvent` to this client's `keepAliveEvent`. Default 0 (off).
   */
  readonly expectedPingInterval?: number | undefined
  /** Silence, in heartbeat intervals, before the watchdog reopens. Default 2. */
  readonly watchdogFactor?: number | undefined
  /** The server's `keepAliveEvent`: the heartbeat event name. Default `'ping'`. */
  readonly keepAliveEvent?: string | undefined
  /** Bearer token for the POSTs of `postAndListen` (`Authorization: Bearer <token>`). */
  readonly token?: TokenSource
  /** Headers added to every POST. */
  readonly headers?: Readonly<Record<string, string>> | undefined
  /** fetch `credentials` of the POSTs. Default `'same-origin'`. */
  readonly credentials?: "omit" | "same-origin" | "include" | undefined
  /** Called for frames that belong to no request of this client. */
  readonly onBroadcast?: BroadcastHandler | undefined
  /** Called when the client reopens its EventSource. */
  readonly onReconnect?: ((event: SSEClientEventMap["reconnect"]) => void) | undefined
  /** Called for errors without a caller (see the `'error'` event). */
  readonly onError?: ((event: SSEClientEventMap["error"]) => void) | undefined
  /** The `EventSource` class. Default: the global one (in Node < 22 pass the `eventsource` package's). */
  readonly EventSource?: EventSourceConstructor | undefined
  /** Second argument of the `EventSource` constructor (e.g. `{ withCredentials: true }`). */
  readonly eventSourceInit?: EventSourceInitLike | undefined
  /** The `fetch` function. Default: the global one. */
  readonly fetch?: FetchLike<R> | undefined
  /**
   * Query parameter carrying the last seen frame id when the client itself opens a new
   * EventSource (which, unlike the EventSource's own reconnects, cannot send a
   * `Last-Event-ID` header); ssekify reads `lastEventId`. `false`: none. Default `'lastEventId'`.
   */
  readonly lastEventIdParam?: string | false | undefined
  /** Open the EventSource in the constructor (`true`, default) or at the first `connect()` / `postAndListen`. */
  readonly autoConnect?: boolean | undefined
  /** `postAndListen` waits this long for the EventSource to be open, then rejects. Default 10 000. */
  readonly connectTimeoutMs?: number | undefined
  /** Default POST timeout. Default 30 000; 0: none. */
  readonly postTimeoutMs?: number | undefined
  /** Default per-request idle timeout. Default 0 (never). */
  readonly idleTimeoutMs?: number | undefined
  /** First delay before reopening an EventSource that gave up (doubles up to 30 s). Default 1 000. */
  readonly reopenDelayMs?: number | undefined
  /** Frame ids and ended requestIds remembered for deduplication. Default 1 000. */
  readonly dedupeWindow?: number | undefined
  /** The per-request sequence field. Default `'seq'`. */
  readonly seqField?: string | undefined
  /** requestId generator. Default `crypto.randomUUID()`, else a random v4 UUID. */
  readonly generateRequestId?: (() => string) | undefined
}

/**
 * The client's connection state.
 *
 * @since 0.2.0
 * @category models
 */
export type ConnectionState = "idle" | "connecting" | "open" | "closed"

/**
 * `SSEClient#info()`: the connection state and counters, for diagnostics.
 *
 * @since 0.2.0
 * @category models
 */
export interface ConnectionInfo {
  readonly state: ConnectionState
  /** The URL of the current EventSource. */
  readonly url: string | undefined
  /** Active subscriptions. */
  readonly subscriptions: number
  /** EventSources opened so far. */
  readonly connections: number
  /** Times the client reopened its EventSource (watchdog or gave up). */
  readonly reconnects: number
  /** The last frame id seen. */
  readonly lastEventId: string | undefined
  /** ms since anything (frame, heartbeat, open) arrived. */
  readonly silentMs: number
  /** Frames delivered to callbacks and to `onBroadcast`. */
  readonly delivered: number
  /** Duplicate or late frames dropped. */
  readonly dropped: number
}
