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
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import type { Admission, ConnectionHandle, ConnectionSink } from "./domain.js"

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
    // a server other than @effect/platform-node's, whose request has a throwing getter
    // there: no Node response to wake (not an error of the application's)
    return undefined
  }
  if (typeof res !== "object" || res === null) return undefined
  const r = res as Partial<UnderlyingResponse>
  return typeof r.emit === "function" && typeof r.writableNeedDrain === "boolean" ? res as UnderlyingResponse : undefined
}

/** The default high-water mark: a Node `ServerResponse`'s. */
export const DEFAULT_HIGH_WATER_MARK = 16_384

/**
 * A `ConnectionSink` whose bytes are pulled by a response body stream. See the module
 * documentation.
 */
export class StreamSink implements ConnectionSink {
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
  admission: Admission,
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
      // Undefined: the instance stopped accepting, or bodies made together before any
      // of them started reached `maxConnections` (checked again by the admission).
      const handle = admission.attach(sink, lastEventId)
      if (handle === undefined) {
        sink.end()
        return sink.pull
      }
      if (onConnect === undefined || sink.writableEnded) return sink.pull
      return Effect.zipRight(onConnect(handle), sink.pull)
    })
    const first = Effect.suspend(() => started ? sink.pull : start)
    return Stream.repeatEffectChunkOption(first).pipe(Stream.ensuring(Effect.sync(() => sink.release())))
  })
