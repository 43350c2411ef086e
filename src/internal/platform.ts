/**
 * The `@effect/platform` path: a connection whose response body is a `Stream`.
 *
 * The hub writes to a {@link StreamSink}, a small object with the members of a Node
 * response that the hub uses (`write` / `end` / `on`). The response body pulls from
 * it: each pull takes every chunk written since the last one, or parks (one
 * `Effect.async`) until the hub writes or ends. No fiber, queue or stream per message:
 * the hub's per-tick coalescing means one chunk per tick at most, and the sink's
 * buffer is bounded by the hub's backpressure:
 *
 * - `write` returns `false` once the bytes not yet pulled reach the high-water mark
 *   (the consumer — the HTTP server writing to the socket — stopped pulling because
 *   the socket is full); the hub then queues, under the connection's `dropPolicy`;
 * - the next pull takes everything and emits `'drain'`, and the hub writes what it
 *   queued meanwhile in one chunk.
 *
 * The body's run is the connection's lifetime: its first pull attaches the connection
 * to the hub; the body stopping (the client went away and the server interrupted it,
 * or it ended) emits `'close'`, which removes the connection everywhere. Ending the
 * connection from the hub (`close`, shutdown, backpressure `'disconnect'`) ends the
 * body after the chunks already written — at once when the client stopped reading
 * (see `StreamSink.end`), so a stuck client never holds the HTTP server's close.
 */
import * as Cookies from "@effect/platform/Cookies"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Runtime from "effect/Runtime"
import * as Stream from "effect/Stream"
import type { ConnectionHandle } from "../Connection.js"
import type { Engine } from "./engine.js"
import type { SinkResponse } from "./hub.js"
import type { ResolvedConnection } from "./options.js"

type Listener = (this: unknown, ...args: Array<unknown>) => void
type Listeners = Listener | Array<Listener> | undefined
type Resume = (effect: Effect.Effect<Chunk.Chunk<Uint8Array>, Option.Option<never>>) => void

const addListener = (current: Listeners, listener: Listener): Listeners =>
  current === undefined ? listener : Array.isArray(current) ? (current.push(listener), current) : [current, listener]

const END: Effect.Effect<never, Option.Option<never>> = Effect.fail(Option.none())

/**
 * The Node response under a platform response body (on `NodeHttpServer`), as far as
 * the sink needs it: whether it waits for `'drain'` (then the server's body loop is
 * parked until it comes), and `emit` to wake that loop.
 */
export interface UnderlyingResponse {
  readonly writableNeedDrain: boolean
  emit(event: "drain"): boolean
}

/**
 * The Node response of a request served by `@effect/platform-node` (what
 * `NodeHttpServerRequest.toServerResponse` returns, read without loading that module),
 * or undefined on other servers.
 */
export const underlyingResponse = (request: unknown): UnderlyingResponse | undefined => {
  if (typeof request !== "object" || request === null) return undefined
  let res: unknown
  try {
    res = (request as { readonly resolvedResponse?: unknown }).resolvedResponse
  } catch {
    return undefined
  }
  if (typeof res !== "object" || res === null) return undefined
  const r = res as Partial<UnderlyingResponse>
  return typeof r.emit === "function" && typeof r.writableNeedDrain === "boolean" ? res as UnderlyingResponse : undefined
}

const HttpServerRequestTag = HttpServerRequest.HttpServerRequest

/** The default high-water mark: a Node `ServerResponse`'s. */
export const DEFAULT_HIGH_WATER_MARK = 16_384

/**
 * A `SinkResponse` whose bytes are pulled by a response body stream. See the module
 * documentation.
 */
export class StreamSink implements SinkResponse {
  /** Chunks written and not yet pulled (allocated on the first buffered write). */
  private chunks: Array<Uint8Array> | undefined = undefined
  /** Bytes in `chunks`. */
  private pending = 0
  /** `write` returned false: emit `'drain'` on the next pull. */
  private needDrain = false
  /** A pull parked until the next write or end. */
  private waiting: Resume | undefined = undefined
  private onClose: Listeners = undefined
  private onDrain: Listeners = undefined
  /** `once('drain')` listeners: called at the next `'drain'` only. */
  private onDrainOnce: Listeners = undefined
  writableEnded = false
  destroyed = false

  /** One parked pull (the register function and its canceler are allocated once). */
  private readonly park: Effect.Effect<Chunk.Chunk<Uint8Array>, Option.Option<never>>
  /** The body's pull: every pending chunk, or wait, or the end. */
  readonly pull: Effect.Effect<Chunk.Chunk<Uint8Array>, Option.Option<never>>

  constructor(readonly writableHighWaterMark: number, private readonly underlying?: UnderlyingResponse | undefined) {
    const cancel = Effect.sync(() => {
      this.waiting = undefined
    })
    const register = (resume: Resume) => {
      this.waiting = resume
      return cancel
    }
    this.park = Effect.suspend(() => Effect.async(register))
    this.pull = Effect.suspend(() => {
      if (this.chunks !== undefined && this.chunks.length > 0) return Effect.succeed(this.take())
      if (this.writableEnded || this.destroyed) return END
      return this.park
    })
  }

  write(chunk: Uint8Array): boolean {
    if (this.writableEnded || this.destroyed) return true
    const resume = this.waiting
    if (resume !== undefined) {
      // The body is waiting: hand the chunk over at once (nothing stays buffered).
      this.waiting = undefined
      resume(Effect.succeed(Chunk.of(chunk)))
      return true
    }
    if (this.chunks === undefined) this.chunks = [chunk]
    else this.chunks.push(chunk)
    this.pending += chunk.length
    if (this.pending < this.writableHighWaterMark) return true
    this.needDrain = true
    return false
  }

  /**
   * Ends the stream once the chunks already written are pulled. When the server's
   * socket is full (the client stopped reading), the server's body loop is parked until
   * `'drain'`: the chunks not pulled are dropped (as the hub drops a blocked queue on
   * close) and the loop is woken, so that it sees the end and ends the response now —
   * as `res.end()` does on the Node path — rather than when (if ever) the client reads.
   */
  end(): void {
    if (this.writableEnded) return
    this.writableEnded = true
    const resume = this.waiting
    if (resume !== undefined) {
      this.waiting = undefined
      resume(END)
      return
    }
    const underlying = this.underlying
    if (underlying !== undefined && underlying.writableNeedDrain) {
      this.chunks = undefined
      this.pending = 0
      this.needDrain = false
      underlying.emit("drain")
    }
  }

  on(event: "close" | "drain" | "error", listener: (...args: Array<any>) => void): this {
    if (event === "drain") this.onDrain = addListener(this.onDrain, listener)
    else if (event === "close") this.onClose = addListener(this.onClose, listener)
    // 'error': a stream sink has no write errors of its own (the server's socket
    // errors interrupt the body, which releases the sink: 'close').
    return this
  }

  once(event: "drain", listener: (...args: Array<any>) => void): this {
    if (event === "drain") this.onDrainOnce = addListener(this.onDrainOnce, listener)
    return this
  }

  /** Bytes written and not yet pulled. */
  get writableLength(): number {
    return this.pending
  }

  private take(): Chunk.Chunk<Uint8Array> {
    const chunks = this.chunks!
    this.chunks = undefined
    this.pending = 0
    if (this.needDrain) {
      this.needDrain = false
      // May write again at once (the hub's queue, in one chunk): it waits for the next pull.
      const once = this.onDrainOnce
      this.onDrainOnce = undefined
      emit(this, this.onDrain)
      emit(this, once)
    }
    return Chunk.unsafeFromArray(chunks)
  }

  /** The body stopped (ended or interrupted): the connection is gone. */
  release(): void {
    if (this.destroyed) return
    this.destroyed = true
    this.chunks = undefined
    this.pending = 0
    this.waiting = undefined
    const listeners = this.onClose
    this.onClose = undefined
    this.onDrain = undefined
    this.onDrainOnce = undefined
    emit(this, listeners)
  }
}

const emit = (self: StreamSink, listeners: Listeners): void => {
  if (listeners === undefined) return
  if (!Array.isArray(listeners)) {
    listeners.call(self)
    return
  }
  for (const listener of listeners.slice()) listener.call(self)
}

/**
 * The body of one SSE connection: its first pull attaches the connection (writing
 * `retry:`, joining rooms, replaying after `lastEventId`, then `onConnect`); the
 * body stopping (ended, failed or interrupted) removes it. A body first pulled after
 * the instance stopped accepting, or with `maxConnections` reached meanwhile, ends at
 * once. A body never run attaches nothing.
 *
 * Built as `repeatEffectChunkOption(pull)` + `ensuring(release)` rather than
 * `fromPull` (`unwrapScoped` + `acquireRelease`): measured, 41.7 vs 49.9 KiB of heap
 * per idle connection on `NodeHttpServer` (the platform's own streaming response is
 * 40.8 KiB of it).
 */
export const connectionStream = (
  engine: Engine,
  userId: string,
  resolved: ResolvedConnection,
  lastEventId: string | undefined,
  highWaterMark: number,
  onConnect: ((handle: ConnectionHandle) => Effect.Effect<void>) | undefined,
  underlying?: UnderlyingResponse | undefined
): Stream.Stream<Uint8Array> =>
  // One sink per run of the stream.
  Stream.suspend(() => {
    const sink = new StreamSink(highWaterMark, underlying)
    let started = false
    const start = Effect.suspend(() => {
      started = true
      // Checked when the response was made; checked again now, as bodies made together
      // before any of them started could otherwise overshoot `maxConnections`.
      const max = engine.options.maxConnections
      if (!engine.accepting || (max > 0 && engine.hub.conns.size >= max)) {
        sink.end()
        return sink.pull
      }
      const handle = engine.attach(userId, sink, resolved, lastEventId)
      if (onConnect === undefined || sink.writableEnded) return sink.pull
      return Effect.zipRight(onConnect(handle), sink.pull)
    })
    const first = Effect.suspend(() => started ? sink.pull : start)
    return Stream.repeatEffectChunkOption(first).pipe(Stream.ensuring(Effect.sync(() => sink.release())))
  })

// ---------------------------------------------------------------------------
// The fast path: the Node response handed to the hub
// ---------------------------------------------------------------------------

/**
 * The members of a Node `ServerResponse` the fast path uses (`@effect/platform-node`'s
 * request exposes it as `resolvedResponse`).
 */
export interface NodeServerResponse extends UnderlyingResponse {
  readonly headersSent: boolean
  readonly writableEnded: boolean
  readonly destroyed: boolean
  readonly socket: { readonly server?: unknown } | null
  writeHead(status: number, headers: Record<string, string | ReadonlyArray<string>>): unknown
  write(chunk: Uint8Array): boolean
  end(): unknown
  on(event: "close" | "error", listener: (...args: Array<any>) => void): unknown
  once(event: "drain", listener: (...args: Array<any>) => void): unknown
}

/** The Node response under a request served by `@effect/platform-node`, or undefined. */
export const nodeResponseOf = (request: unknown): NodeServerResponse | undefined => {
  const res = underlyingResponse(request) as Partial<NodeServerResponse> | undefined
  if (res === undefined) return undefined
  return typeof res.writeHead === "function" && typeof res.write === "function" && typeof res.end === "function" &&
      typeof res.on === "function" && typeof res.once === "function" && typeof res.headersSent === "boolean"
    ? res as NodeServerResponse
    : undefined
}

/**
 * A response made by `HttpSse.respond` on a Node server, waiting for the hand-off. What
 * the connection needs is dropped once handed off: the platform keeps the response (its
 * body included) as long as the connection lives.
 */
export class Pending {
  constructor(
    readonly engine: Engine,
    readonly userId: string,
    public resolved: ResolvedConnection | undefined,
    public lastEventId: string | undefined,
    readonly highWaterMark: number,
    public onConnect: ((handle: ConnectionHandle) => Effect.Effect<void>) | undefined,
    public res: NodeServerResponse | undefined
  ) {}

  /** The portable body: the platform runs it when the hand-off does not happen. */
  body(): Stream.Stream<Uint8Array> {
    return this.resolved === undefined
      ? Stream.empty
      : connectionStream(this.engine, this.userId, this.resolved, this.lastEventId, this.highWaterMark, this.onConnect, this.res)
  }

  /** Taken over (or dropped): forget the connection's settings. */
  take(): void {
    this.resolved = undefined
    this.lastEventId = undefined
    this.onConnect = undefined
    this.res = undefined
  }
}

const SHUTTING_DOWN = HttpServerResponse.text("Server is shutting down", { status: 503, headers: { "retry-after": "2" } })

/** Pending hand-offs, by the body of the response `respond` made (garbage with it). */
const pendings = new WeakMap<object, Pending>()
/** The same, by Node response: what {@link portableBody} runs. */
const byResponse = new WeakMap<object, Pending>()

/**
 * The body of every response `respond` makes on a Node server (one stream for all: the
 * platform keeps a response as long as its connection lives, so it holds nothing of
 * the connection). Run by the platform when the hand-off did not happen, it streams the
 * connection of the request it is run for.
 */
export const portableBody: Stream.Stream<Uint8Array> = Stream.unwrap(
  Effect.map(Effect.serviceOption(HttpServerRequestTag), (request) => {
    const res = request._tag === "Some" ? nodeResponseOf(request.value) : undefined
    const pending = res === undefined ? undefined : byResponse.get(res)
    if (pending === undefined) return Stream.empty
    byResponse.delete(res!)
    return pending.body()
  })
)

/**
 * Marks the response `respond` made for the hand-off: when it is the response the
 * server is about to send (same body, whatever middleware did to its headers),
 * {@link preResponse} takes the Node response over.
 */
export const offer = (body: object, pending: Pending): void => {
  pendings.set(body, pending)
  byResponse.set(pending.res!, pending)
}

/**
 * The pre-response handler of the fast path. For a response marked by {@link offer}
 * it writes the status and headers the platform would have written (the response's,
 * after middleware, with its cookies), hides the Node response from the platform
 * until the request's fiber is done (`writableEnded` reads true on that response only,
 * so `@effect/platform-node` writes nothing and ends nothing), then — once the fiber
 * is done — attaches the Node response to the hub as the Node path does. From then on
 * the connection costs what a Node-path connection costs: no fiber, no stream.
 *
 * Anything else (another response, a HEAD request, a response already started, a
 * server other than `@effect/platform-node`) is left to the platform: the body then
 * streams the connection (the portable path).
 */
export const preResponse = (
  request: HttpServerRequest.HttpServerRequest,
  response: HttpServerResponse.HttpServerResponse
): Effect.Effect<HttpServerResponse.HttpServerResponse> => {
  const pending = pendings.get(response.body)
  if (pending === undefined) return Effect.succeed(response)
  pendings.delete(response.body)
  const res = pending.res
  const resolved = pending.resolved
  if (res === undefined || resolved === undefined) return Effect.succeed(response)
  if (request.method === "HEAD" || res.headersSent || res.writableEnded || res.destroyed) return Effect.succeed(response)
  if (!pending.engine.accepting) {
    pending.take()
    byResponse.delete(res)
    return Effect.succeed(SHUTTING_DOWN)
  }
  return Effect.withFiberRuntime((fiber) => {
    try {
      res.writeHead(response.status, headersOf(response))
    } catch {
      return Effect.succeed(response)
    }
    hide(res)
    const runtime = pending.onConnect === undefined ? undefined : Runtime.make({
      context: fiber.currentContext,
      fiberRefs: fiber.getFiberRefs(),
      runtimeFlags: Runtime.defaultRuntimeFlags
    })
    const { lastEventId, onConnect, userId } = pending
    const engine = pending.engine
    pending.take()
    byResponse.delete(res)
    fiber.addObserver(() => handOff(engine, userId, resolved, lastEventId, onConnect, res, runtime))
    return Effect.succeed(response)
  })
}

const headersOf = (response: HttpServerResponse.HttpServerResponse): Record<string, string | ReadonlyArray<string>> => {
  if (Cookies.isEmpty(response.cookies)) return response.headers
  const headers: Record<string, string | ReadonlyArray<string>> = { ...response.headers }
  const toSet = Cookies.toSetCookieHeaders(response.cookies)
  const existing = response.headers["set-cookie"]
  if (existing !== undefined) toSet.push(existing)
  headers["set-cookie"] = toSet
  return headers
}

/** `writableEnded` reads true on this response only (an own property, removed by {@link show}). */
const hide = (res: NodeServerResponse): void => {
  Object.defineProperty(res, "writableEnded", { value: true, configurable: true, enumerable: false, writable: false })
}

/** Removes the property {@link hide} added (the last one added: the object keeps its shape). */
const show = (res: NodeServerResponse): void => {
  delete (res as { writableEnded?: boolean }).writableEnded
}

/** The request's fiber is done: the platform has let go of the response; the hub takes it. */
const handOff = (
  engine: Engine,
  userId: string,
  resolved: ResolvedConnection,
  lastEventId: string | undefined,
  onConnect: ((handle: ConnectionHandle) => Effect.Effect<void>) | undefined,
  res: NodeServerResponse,
  runtime: Runtime.Runtime<never> | undefined
): void => {
  show(res)
  if (res.destroyed || res.writableEnded) return // the client left meanwhile
  const max = engine.options.maxConnections
  if (!engine.accepting || (max > 0 && engine.hub.conns.size >= max)) {
    try {
      res.end()
    } catch {
      // the socket may be gone
    }
    return
  }
  let handle: ConnectionHandle
  try {
    handle = engine.attach(userId, res, resolved, lastEventId)
  } catch (error) {
    engine.report(error instanceof Error ? error : new Error(String(error)))
    return
  }
  watchServer(engine, res)
  // After the platform's request handler has returned (it adds its listener then).
  process.nextTick(dropPlatformListener, res)
  if (runtime !== undefined && onConnect !== undefined && !res.writableEnded) Runtime.runFork(runtime)(onConnect(handle))
}

/**
 * `@effect/platform-node` interrupts a request's fiber when its response closes before
 * it ended, with a `'close'` listener that holds the fiber. Once the hub has the response
 * the fiber is done and that listener can do nothing, but it keeps the finished fiber
 * (its fiber refs, context and response: ~2 KB) alive as long as the connection: it is
 * removed. Only that listener is (recognised by what it does); any other stays.
 */
const dropPlatformListener = (res: NodeServerResponse): void => {
  const emitter = res as unknown as {
    listeners?: (event: string) => Array<(...args: Array<unknown>) => void>
    removeListener?: (event: string, listener: (...args: Array<unknown>) => void) => unknown
  }
  if (typeof emitter.listeners !== "function" || typeof emitter.removeListener !== "function") return
  for (const listener of emitter.listeners("close")) {
    if (listener.length === 0 && isPlatformAbortListener(listener)) emitter.removeListener("close", listener)
  }
}

const isPlatformAbortListener = (listener: (...args: Array<unknown>) => void): boolean => {
  let source: string
  try {
    source = Function.prototype.toString.call(listener)
  } catch {
    return false
  }
  return source.length < 400 && source.includes("writableEnded") && source.includes("unsafeInterruptAsFork")
}

// ---------------------------------------------------------------------------
// Shutdown with the HTTP server
// ---------------------------------------------------------------------------

interface ClosableServer {
  close: (...args: Array<unknown>) => unknown
  closeIdleConnections?: () => void
  [kEngines]?: Set<Engine>
}

const kEngines: unique symbol = Symbol.for("ssekify/platform/engines")

/**
 * Ties the instance to the HTTP server a connection lives on: when the server starts
 * closing (`server.close()`, which `NodeHttpServer` calls when its scope closes and
 * which waits for every open response), the instance runs its layer's shutdown —
 * announce, grace (ended early when every client is gone), close — so the SSE
 * responses end and the server's close completes, whichever layer is released first.
 * Installed once per server and instance, not per connection.
 */
export const watchServer = (engine: Engine, res: NodeServerResponse): void => {
  const server = res.socket?.server as ClosableServer | undefined
  if (server === undefined || server === null || typeof server.close !== "function") return
  let engines = server[kEngines]
  if (engines === undefined) {
    engines = new Set()
    const set = engines
    const close = server.close
    server[kEngines] = set
    server.close = function(this: unknown, ...args: Array<unknown>) {
      // `close()` closes the connections idle now; an SSE response ended by the shutdown
      // leaves its socket idle later, kept alive until `keepAliveTimeout`: close it then.
      const closeIdle = () => server.closeIdleConnections?.()
      for (const e of set) {
        for (const conn of e.hub.conns.values()) {
          const r = conn.res as Partial<NodeServerResponse>
          if (r.socket?.server === server && typeof r.once === "function") {
            ;(r.once as (event: string, listener: () => void) => unknown)("finish", closeIdle)
          }
        }
        e.shutdownInBackground()
      }
      set.clear()
      return close.apply(this, args)
    }
  }
  if (!engine.shutdownStarted) engines.add(engine)
}
