/**
 * What `ssekify/client` needs from its host (a browser, Node, a polyfill): structural
 * types of `EventSource`, `fetch`, `Response` and `AbortSignal`, and the look-ups of
 * globals, random ids and timers. Structural on purpose: the same declarations fit the
 * browser's DOM objects, Node's globals and the `eventsource` package, without
 * depending on the DOM or Node type libraries. No import of Node modules: this file
 * runs in browsers.
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


interface CryptoLike {
  readonly randomUUID?: () => string
  readonly getRandomValues?: (array: Uint8Array) => Uint8Array
}

/** A global, looked up at call time (tests and polyfills may install it late). */
export const globalValue = <T>(name: string): T | undefined => {
  const value = (globalThis as Record<string, unknown>)[name]
  return value === undefined || value === null ? undefined : (value as T)
}

const hex = (bytes: Uint8Array): string => {
  let out = ""
  for (let i = 0; i < bytes.length; i++) out += bytes[i]!.toString(16).padStart(2, "0")
  return out
}

/** `crypto.randomUUID()` when available (browsers expose it in secure contexts only), else a v4 UUID. */
export const randomId = (): string => {
  const crypto = globalValue<CryptoLike>("crypto")
  if (crypto !== undefined && typeof crypto.randomUUID === "function") {
    try {
      return crypto.randomUUID()
    } catch {
      // not a secure context: fall through
    }
  }
  const bytes = new Uint8Array(16)
  if (crypto !== undefined && typeof crypto.getRandomValues === "function") crypto.getRandomValues(bytes)
  else for (let i = 0; i < 16; i++) bytes[i] = Math.floor(Math.random() * 256)
  bytes[6] = (bytes[6]! & 0x0f) | 0x40
  bytes[8] = (bytes[8]! & 0x3f) | 0x80
  const h = hex(bytes)
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`
}

/** A timer handle of the host (a number in browsers, an object in Node). */
export type Timer = ReturnType<typeof setTimeout>

/** Lets a timer not keep Node alive (no-op in browsers). */
export const unref = (timer: unknown): void => {
  const t = timer as { unref?: () => void } | null
  if (t !== null && typeof t === "object" && typeof t.unref === "function") t.unref()
}
