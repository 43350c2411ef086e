/**
 * The options of `new SSEClient(options)`, and their checked, defaulted form.
 *
 * @since 0.2.0
 */
import type { BroadcastHandler } from "./frames.js"
import type { SSEClientEventMap } from "./events.js"
import {
  type EventSourceConstructor,
  type EventSourceInitLike,
  type FetchLike,
  globalValue,
  randomId,
  type ResponseLike
} from "./platform.js"
import { SSEClientError } from "./SSEClientError.js"
import type { TokenSource } from "./token.js"

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


/** A non-negative finite number option, or the default. */
export const msOption = (name: string, value: number | undefined, fallback: number): number => {
  if (value === undefined) return fallback
  if (typeof value !== "number" || !Number.isFinite(value) || value < 0) {
    throw new TypeError(`ssekify/client: option ${name} must be a non-negative number, got ${String(value)}`)
  }
  return value
}

/** The options with their defaults, checked once by the constructor. */
export interface ClientConfig<R extends ResponseLike = ResponseLike> {
  readonly url: string
  readonly eventName: string
  readonly keepAliveEvent: string
  /** Silence after which the watchdog reopens; 0: no watchdog. */
  readonly watchdogMs: number
  readonly token: TokenSource
  readonly headers: Readonly<Record<string, string>>
  readonly credentials: "omit" | "same-origin" | "include"
  readonly onBroadcast: BroadcastHandler | undefined
  readonly onReconnect: ((event: SSEClientEventMap["reconnect"]) => void) | undefined
  readonly onError: ((event: SSEClientEventMap["error"]) => void) | undefined
  readonly EventSource: EventSourceConstructor
  readonly eventSourceInit: EventSourceInitLike | undefined
  readonly fetch: FetchLike<R> | undefined
  readonly lastEventIdParam: string | false
  readonly connectTimeoutMs: number
  readonly postTimeoutMs: number
  readonly idleTimeoutMs: number
  readonly reopenDelayMs: number
  readonly dedupeWindow: number
  readonly seqField: string
  readonly generateRequestId: () => string
  readonly autoConnect: boolean
}

/**
 * Checks the options and fills in the defaults.
 *
 * @throws SSEClientError `NO_EVENTSOURCE` when there is no `EventSource`.
 * @throws TypeError when an option is invalid.
 */
export const resolveOptions = <R extends ResponseLike>(options: SSEClientOptions<R>): ClientConfig<R> => {
  if (options === null || typeof options !== "object" || typeof options.url !== "string" || options.url === "") {
    throw new TypeError("ssekify/client: options.url must be a non-empty string")
  }
  const EventSourceClass = options.EventSource ?? globalValue<EventSourceConstructor>("EventSource")
  if (EventSourceClass === undefined) {
    throw new SSEClientError(
      "NO_EVENTSOURCE",
      "no global EventSource: pass options.EventSource (in Node: `import { EventSource } from 'eventsource'`)"
    )
  }
  const interval = msOption("expectedPingInterval", options.expectedPingInterval, 0)
  const factor = msOption("watchdogFactor", options.watchdogFactor, 2)
  return {
    url: options.url,
    eventName: options.eventName || "message",
    keepAliveEvent: options.keepAliveEvent || "ping",
    watchdogMs: interval > 0 ? interval * Math.max(1, factor) : 0,
    token: options.token,
    headers: options.headers ?? {},
    credentials: options.credentials ?? "same-origin",
    onBroadcast: options.onBroadcast,
    onReconnect: options.onReconnect,
    onError: options.onError,
    EventSource: EventSourceClass,
    eventSourceInit: options.eventSourceInit,
    fetch: options.fetch,
    lastEventIdParam: options.lastEventIdParam === undefined ? "lastEventId" : options.lastEventIdParam,
    connectTimeoutMs: msOption("connectTimeoutMs", options.connectTimeoutMs, 10_000),
    postTimeoutMs: msOption("postTimeoutMs", options.postTimeoutMs, 30_000),
    idleTimeoutMs: msOption("idleTimeoutMs", options.idleTimeoutMs, 0),
    reopenDelayMs: msOption("reopenDelayMs", options.reopenDelayMs, 1_000),
    dedupeWindow: Math.max(1, Math.floor(msOption("dedupeWindow", options.dedupeWindow, 1_000))),
    seqField: options.seqField || "seq",
    generateRequestId: options.generateRequestId ?? randomId,
    autoConnect: options.autoConnect !== false
  }
}
