/**
 * The connection lifecycle: the one `EventSource` of a client, opened on demand,
 * reopened (with backoff) when it gives up and by the liveness watchdog when it goes
 * silent, with the `Last-Event-ID` of the last frame as a query parameter; and the
 * callers waiting for it to be open.
 *
 * @since 0.2.0
 */
import type { Emitter, ReconnectReason } from "./events.js"
import { ownFrameId } from "./frames.js"
import type { ClientConfig } from "./options.js"
import {
  type AbortSignalLike,
  type EventSourceLike,
  type EventSourceListener,
  type MessageEventLike,
  type Timer,
  unref
} from "./platform.js"
import { closedError, SSEClientError } from "./SSEClientError.js"

/**
 * The client's connection state.
 *
 * @since 0.2.0
 * @category models
 */
export type ConnectionState = "idle" | "connecting" | "open" | "closed"

/** What the connection needs of the client's options. */
export type ConnectionConfig = Pick<
  ClientConfig,
  | "url"
  | "eventName"
  | "keepAliveEvent"
  | "watchdogMs"
  | "EventSource"
  | "eventSourceInit"
  | "lastEventIdParam"
  | "connectTimeoutMs"
  | "reopenDelayMs"
  | "onReconnect"
>

/** Receives the frames of `eventName` with the frame's own id (see `ownFrameId`). */
export type FrameSink = (event: MessageEventLike, id: string | undefined) => void

/** Lets a caller stop waiting for the connection. */
export interface OpenAbort {
  readonly signal: AbortSignalLike
  /** The error the wait rejects with when `signal` fires. */
  readonly error: () => SSEClientError
}

interface OpenWaiter {
  /** Resolves (`undefined`) or rejects the wait, once; removes the waiter, its timer and its abort listener. */
  readonly settle: (error: SSEClientError | undefined) => void
}

interface Current {
  readonly es: EventSourceLike
  readonly url: string
  readonly detach: () => void
}

const OPEN = 1
const CLOSED = 2
const MAX_REOPEN_DELAY = 30_000

const escapeRegExp = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")

/**
 * `url` with the query parameter `name` set to `value` (replacing an existing one),
 * without parsing it as a URL (it may be relative).
 */
export const withQueryParam = (url: string, name: string, value: string): string => {
  const hash = url.indexOf("#")
  const base = hash < 0 ? url : url.slice(0, hash)
  const fragment = hash < 0 ? "" : url.slice(hash)
  const q = base.indexOf("?")
  const path = q < 0 ? base : base.slice(0, q)
  const query = q < 0 ? "" : base.slice(q + 1)
  const key = new RegExp(`^${escapeRegExp(encodeURIComponent(name))}(=|$)`)
  const kept = query.split("&").filter((part) => part !== "" && !key.test(part))
  kept.push(`${encodeURIComponent(name)}=${encodeURIComponent(value)}`)
  return `${path}?${kept.join("&")}${fragment}`
}

/** The EventSource of one client, its watchdog and its reopen timer. */
export class Connection {
  readonly #config: ConnectionConfig
  readonly #events: Emitter
  readonly #onFrame: FrameSink
  readonly #waiters = new Set<OpenWaiter>()

  #current: Current | undefined
  #state: ConnectionState = "idle"
  #closed = false
  #connections = 0
  #reconnects = 0
  #lastEventId: string | undefined
  /** The `lastEventId` of the previous event on the current EventSource (see `ownFrameId`). */
  #previousEventId = ""
  #lastActivity = Date.now()
  #watchdog: ReturnType<typeof setInterval> | undefined
  #reopenTimer: Timer | undefined
  #reopenAttempts = 0

  constructor(config: ConnectionConfig, events: Emitter, onFrame: FrameSink) {
    this.#config = config
    this.#events = events
    this.#onFrame = onFrame
  }

  get state(): ConnectionState {
    return this.#state
  }

  get closed(): boolean {
    return this.#closed
  }

  /** The URL of the current EventSource. */
  get url(): string | undefined {
    return this.#current?.url
  }

  /** EventSources opened so far. */
  get connections(): number {
    return this.#connections
  }

  /** Times the client reopened its EventSource. */
  get reconnects(): number {
    return this.#reconnects
  }

  /** The last frame id seen. */
  get lastEventId(): string | undefined {
    return this.#lastEventId
  }

  /** ms since anything (frame, heartbeat, open) arrived. */
  get silentMs(): number {
    return Date.now() - this.#lastActivity
  }

  /**
   * Opens the EventSource unless it is open or a reopen is scheduled, and starts the watchdog.
   *
   * @throws what the EventSource constructor throws (e.g. a `SyntaxError` for an invalid URL).
   */
  start(): void {
    if (this.#closed) return
    if (this.#current === undefined && this.#reopenTimer === undefined) this.#open()
    if (this.#config.watchdogMs > 0 && this.#watchdog === undefined) {
      const tick = Math.min(1_000, Math.max(10, Math.floor(this.#config.watchdogMs / 4)))
      this.#watchdog = setInterval(() => this.#checkLiveness(), tick)
      unref(this.#watchdog)
    }
  }

  /**
   * Starts the connection and resolves once it is open; rejects with `CLOSED`,
   * `CONNECT_TIMEOUT`, `abort.error()` when `abort.signal` fires, or what the
   * EventSource constructor threw (never throws synchronously).
   */
  connect(abort?: OpenAbort): Promise<void> {
    if (this.#closed) return Promise.reject(closedError())
    try {
      this.start()
    } catch (error) {
      return Promise.reject(error)
    }
    return this.#whenOpen(abort)
  }

  /** Closes the EventSource, stops the timers and rejects the waiting callers with `CLOSED`. */
  close(): void {
    if (this.#closed) return
    this.#closed = true
    this.#state = "closed"
    this.#teardown()
    if (this.#watchdog !== undefined) clearInterval(this.#watchdog)
    this.#watchdog = undefined
    if (this.#reopenTimer !== undefined) clearTimeout(this.#reopenTimer)
    this.#reopenTimer = undefined
    for (const waiter of Array.from(this.#waiters)) waiter.settle(closedError())
  }

  #open(): void {
    const config = this.#config
    let url = config.url
    const param = config.lastEventIdParam
    if (param !== false && param !== "" && this.#lastEventId !== undefined) {
      url = withQueryParam(url, param, this.#lastEventId)
    }
    const es = config.eventSourceInit === undefined
      ? new config.EventSource(url)
      : new config.EventSource(url, config.eventSourceInit)
    const isCurrent = () => this.#current?.es === es
    const onOpen: EventSourceListener = () => {
      if (!isCurrent()) return
      this.#state = "open"
      this.#reopenAttempts = 0
      this.#touch()
      for (const waiter of Array.from(this.#waiters)) waiter.settle(undefined)
      this.#events.emit("open", { url, connection: this.#connections })
    }
    const onError: EventSourceListener = (event) => {
      if (!isCurrent()) return
      this.#events.emit("error", { kind: "connection", error: event })
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
      if (!isCurrent()) return
      this.#touch()
      const last = typeof event.lastEventId === "string" ? event.lastEventId : ""
      const id = ownFrameId(last, this.#previousEventId)
      this.#previousEventId = last
      if (last !== "") this.#lastEventId = last
      this.#onFrame(event, id)
    }
    const onHeartbeat: EventSourceListener = (event) => {
      if (!isCurrent()) return
      this.#touch()
      this.#previousEventId = typeof event.lastEventId === "string" ? event.lastEventId : ""
      this.#events.emit("heartbeat", { at: this.#lastActivity })
    }
    const { eventName, keepAliveEvent } = config
    const heartbeat = keepAliveEvent !== eventName
    es.addEventListener("open", onOpen)
    es.addEventListener("error", onError)
    es.addEventListener(eventName, onFrame)
    if (heartbeat) es.addEventListener(keepAliveEvent, onHeartbeat)
    this.#current = {
      es,
      url,
      detach: () => {
        es.removeEventListener("open", onOpen)
        es.removeEventListener("error", onError)
        es.removeEventListener(eventName, onFrame)
        if (heartbeat) es.removeEventListener(keepAliveEvent, onHeartbeat)
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
    const delay = Math.min(MAX_REOPEN_DELAY, this.#config.reopenDelayMs * 2 ** Math.min(this.#reopenAttempts, 16))
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
      this.#events.emit("error", { kind: "connection", error })
      this.#scheduleReopen()
      return
    }
    const event = { reason, silentMs, lastEventId: this.#lastEventId }
    this.#events.emit("reconnect", event)
    const onReconnect = this.#config.onReconnect
    if (onReconnect !== undefined) this.#events.guard(() => onReconnect(event))
  }

  #checkLiveness(): void {
    if (this.#closed || this.#current === undefined || this.#reopenTimer !== undefined) return
    const silentMs = Date.now() - this.#lastActivity
    if (silentMs > this.#config.watchdogMs) this.#reopen("watchdog", silentMs)
  }

  #touch(): void {
    this.#lastActivity = Date.now()
  }

  #whenOpen(abort: OpenAbort | undefined): Promise<void> {
    if (this.#state === "open" && this.#current?.es.readyState === OPEN) return Promise.resolve()
    return new Promise<void>((resolve, reject) => {
      const ms = this.#config.connectTimeoutMs
      let timer: Timer | undefined
      const onAbort = () => waiter.settle(abort!.error())
      const waiter: OpenWaiter = {
        settle: (error) => {
          if (!this.#waiters.delete(waiter)) return
          if (timer !== undefined) clearTimeout(timer)
          abort?.signal.removeEventListener("abort", onAbort)
          if (error === undefined) resolve()
          else reject(error)
        }
      }
      this.#waiters.add(waiter)
      if (abort !== undefined) {
        if (abort.signal.aborted) return onAbort()
        abort.signal.addEventListener("abort", onAbort)
      }
      if (ms > 0) {
        timer = setTimeout(
          () => waiter.settle(new SSEClientError("CONNECT_TIMEOUT", `the EventSource did not open within ${ms} ms (${this.#config.url})`)),
          ms
        )
      }
    })
  }
}
