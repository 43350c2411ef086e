/**
 * The `postAndListen` client: one `EventSource` shared by many requests, frames routed
 * by their top-level `requestId`, a liveness watchdog, and deduplication across
 * replays and reconnects. Runs in browsers and in Node (no Node import, no Effect).
 *
 * @since 0.2.0
 */
import { BoundedSet, globalValue, isPlainRecord, msOption, randomId, unref, withQueryParam } from "./internal.js"
import type {
  AbortSignalLike,
  BroadcastHandler,
  ConnectionInfo,
  ConnectionState,
  DropReason,
  EndReason,
  EventSourceConstructor,
  EventSourceInitLike,
  EventSourceLike,
  EventSourceListener,
  FetchLike,
  FrameMeta,
  ListenMessage,
  MessageEventLike,
  MessageHandler,
  PostAndListenOptions,
  PostAndListenResult,
  PostRequestInit,
  ReconnectReason,
  ResponseLike,
  SSEClientEventMap,
  SSEClientOptions,
  SubscriptionEnd,
  TokenSource
} from "./types.js"

/**
 * Codes of {@link SSEClientError}.
 *
 * - `'NO_EVENTSOURCE'` / `'NO_FETCH'`: no global `EventSource` / `fetch` and none passed;
 * - `'CLOSED'`: the client was closed;
 * - `'CONNECT_TIMEOUT'`: the EventSource did not open within `connectTimeoutMs`;
 * - `'DUPLICATE_REQUEST_ID'`: a subscription with this requestId is active;
 * - `'POST_FAILED'`: `fetch` rejected (network error);
 * - `'POST_TIMEOUT'`: no response within `timeoutMs`;
 * - `'ABORTED'`: the caller's `signal` fired.
 *
 * @since 0.2.0
 * @category errors
 */
export type SSEClientErrorCode =
  | "NO_EVENTSOURCE"
  | "NO_FETCH"
  | "CLOSED"
  | "CONNECT_TIMEOUT"
  | "DUPLICATE_REQUEST_ID"
  | "POST_FAILED"
  | "POST_TIMEOUT"
  | "ABORTED"

/**
 * The error `SSEClient` throws and rejects with.
 *
 * @since 0.2.0
 * @category errors
 */
export class SSEClientError extends Error {
  override readonly name = "SSEClientError"
  readonly code: SSEClientErrorCode
  /** The requestId concerned, when there is one. */
  readonly requestId: string | undefined

  constructor(code: SSEClientErrorCode, message: string, options?: { readonly cause?: unknown; readonly requestId?: string | undefined }) {
    super(message, options !== undefined && "cause" in options ? { cause: options.cause } : undefined)
    this.code = code
    this.requestId = options?.requestId
  }
}

type Timer = ReturnType<typeof setTimeout>

interface Subscription {
  readonly requestId: string
  readonly onMessage: MessageHandler<unknown>
  readonly onEnd: ((end: SubscriptionEnd) => void) | undefined
  readonly resolveEnded: (end: SubscriptionEnd) => void
  readonly ended: Promise<SubscriptionEnd>
  readonly idleMs: number
  idleTimer: Timer | undefined
  lastSeq: number
  messages: number
  active: boolean
}

interface OpenWaiter {
  readonly resolve: () => void
  readonly reject: (error: SSEClientError) => void
  readonly timer: Timer | undefined
}

interface Current {
  readonly es: EventSourceLike
  readonly url: string
  readonly detach: () => void
}

const OPEN = 1
const CLOSED = 2
const MAX_REOPEN_DELAY = 30_000

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
  readonly #url: string
  readonly #eventName: string
  readonly #keepAliveEvent: string
  readonly #watchdogMs: number
  readonly #token: TokenSource
  readonly #headers: Readonly<Record<string, string>>
  readonly #credentials: "omit" | "same-origin" | "include"
  readonly #onBroadcast: BroadcastHandler | undefined
  readonly #onReconnect: ((event: SSEClientEventMap["reconnect"]) => void) | undefined
  readonly #onError: ((event: SSEClientEventMap["error"]) => void) | undefined
  readonly #EventSource: EventSourceConstructor
  readonly #eventSourceInit: EventSourceInitLike | undefined
  readonly #fetch: FetchLike<R> | undefined
  readonly #lastEventIdParam: string | false
  readonly #connectTimeoutMs: number
  readonly #postTimeoutMs: number
  readonly #idleTimeoutMs: number
  readonly #reopenDelayMs: number
  readonly #seqField: string
  readonly #generateRequestId: () => string

  readonly #subs = new Map<string, Subscription>()
  readonly #endedIds: BoundedSet
  readonly #seenFrameIds: BoundedSet
  readonly #waiters = new Set<OpenWaiter>()
  readonly #listeners = new Map<keyof SSEClientEventMap, Set<(event: never) => void>>()

  #current: Current | undefined
  #state: ConnectionState = "idle"
  #closed = false
  #connections = 0
  #reconnects = 0
  #lastEventId: string | undefined
  /** The `lastEventId` of the previous event on the current EventSource (see `#frameId`). */
  #previousEventId = ""
  #lastActivity = Date.now()
  #watchdog: ReturnType<typeof setInterval> | undefined
  #reopenTimer: Timer | undefined
  #reopenAttempts = 0
  #delivered = 0
  #dropped = 0

  /**
   * @throws SSEClientError `NO_EVENTSOURCE` when there is no `EventSource`.
   * @throws TypeError when an option is invalid.
   */
  constructor(options: SSEClientOptions<R>) {
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
    this.#url = options.url
    this.#eventName = options.eventName || "message"
    this.#keepAliveEvent = options.keepAliveEvent || "ping"
    const interval = msOption("expectedPingInterval", options.expectedPingInterval, 0)
    const factor = msOption("watchdogFactor", options.watchdogFactor, 2)
    this.#watchdogMs = interval > 0 ? interval * Math.max(1, factor) : 0
    this.#token = options.token
    this.#headers = options.headers ?? {}
    this.#credentials = options.credentials ?? "same-origin"
    this.#onBroadcast = options.onBroadcast
    this.#onReconnect = options.onReconnect
    this.#onError = options.onError
    this.#EventSource = EventSourceClass
    this.#eventSourceInit = options.eventSourceInit
    this.#fetch = options.fetch
    this.#lastEventIdParam = options.lastEventIdParam === undefined ? "lastEventId" : options.lastEventIdParam
    this.#connectTimeoutMs = msOption("connectTimeoutMs", options.connectTimeoutMs, 10_000)
    this.#postTimeoutMs = msOption("postTimeoutMs", options.postTimeoutMs, 30_000)
    this.#idleTimeoutMs = msOption("idleTimeoutMs", options.idleTimeoutMs, 0)
    this.#reopenDelayMs = msOption("reopenDelayMs", options.reopenDelayMs, 1_000)
    const window = Math.max(1, Math.floor(msOption("dedupeWindow", options.dedupeWindow, 1_000)))
    this.#endedIds = new BoundedSet(window)
    this.#seenFrameIds = new BoundedSet(window)
    this.#seqField = options.seqField || "seq"
    this.#generateRequestId = options.generateRequestId ?? randomId
    if (options.autoConnect !== false) this.#start()
  }

  /** The connection state. */
  get state(): ConnectionState {
    return this.#state
  }

  /**
   * Opens the EventSource if it is not open yet and resolves once it is open.
   *
   * @throws SSEClientError `CLOSED`, `CONNECT_TIMEOUT` (as a rejection).
   */
  connect(): Promise<void> {
    if (this.#closed) return Promise.reject(this.#closedError())
    this.#start()
    return this.#whenOpen()
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
   */
  async postAndListen<P = unknown>(
    url: string,
    body: object | null | undefined,
    onMessage: MessageHandler<P>,
    options?: PostAndListenOptions
  ): Promise<PostAndListenResult<R>> {
    const o: PostAndListenOptions = options ?? {}
    if (this.#closed) throw this.#closedError()
    const fetchFn = this.#fetch ?? globalValue<FetchLike<R>>("fetch")
    if (fetchFn === undefined) throw new SSEClientError("NO_FETCH", "no global fetch: pass options.fetch")
    if (typeof onMessage !== "function") throw new TypeError("ssekify/client: onMessage must be a function")
    const requestId = o.requestId ?? this.#generateRequestId()
    if (this.#subs.has(requestId)) {
      throw new SSEClientError("DUPLICATE_REQUEST_ID", `a subscription for requestId ${requestId} is active`, { requestId })
    }
    if (o.signal?.aborted === true) throw new SSEClientError("ABORTED", "aborted before the request", { requestId })
    // Frames sent before the EventSource is open would be lost: wait for it first.
    await this.connect()
    if (this.#closed) throw this.#closedError()
    if (this.#subs.has(requestId)) {
      throw new SSEClientError("DUPLICATE_REQUEST_ID", `a subscription for requestId ${requestId} is active`, { requestId })
    }
    // Subscribe before the POST: the server may send frames before it answers.
    const sub = this.#subscribe(requestId, onMessage as MessageHandler<unknown>, o)
    let response: R
    try {
      const token = await resolveToken(o.token !== undefined ? o.token : this.#token)
      const headers: Record<string, string> = {
        "content-type": "application/json",
        accept: "application/json",
        ...this.#headers,
        ...o.headers
      }
      if (token) headers.authorization = `Bearer ${token}`
      const payload = JSON.stringify({ ...(body ?? {}), requestId })
      response = await this.#post(fetchFn, url, {
        method: "POST",
        headers,
        body: payload,
        credentials: o.credentials ?? this.#credentials
      }, requestId, o)
    } catch (error) {
      this.#end(sub, "failed")
      throw error
    }
    if (!response.ok) this.#end(sub, "http")
    return {
      requestId,
      response,
      unsubscribe: () => this.#end(sub, "unsubscribed"),
      ended: sub.ended
    }
  }

  /**
   * Listens to a client event; returns a function that removes the listener.
   */
  on<K extends keyof SSEClientEventMap>(type: K, listener: Listener<K>): () => void {
    let set = this.#listeners.get(type)
    if (set === undefined) {
      set = new Set()
      this.#listeners.set(type, set)
    }
    set.add(listener as (event: never) => void)
    return () => this.off(type, listener)
  }

  /** Removes a listener added with `on`. */
  off<K extends keyof SSEClientEventMap>(type: K, listener: Listener<K>): void {
    this.#listeners.get(type)?.delete(listener as (event: never) => void)
  }

  /** Requests with an active subscription. */
  activeRequests(): Array<string> {
    return Array.from(this.#subs.keys())
  }

  /** The connection state and counters. */
  info(): ConnectionInfo {
    return {
      state: this.#state,
      url: this.#current?.url,
      subscriptions: this.#subs.size,
      connections: this.#connections,
      reconnects: this.#reconnects,
      lastEventId: this.#lastEventId,
      silentMs: Date.now() - this.#lastActivity,
      delivered: this.#delivered,
      dropped: this.#dropped
    }
  }

  /**
   * Closes the EventSource, stops the timers, ends every subscription with `'closed'`
   * and rejects pending `connect()`s. The client cannot be reopened.
   */
  close(): void {
    if (this.#closed) return
    this.#closed = true
    this.#state = "closed"
    this.#teardown()
    if (this.#watchdog !== undefined) clearInterval(this.#watchdog)
    this.#watchdog = undefined
    if (this.#reopenTimer !== undefined) clearTimeout(this.#reopenTimer)
    this.#reopenTimer = undefined
    for (const waiter of Array.from(this.#waiters)) {
      if (waiter.timer !== undefined) clearTimeout(waiter.timer)
      waiter.reject(this.#closedError())
    }
    this.#waiters.clear()
    for (const sub of Array.from(this.#subs.values())) this.#end(sub, "closed")
    this.#listeners.clear()
  }

  // ---------------------------------------------------------------------------
  // connection
  // ---------------------------------------------------------------------------

  #start(): void {
    if (this.#closed) return
    if (this.#current === undefined && this.#reopenTimer === undefined) this.#open()
    if (this.#watchdogMs > 0 && this.#watchdog === undefined) {
      const tick = Math.min(1_000, Math.max(10, Math.floor(this.#watchdogMs / 4)))
      this.#watchdog = setInterval(() => this.#checkLiveness(), tick)
      unref(this.#watchdog)
    }
  }

  #open(): void {
    let url = this.#url
    const param = this.#lastEventIdParam
    if (param !== false && param !== "" && this.#lastEventId !== undefined) {
      url = withQueryParam(url, param, this.#lastEventId)
    }
    const es = this.#eventSourceInit === undefined
      ? new this.#EventSource(url)
      : new this.#EventSource(url, this.#eventSourceInit)
    const isCurrent = () => this.#current?.es === es
    const onOpen: EventSourceListener = () => {
      if (!isCurrent()) return
      this.#state = "open"
      this.#reopenAttempts = 0
      this.#touch()
      for (const waiter of Array.from(this.#waiters)) {
        if (waiter.timer !== undefined) clearTimeout(waiter.timer)
        waiter.resolve()
      }
      this.#waiters.clear()
      this.#emit("open", { url, connection: this.#connections })
    }
    const onError: EventSourceListener = (event) => {
      if (!isCurrent()) return
      this.#emit("error", { kind: "connection", error: event })
      if (es.readyState === CLOSED) {
        // The EventSource gave up (non-200, wrong content type): open a new one later.
        this.#teardown()
        this.#state = "connecting"
        this.#scheduleReopen()
      } else {
        this.#state = "connecting"
      }
    }
    const onFrame: EventSourceListener = (event) => {
      if (isCurrent()) this.#onFrame(event)
    }
    const onHeartbeat: EventSourceListener = (event) => {
      if (!isCurrent()) return
      this.#touch()
      this.#previousEventId = typeof event.lastEventId === "string" ? event.lastEventId : ""
      this.#emit("heartbeat", { at: this.#lastActivity })
    }
    const heartbeat = this.#keepAliveEvent !== this.#eventName
    es.addEventListener("open", onOpen)
    es.addEventListener("error", onError)
    es.addEventListener(this.#eventName, onFrame)
    if (heartbeat) es.addEventListener(this.#keepAliveEvent, onHeartbeat)
    this.#current = {
      es,
      url,
      detach: () => {
        es.removeEventListener("open", onOpen)
        es.removeEventListener("error", onError)
        es.removeEventListener(this.#eventName, onFrame)
        if (heartbeat) es.removeEventListener(this.#keepAliveEvent, onHeartbeat)
        es.close()
      }
    }
    this.#connections++
    this.#previousEventId = ""
    this.#state = "connecting"
    this.#touch()
  }

  #teardown(): void {
    const current = this.#current
    this.#current = undefined
    if (current !== undefined) {
      try {
        current.detach()
      } catch {
        // an EventSource that fails to close is gone anyway
      }
    }
  }

  #scheduleReopen(): void {
    if (this.#closed || this.#reopenTimer !== undefined) return
    const delay = Math.min(MAX_REOPEN_DELAY, this.#reopenDelayMs * 2 ** Math.min(this.#reopenAttempts, 16))
    this.#reopenAttempts++
    const silentSince = this.#lastActivity
    this.#reopenTimer = setTimeout(() => {
      this.#reopenTimer = undefined
      if (this.#closed) return
      this.#reopen("closed", Date.now() - silentSince)
    }, delay)
  }

  #reopen(reason: ReconnectReason, silentMs: number): void {
    this.#teardown()
    this.#reconnects++
    try {
      this.#open()
    } catch (error) {
      // The EventSource constructor threw (it did not the first time): try again later.
      this.#emit("error", { kind: "connection", error })
      this.#scheduleReopen()
      return
    }
    const event = { reason, silentMs, lastEventId: this.#lastEventId }
    this.#emit("reconnect", event)
    if (this.#onReconnect !== undefined) this.#guard(() => this.#onReconnect!(event))
  }

  #checkLiveness(): void {
    if (this.#closed || this.#current === undefined || this.#reopenTimer !== undefined) return
    const silentMs = Date.now() - this.#lastActivity
    if (silentMs > this.#watchdogMs) this.#reopen("watchdog", silentMs)
  }

  #touch(): void {
    this.#lastActivity = Date.now()
  }

  #whenOpen(): Promise<void> {
    if (this.#state === "open" && this.#current?.es.readyState === OPEN) return Promise.resolve()
    return new Promise<void>((resolve, reject) => {
      const ms = this.#connectTimeoutMs
      const waiter: OpenWaiter = {
        resolve,
        reject,
        timer: ms > 0
          ? setTimeout(() => {
            this.#waiters.delete(waiter)
            reject(new SSEClientError("CONNECT_TIMEOUT", `the EventSource did not open within ${ms} ms (${this.#url})`))
          }, ms)
          : undefined
      }
      this.#waiters.add(waiter)
    })
  }

  #closedError(): SSEClientError {
    return new SSEClientError("CLOSED", "the client is closed")
  }

  // ---------------------------------------------------------------------------
  // frames
  // ---------------------------------------------------------------------------

  /**
   * The frame's own id. Browsers give every event the EventSource's last id, also to
   * frames without an `id:` line (the `eventsource` package gives those ''), so an id is
   * the frame's own only when it differs from the previous event's.
   */
  #frameId(event: MessageEventLike): string | undefined {
    const last = typeof event.lastEventId === "string" ? event.lastEventId : ""
    const own = last !== "" && last !== this.#previousEventId ? last : undefined
    this.#previousEventId = last
    if (last !== "") this.#lastEventId = last
    return own
  }

  #onFrame(event: MessageEventLike): void {
    this.#touch()
    const raw = typeof event.data === "string" ? event.data : String(event.data)
    const id = this.#frameId(event)
    const meta: FrameMeta = { event: this.#eventName, id, raw }
    let message: unknown = raw
    try {
      message = JSON.parse(raw)
    } catch {
      // not JSON: broadcast the text
    }
    const requestId = isPlainRecord(message) && typeof message.requestId === "string" ? message.requestId : undefined
    const seqValue = isPlainRecord(message) ? message[this.#seqField] : undefined
    const seq = typeof seqValue === "number" && Number.isFinite(seqValue) ? seqValue : undefined
    if (id !== undefined) {
      if (this.#seenFrameIds.has(id)) return this.#drop("frame-id", requestId, seq, meta)
      this.#seenFrameIds.add(id)
    }
    if (requestId !== undefined) {
      const sub = this.#subs.get(requestId)
      if (sub !== undefined) return this.#deliver(sub, message as ListenMessage, seq, meta)
      if (this.#endedIds.has(requestId)) return this.#drop("ended", requestId, seq, meta)
    }
    this.#delivered++
    this.#emit("broadcast", { message, meta })
    if (this.#onBroadcast !== undefined) this.#guard(() => this.#onBroadcast!(message, meta))
  }

  #deliver(sub: Subscription, message: ListenMessage, seq: number | undefined, meta: FrameMeta): void {
    const terminal = message.phase === "done" || message.phase === "error"
    if (seq !== undefined) {
      // A terminal frame is never a duplicate while its subscription is active (the first
      // one ends it), so it is delivered even if the server's counter restarted.
      if (seq <= sub.lastSeq && !terminal) return this.#drop("seq", sub.requestId, seq, meta)
      if (seq > sub.lastSeq) sub.lastSeq = seq
    }
    sub.messages++
    this.#delivered++
    this.#armIdle(sub)
    this.#guard(() => sub.onMessage(message, meta))
    if (terminal) this.#end(sub, message.phase as "done" | "error")
  }

  #drop(reason: DropReason, requestId: string | undefined, seq: number | undefined, meta: FrameMeta): void {
    this.#dropped++
    this.#emit("dropped", { reason, requestId, seq, meta })
  }

  // ---------------------------------------------------------------------------
  // subscriptions
  // ---------------------------------------------------------------------------

  #subscribe(requestId: string, onMessage: MessageHandler<unknown>, o: PostAndListenOptions): Subscription {
    let resolveEnded: (end: SubscriptionEnd) => void = () => {}
    const ended = new Promise<SubscriptionEnd>((resolve) => {
      resolveEnded = resolve
    })
    const sub: Subscription = {
      requestId,
      onMessage,
      onEnd: o.onEnd,
      resolveEnded,
      ended,
      idleMs: msOption("idleTimeoutMs", o.idleTimeoutMs, this.#idleTimeoutMs),
      idleTimer: undefined,
      lastSeq: Number.NEGATIVE_INFINITY,
      messages: 0,
      active: true
    }
    this.#subs.set(requestId, sub)
    this.#endedIds.delete(requestId)
    this.#armIdle(sub)
    return sub
  }

  #armIdle(sub: Subscription): void {
    if (sub.idleMs <= 0) return
    if (sub.idleTimer !== undefined) clearTimeout(sub.idleTimer)
    sub.idleTimer = setTimeout(() => this.#end(sub, "timeout"), sub.idleMs)
    unref(sub.idleTimer)
  }

  #end(sub: Subscription, reason: EndReason): void {
    if (!sub.active) return
    sub.active = false
    if (sub.idleTimer !== undefined) clearTimeout(sub.idleTimer)
    sub.idleTimer = undefined
    if (this.#subs.get(sub.requestId) === sub) this.#subs.delete(sub.requestId)
    this.#endedIds.add(sub.requestId)
    const end: SubscriptionEnd = { requestId: sub.requestId, reason, messages: sub.messages }
    if (sub.onEnd !== undefined) this.#guard(() => sub.onEnd!(end))
    sub.resolveEnded(end)
    this.#emit("end", end)
  }

  async #post(
    fetchFn: FetchLike<R>,
    url: string,
    init: Omit<PostRequestInit, "signal">,
    requestId: string,
    o: PostAndListenOptions
  ): Promise<R> {
    const Controller = globalValue<typeof AbortController>("AbortController")
    const controller = Controller === undefined ? undefined : new Controller()
    const timeoutMs = msOption("timeoutMs", o.timeoutMs, this.#postTimeoutMs)
    const signal: AbortSignalLike | undefined = o.signal
    return new Promise<R>((resolve, reject) => {
      let settled = false
      let timer: Timer | undefined
      const settle = (): boolean => {
        if (settled) return false
        settled = true
        if (timer !== undefined) clearTimeout(timer)
        signal?.removeEventListener("abort", onAbort)
        return true
      }
      const fail = (error: SSEClientError) => {
        if (!settle()) return
        reject(error)
        try {
          controller?.abort(error)
        } catch {
          // nothing to abort
        }
      }
      const onAbort = () => fail(new SSEClientError("ABORTED", `request ${requestId} aborted`, { requestId }))
      if (timeoutMs > 0) {
        timer = setTimeout(
          () => fail(new SSEClientError("POST_TIMEOUT", `no response to POST ${url} within ${timeoutMs} ms`, { requestId })),
          timeoutMs
        )
      }
      if (signal?.aborted === true) {
        onAbort()
        return
      }
      signal?.addEventListener("abort", onAbort)
      const full: PostRequestInit = controller === undefined ? init : { ...init, signal: controller.signal }
      let pending: Promise<R>
      try {
        pending = fetchFn(url, full)
      } catch (error) {
        pending = Promise.reject(error)
      }
      pending.then(
        (response) => {
          if (settle()) resolve(response)
        },
        (error: unknown) => fail(new SSEClientError("POST_FAILED", `POST ${url} failed: ${describeError(error)}`, { cause: error, requestId }))
      )
    })
  }

  // ---------------------------------------------------------------------------
  // events
  // ---------------------------------------------------------------------------

  #emit<K extends keyof SSEClientEventMap>(type: K, event: SSEClientEventMap[K]): void {
    const set = this.#listeners.get(type)
    if (type === "error" && this.#onError !== undefined) {
      try {
        this.#onError(event as SSEClientEventMap["error"])
      } catch {
        // an error handler that throws has nowhere to report to
      }
    }
    if (set === undefined || set.size === 0) return
    for (const listener of Array.from(set)) {
      if (type === "error") {
        try {
          ;(listener as Listener<K>)(event)
        } catch {
          // see above
        }
      } else {
        this.#guard(() => (listener as Listener<K>)(event))
      }
    }
  }

  /** Runs a user callback; what it throws becomes an `'error'` event. */
  #guard(f: () => void): void {
    try {
      f()
    } catch (error) {
      this.#emit("error", { kind: "handler", error })
    }
  }
}

const resolveToken = async (source: TokenSource): Promise<string | undefined> => {
  const value = typeof source === "function" ? await source() : source
  return typeof value === "string" && value.length > 0 ? value : undefined
}

const describeError = (error: unknown): string =>
  error instanceof Error ? error.message : typeof error === "string" ? error : "unknown error"
