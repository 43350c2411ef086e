/**
 * The client's events: what each carries (why a subscription ended, why a frame was
 * dropped, why the EventSource was reopened) and the emitter that delivers them, with
 * the rule that a listener or callback that throws becomes an `'error'` event.
 *
 * @since 0.2.0
 */
import type { FrameMeta } from "./frames.js"
import { globalValue } from "./platform.js"

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


type Listener<K extends keyof SSEClientEventMap> = (event: SSEClientEventMap[K]) => void

interface ConsoleLike {
  readonly error?: (...data: Array<unknown>) => void
}

/**
 * Where a callback's error goes when nobody listens to `'error'`: the host's
 * `reportError` (browsers: the console and `window.onerror`, as for a DOM listener that
 * throws), else `console.error`. Never thrown: the frame being routed is not lost.
 */
const reportUnheard = (error: unknown): void => {
  try {
    const report = globalValue<(error: unknown) => void>("reportError")
    if (typeof report === "function") return report(error)
    const console = globalValue<ConsoleLike>("console")
    if (typeof console?.error === "function") console.error("ssekify/client: a callback threw (listen to 'error' to handle it):", error)
  } catch {
    // the host's reporter failed: there is nowhere left to report to
  }
}

/** The client's listeners by event, and `options.onError`. */
export class Emitter {
  readonly #listeners = new Map<keyof SSEClientEventMap, Set<(event: never) => void>>()
  readonly #onError: ((event: SSEClientEventMap["error"]) => void) | undefined

  constructor(onError: ((event: SSEClientEventMap["error"]) => void) | undefined) {
    this.#onError = onError
  }

  on<K extends keyof SSEClientEventMap>(type: K, listener: Listener<K>): () => void {
    let set = this.#listeners.get(type)
    if (set === undefined) {
      set = new Set()
      this.#listeners.set(type, set)
    }
    set.add(listener as (event: never) => void)
    return () => this.off(type, listener)
  }

  off<K extends keyof SSEClientEventMap>(type: K, listener: Listener<K>): void {
    this.#listeners.get(type)?.delete(listener as (event: never) => void)
  }

  /** Calls the listeners of `type` in the order they were added. */
  emit<K extends keyof SSEClientEventMap>(type: K, event: SSEClientEventMap[K]): void {
    const set = this.#listeners.get(type)
    if (type === "error") return this.#emitError(event as SSEClientEventMap["error"], set)
    if (set === undefined || set.size === 0) return
    for (const listener of Array.from(set)) this.guard(() => (listener as Listener<K>)(event))
  }

  /** Runs a user callback; what it throws becomes an `'error'` event of kind `'handler'`. */
  guard(f: () => void): void {
    try {
      f()
    } catch (error) {
      this.emit("error", { kind: "handler", error })
    }
  }

  /** Removes every listener. */
  clear(): void {
    this.#listeners.clear()
  }

  #emitError(event: SSEClientEventMap["error"], set: Set<(event: never) => void> | undefined): void {
    const heard = this.#onError !== undefined || (set !== undefined && set.size > 0)
    if (!heard) {
      // A connection error is routine (the EventSource retries); a callback that threw is
      // the application's bug and must not vanish.
      if (event.kind === "handler") reportUnheard(event.error)
      return
    }
    if (this.#onError !== undefined) {
      try {
        this.#onError(event)
      } catch {
        // an error handler that throws has nowhere to report to
      }
    }
    if (set === undefined) return
    for (const listener of Array.from(set)) {
      try {
        ;(listener as Listener<"error">)(event)
      } catch {
        // see above
      }
    }
  }
}
