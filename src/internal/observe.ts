/**
 * Logs and spans of an instance. Every reported error (`Events.report`) is also logged
 * through the `Logger` of the layer's runtime (the one the application provided), at a
 * level per code, annotated with `code` and, when known, `userId` and `connId`. The
 * synchronous paths (a message from the bus, a replay, a send from within an Effect)
 * run in spans of the layer's tracer, made directly with `Tracer.span` (no Effect run),
 * and only when the application installed a tracer: with Effect's default tracer (and
 * always in the `SSEKify` facade) a span costs one branch. The Effect members of the
 * service use `Effect.withSpan`, also only when the calling fiber's tracer is not
 * Effect's default one ({@link spansIn}; see `service.ts`).
 *
 * Nothing here runs an effect unless something is reported.
 */
import type * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import * as FiberRef from "effect/FiberRef"
import * as Option from "effect/Option"
import * as Runtime from "effect/Runtime"
import type * as Tracer from "effect/Tracer"
import type { SseKifyError } from "../Errors.js"

/** The span names (one per operation). */
export const SpanName = {
  publish: "ssekify.publish",
  deliver: "ssekify.deliver",
  replay: "ssekify.replay",
  register: "ssekify.register"
} as const

/** The span attributes' keys. */
export const Attr = {
  operation: "ssekify.operation",
  userId: "ssekify.user_id",
  room: "ssekify.room",
  targetType: "ssekify.target_type",
  event: "ssekify.event",
  connId: "ssekify.conn_id",
  instanceId: "ssekify.instance_id",
  delivered: "ssekify.delivered",
  replayed: "ssekify.replayed",
  rooms: "ssekify.rooms",
  lastEventIdLength: "ssekify.last_event_id_length"
} as const

/**
 * The log level of a reported error. `Error`: something failed that nobody asked to
 * fail (the bus or a store, an application callback, a message on the bus that is not
 * ours or was tampered with). `Warning`: a refusal or a condition the library handled
 * as documented (a caller's input refused, a limit reached, a slow client disconnected
 * by its policy, the seq counters falling back to memory, an over-long `Last-Event-ID`
 * ignored, a send after shutdown).
 */
export const logLevelOf = (code: SseKifyError["code"]): "Warning" | "Error" => {
  switch (code) {
    case "TRANSPORT_ERROR":
    case "BUS_MESSAGE_INVALID":
    case "CALLBACK_FAILED":
      return "Error"
    default:
      return "Warning"
  }
}

/** What the synchronous call running now is about: its span, user and connection. */
export interface Ambient {
  readonly span: Tracer.AnySpan | undefined
  readonly userId?: string | undefined
  readonly connId?: string | undefined
}

export type Attributes = Readonly<Record<string, string | number | boolean | undefined>>

/** `Option` of a span, for `Tracer.span`. */
const parentOf = (span: Tracer.AnySpan | undefined): Option.Option<Tracer.AnySpan> =>
  span === undefined ? Option.none() : Option.some(span)

let defaultTracer: Tracer.Tracer | undefined

/** Effect's own tracer (what a runtime has when the application installed none). */
const effectDefaultTracer = (): Tracer.Tracer => (defaultTracer ??= Effect.runSync(Effect.tracer))

/**
 * The tracer of the synchronous spans and the logger of the reports of one instance.
 * Off until {@link install} (an engine made outside a layer neither logs nor traces).
 */
export class Observe {
  /** The synchronous spans' tracer; `undefined`: no spans (Effect's default tracer, tracing off, the facade). */
  private tracer: Tracer.Tracer | undefined = undefined
  private clock: Clock.Clock | undefined = undefined
  private log: ((error: SseKifyError, ambient: Ambient | undefined) => void) | undefined = undefined
  /** What the synchronous call running now is about (set by {@link within}). */
  current: Ambient | undefined = undefined

  /** Whether the synchronous paths make spans (a field: read once per message from the bus). */
  tracing = false

  /** Runs `f` with `ambient` current (what it reports and sends is about `ambient`). */
  within<A>(ambient: Ambient | undefined, f: () => A): A {
    if (ambient === undefined) return f()
    const previous = this.current
    this.current = ambient
    try {
      return f()
    } finally {
      this.current = previous
    }
  }

  /** Starts a span, child of the current one (when spans are on). */
  start(name: string, attributes: Attributes): Tracer.Span | undefined {
    const tracer = this.tracer
    if (tracer === undefined) return undefined
    const span = tracer.span(name, parentOf(this.current?.span), Context.empty(), [], this.clock!.unsafeCurrentTimeNanos(), "internal")
    for (const key in attributes) {
      const value = attributes[key]
      if (value !== undefined) span.attribute(key, value)
    }
    return span
  }

  /** Ends a span started by {@link start}. */
  end(span: Tracer.Span, exit: Exit.Exit<unknown, unknown> = Exit.void): void {
    span.end(this.clock!.unsafeCurrentTimeNanos(), exit)
  }

  /**
   * Runs `f` in a span (when spans are on; else just runs it), current for what `f`
   * reports, sends and replays. A throw ends the span as a defect and goes on.
   */
  span<A>(name: string, attributes: Attributes, f: (span: Tracer.Span | undefined) => A): A {
    if (this.tracer === undefined) return f(undefined)
    const span = this.start(name, attributes)!
    const outer = this.current
    const userId = attributes[Attr.userId]
    const connId = attributes[Attr.connId]
    const ambient: Ambient = {
      span,
      userId: typeof userId === "string" ? userId : outer?.userId,
      connId: typeof connId === "string" ? connId : outer?.connId
    }
    let result: A
    try {
      result = this.within(ambient, () => f(span))
    } catch (e) {
      this.end(span, Exit.die(e))
      throw e
    }
    this.end(span)
    return result
  }

  /** Sets attributes on the current span when it is one of ours (a synchronous span). */
  annotate(attributes: Attributes): void {
    const span = this.current?.span
    if (span === undefined || span._tag !== "Span") return
    for (const key in attributes) {
      const value = attributes[key]
      if (value !== undefined) span.attribute(key, value)
    }
  }

  /** The deliver span of the message from the bus being received (see {@link receive}). */
  private receiving: { readonly attributes: Attributes; span: Tracer.Span | undefined } | undefined = undefined

  /**
   * Receives a message from the bus (`run`) with its `ssekify.deliver` span started
   * only once the message is accepted ({@link annotateEnvelope}): the echo of this
   * instance's own messages and refused ones (reported, logged) make no span. `after`
   * sets the span's last attributes.
   */
  receive(attributes: Attributes, run: () => void, after: (span: Tracer.Span) => void): void {
    const slot: { readonly attributes: Attributes; span: Tracer.Span | undefined } = { attributes, span: undefined }
    const previous = this.receiving
    const outer = this.current
    this.receiving = slot
    try {
      run()
    } catch (e) {
      if (slot.span !== undefined) this.end(slot.span, Exit.die(e))
      throw e
    } finally {
      this.receiving = previous
      this.current = outer
    }
    if (slot.span !== undefined) {
      after(slot.span)
      this.end(slot.span)
    }
  }

  /** A message from the bus, accepted: its deliver span starts, with what it targets. */
  annotateEnvelope(type: string, target: string | undefined, event: string | undefined): void {
    const slot = this.receiving
    if (slot === undefined || slot.span !== undefined) return
    const userId = type === "user" ? target : undefined
    slot.span = this.start(SpanName.deliver, {
      ...slot.attributes,
      [Attr.targetType]: type,
      [Attr.userId]: userId,
      [Attr.room]: type === "room" ? target : undefined,
      [Attr.event]: event
    })
    this.current = { span: slot.span, userId }
  }

  /** Logs a reported error (when installed with logging). Never throws. */
  report(error: SseKifyError): void {
    if (this.log !== undefined) this.log(error, this.current)
  }

  /**
   * Turns logs and spans on for the runtime this runs in (the layer's): its loggers
   * log the reports (when `log`); its tracer makes the synchronous spans unless it is
   * Effect's default one or tracing is off (`Effect.withTracerEnabled(false)`).
   */
  install(log: boolean): Effect.Effect<void> {
    return Effect.gen(this, function*() {
      const runtime = yield* Effect.runtime<never>()
      const tracer = yield* Effect.tracer
      const enabled = yield* FiberRef.get(FiberRef.currentTracerEnabled)
      this.clock = yield* Effect.clock
      this.tracer = enabled && tracer !== effectDefaultTracer() ? tracer : undefined
      this.tracing = this.tracer !== undefined
      if (log) this.log = logWith(Runtime.runSync(runtime))
    })
  }
}

const stringField = (error: SseKifyError, key: "userId" | "connId"): string | undefined => {
  const value = (error as { readonly userId?: unknown; readonly connId?: unknown })[key]
  return typeof value === "string" ? value : undefined
}

/** An annotation from a client's input (a refused user id can be of any length): at most 256 characters. */
const capped = (value: string): string => (value.length <= 256 ? value : `${value.slice(0, 256)}…`)

/** The report logger over a runtime's `runSync`. */
const logWith = (run: <A, E>(effect: Effect.Effect<A, E>) => A) => (error: SseKifyError, ambient: Ambient | undefined) => {
  const annotations: Record<string, string> = { code: error.code }
  const userId = stringField(error, "userId") ?? ambient?.userId
  const connId = stringField(error, "connId") ?? ambient?.connId
  if (userId !== undefined && userId !== "") annotations.userId = capped(userId)
  if (connId !== undefined && connId !== "") annotations.connId = capped(connId)
  let message: string
  try {
    message = error.message
  } catch {
    message = error.code
  }
  const level = logLevelOf(error.code)
  const logged = Effect.annotateLogs(level === "Error" ? Effect.logError(message) : Effect.logWarning(message), annotations)
  const span = ambient?.span
  try {
    run(span === undefined ? logged : Effect.withParentSpan(logged, span))
  } catch {
    // a logger that throws: the report itself (the 'error' event) still happens
  }
}

const str = (value: unknown): string | undefined => (typeof value === "string" ? value : undefined)

/**
 * Whether an Effect member called in `fiber` makes its span: when the fiber's tracer is
 * not Effect's default one and tracing is on. Measured on Node 20 (bench/micro/spans.ts),
 * an `Effect.withSpan` with the default tracer costs several times a whole send, for
 * spans nobody exports; the caller's own span stays current either way.
 */
export const spansIn = (fiber: Fiber.RuntimeFiber<unknown, unknown>): boolean =>
  fiber.currentTracer !== effectDefaultTracer() && fiber.getFiberRef(FiberRef.currentTracerEnabled)

/** The `Effect.withSpan` options of an Effect member's span. */
export const spanOptions = (attributes: Attributes): Tracer.SpanOptions => {
  const defined: Record<string, unknown> = {}
  for (const key in attributes) if (attributes[key] !== undefined) defined[key] = attributes[key]
  return { attributes: defined, captureStackTrace: false }
}

/**
 * An Effect member of the service in a span (`Effect.withSpan`, see {@link spansIn}):
 * `body` runs synchronously in the fiber with the current span (the member's, else the
 * caller's) and `userId` current (what it reports is logged with them;
 * `autoFields.traceId` reads the span).
 */
export const traced = <A, E, R>(
  observe: Observe,
  name: string,
  userId: unknown,
  attributes: () => Attributes,
  body: (span: Tracer.AnySpan | undefined) => Effect.Effect<A, E, R>
): Effect.Effect<A, E, R> =>
  Effect.withFiberRuntime<A, E, R>((fiber) => {
    if (spansIn(fiber)) {
      return Effect.withSpan(
        Effect.withFiberRuntime<A, E, R>((inner) => observe.within({ span: inner.currentSpan, userId: str(userId) }, () => body(inner.currentSpan))),
        name,
        spanOptions(attributes())
      )
    }
    const span = fiber.currentSpan
    return observe.within({ span, userId: str(userId) }, () => body(span))
  })

/** Sets an attribute on `span` when it is a span (not an external parent). */
export const setAttribute = (span: Tracer.AnySpan | undefined, key: string, value: string | number | boolean): void => {
  if (span !== undefined && span._tag === "Span") span.attribute(key, value)
}

/** A user id or room for an attribute: only a string (the engine refuses anything else). */
export const idAttribute = str
