/**
 * The `postAndListen` client: one `EventSource` shared by many requests, frames routed
 * by their top-level `requestId`, a liveness watchdog, and deduplication across
 * replays and reconnects. Runs in browsers and in Node (no Node import, no Effect).
 *
 * This module is the public class; the work is done by the connection
 * (`connection.ts`), the request registry (`registry.ts`) and `postAndListen`
 * (`request.ts`), which share the client's options (`options.ts`) and events (`events.ts`).
 *
 * @since 0.2.0
 */
import { Connection, type ConnectionState } from "./connection.js"
import { Emitter, type SSEClientEventMap } from "./events.js"
import type { MessageHandler } from "./frames.js"
import { type ClientConfig, resolveOptions, type SSEClientOptions } from "./options.js"
import type { ResponseLike } from "./platform.js"
import { RequestRegistry } from "./registry.js"
import { type PostAndListenOptions, type PostAndListenResult, postAndListen, type RequestContext } from "./request.js"

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

type Listener<K extends keyof SSEClientEventMap> = (event: SSEClientEventMap[K]) => void

/**
 * A Server-Sent Events client for the `postAndListen` pattern of ssekify.
 *
 * ```ts
 * import { SSEClient } from "ssekify/client"
 *
 * const sse = new SSEClient({ url: "/sse?userId=alice", eventName: "notify", expectedPingInterval: 15_000, keepAliveEvent: "ping" })
 * const { requestId, response } = await sse.postAndListen("/api/chat", { message: "Hello" }, (msg) => {
 *   if (msg.phase === "progress") render(msg.payload)
 *   else if (msg.phase === "done") finish()
 * })
 * ```
 *
 * The server sends each request's frames under `eventName` with the same `requestId`
 * at the top level of the data; `phase: 'done'` or `'error'` ends the subscription.
 *
 * @since 0.2.0
 * @category constructors
 */
export class SSEClient<R extends ResponseLike = ResponseLike> {
  readonly #events: Emitter
  readonly #registry: RequestRegistry
  readonly #connection: Connection
  readonly #request: RequestContext<R>

  /**
   * @throws SSEClientError `NO_EVENTSOURCE` when there is no `EventSource`.
   * @throws TypeError when an option is invalid.
   */
  constructor(options: SSEClientOptions<R>) {
    const config: ClientConfig<R> = resolveOptions(options)
    this.#events = new Emitter(config.onError)
    this.#registry = new RequestRegistry(config, this.#events)
    const registry = this.#registry
    this.#connection = new Connection(config, this.#events, (event, id) => registry.receive(event, id))
    this.#request = { config, connection: this.#connection, registry }
    if (config.autoConnect) this.#connection.start()
  }

  /** The connection state. */
  get state(): ConnectionState {
    return this.#connection.state
  }

  /**
   * Opens the EventSource if it is not open yet and resolves once it is open.
   *
   * @throws SSEClientError `CLOSED`, `CONNECT_TIMEOUT` (as a rejection), and what the
   *   `EventSource` constructor throws (e.g. a `SyntaxError` for an invalid URL), also as a rejection.
   */
  connect(): Promise<void> {
    return this.#connection.connect()
  }

  /**
   * Starts a request and listens to its frames: generates a `requestId`, waits for the
   * EventSource to be open, subscribes, then POSTs `{ ...body, requestId }` as JSON
   * (with `Authorization: Bearer <token>` when a token is set). Frames of `eventName`
   * whose data has this `requestId` go to `onMessage` in arrival order, once each (a
   * frame whose id was already seen, or whose `seq` is not above the last delivered
   * one, is dropped with a `'dropped'` event); the
   * subscription ends on `phase: 'done'` or `'error'` (after that message is
   * delivered), on `unsubscribe()`, on `idleTimeoutMs`, on `close()`, and when the POST
   * fails or answers with a non-2xx status (the promise still resolves with that
   * response; check `response.ok`).
   *
   * `P` types the messages' `payload`.
   *
   * @throws SSEClientError `CLOSED`, `NO_FETCH`, `CONNECT_TIMEOUT`, `DUPLICATE_REQUEST_ID`,
   *   `POST_FAILED`, `POST_TIMEOUT`, `ABORTED` (as a rejection; the subscription is then ended).
   * @throws TypeError (as a rejection) when `onMessage` is not a function, the requestId
   *   is not a non-empty string, or an option is invalid.
   */
  async postAndListen<P = unknown>(
    url: string,
    body: object | null | undefined,
    onMessage: MessageHandler<P>,
    options?: PostAndListenOptions
  ): Promise<PostAndListenResult<R>> {
    return postAndListen(this.#request, url, body, onMessage as MessageHandler<unknown>, options)
  }

  /**
   * Listens to a client event; returns a function that removes the listener.
   */
  on<K extends keyof SSEClientEventMap>(type: K, listener: Listener<K>): () => void {
    return this.#events.on(type, listener)
  }

  /** Removes a listener added with `on`. */
  off<K extends keyof SSEClientEventMap>(type: K, listener: Listener<K>): void {
    this.#events.off(type, listener)
  }

  /** Requests with an active subscription. */
  activeRequests(): Array<string> {
    return this.#registry.requestIds()
  }

  /** The connection state and counters. */
  info(): ConnectionInfo {
    const connection = this.#connection
    return {
      state: connection.state,
      url: connection.url,
      subscriptions: this.#registry.size,
      connections: connection.connections,
      reconnects: connection.reconnects,
      lastEventId: connection.lastEventId,
      silentMs: connection.silentMs,
      delivered: this.#registry.delivered,
      dropped: this.#registry.dropped
    }
  }

  /**
   * Closes the EventSource, stops the timers, ends every subscription with `'closed'`
   * and rejects pending `connect()`s. The client cannot be reopened.
   */
  close(): void {
    if (this.#connection.closed) return
    this.#connection.close()
    this.#registry.endAll("closed")
    this.#events.clear()
  }
}
