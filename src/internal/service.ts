/**
 * The `SseKify` service over an engine: the Effect forms (typed failures, each also
 * reported as an `'error'` event), the scoped `connect`, and the synchronous `unsafe*`
 * members that skins with a synchronous API (the facade) and the metrics use. Nothing
 * outside reaches the engine: this object is the only way in.
 */
import * as Effect from "effect/Effect"
import type * as Fiber from "effect/Fiber"
import type * as Tracer from "effect/Tracer"
import * as Either from "effect/Either"
import type { InvalidInput, SendError, ShuttingDown, SseKifyError, TransportError } from "../Errors.js"
import type { Scope as PresenceScope } from "../Presence.js"
import type { ReplayBufferService } from "../ReplayBuffer.js"
import type { SseKifyService } from "../SseKify.js"
import type { ConnectionSink, SendOptions } from "./domain.js"
import type { Engine } from "./engine.js"
import { observeLatency, queueSnapshot } from "./metrics.js"
import { Attr, idAttribute, setAttribute, SpanName, spanOptions, spansIn, traced } from "./observe.js"
import * as Presence from "./presence.js"
import { eventsOf, type SubscribeOptions, subscribeTo } from "./subscribe.js"

/**
 * The engine behind a service: for `HttpSse` until it registers through the service,
 * and for the soak's white-box checks. Not part of the API (no module exports it).
 *
 * @internal
 */
export const EngineKey: unique symbol = Symbol.for("ssekify/Engine")

const fromEither = <A, E>(engine: Engine, either: Either.Either<A, E & SseKifyError>): Effect.Effect<A, E> => {
  if (Either.isRight(either)) return Effect.succeed(either.right)
  engine.report(either.left)
  return Effect.fail(either.left)
}

/** A registration (`registerConnection`, `connect`) in a `ssekify.register` span. */
const register = <A extends { readonly connId: string }, E extends SseKifyError>(
  e: Engine,
  userId: unknown,
  run: () => Either.Either<A, E>
): Effect.Effect<A, E> =>
  traced(e.events.observe, SpanName.register, userId, () => ({ [Attr.userId]: idAttribute(userId) }), (span) => {
    const result = run()
    if (Either.isRight(result)) setAttribute(span, Attr.connId, result.right.connId)
    return fromEither(e, result)
  })

/**
 * A local send in a `ssekify.publish` span (when the fiber's tracer is not Effect's
 * default, see `spansIn`), with the number of connections reached. The path without a
 * span allocates what the send did before spans (measured: bench/micro/spans.ts).
 */
const send = (
  e: Engine,
  operation: string,
  targetType: "user" | "room" | "all",
  target: unknown,
  run: () => number | SendError
): Effect.Effect<number, SendError> =>
  Effect.withFiberRuntime<number, SendError>((fiber) =>
    spansIn(fiber)
      ? Effect.withSpan(
        Effect.withFiberRuntime<number, SendError>((inner) => sendIn(e, inner.currentSpan, true, targetType, target, run)),
        SpanName.publish,
        spanOptions({
          [Attr.operation]: operation,
          [Attr.targetType]: targetType,
          [Attr.userId]: targetType === "user" ? idAttribute(target) : undefined,
          [Attr.room]: targetType === "room" ? idAttribute(target) : undefined
        })
      )
      : sendIn(e, fiber.currentSpan, false, targetType, target, run)
  )

/** The send with the current span and its user current (for `autoFields.traceId` and the logs of what it reports). */
const sendIn = (
  e: Engine,
  span: Tracer.AnySpan | undefined,
  spanning: boolean,
  targetType: "user" | "room" | "all",
  target: unknown,
  run: () => number | SendError
): Effect.Effect<number, SendError> => {
  const observe = e.events.observe
  const outer = observe.current
  observe.current = { span, userId: targetType === "user" ? idAttribute(target) : undefined }
  try {
    const result = run()
    if (typeof result !== "number") {
      e.report(result)
      return Effect.fail(result)
    }
    if (spanning) setAttribute(span, Attr.delivered, result)
    return Effect.succeed(result)
  } finally {
    observe.current = outer
  }
}

/** A publish (local delivery, then the bus) in a `ssekify.publish` span. */
const publish = (
  e: Engine,
  operation: string,
  targetType: "user" | "room" | "all",
  target: string | undefined,
  data: unknown,
  opts: SendOptions | undefined
): Effect.Effect<void, SendError | TransportError | ShuttingDown> =>
  Effect.withFiberRuntime<void, SendError | TransportError | ShuttingDown>((outer) => {
    const userId = targetType === "user" ? idAttribute(target) : undefined
    const run = (fiber: Fiber.RuntimeFiber<unknown, unknown>): Effect.Effect<void, SendError | TransportError | ShuttingDown> =>
      e.publish(targetType, target, data, opts, { span: fiber.currentSpan, userId })
    return spansIn(outer)
      ? Effect.withSpan(
        Effect.withFiberRuntime<void, SendError | TransportError | ShuttingDown>(run),
        SpanName.publish,
        spanOptions({
          [Attr.operation]: operation,
          [Attr.targetType]: targetType,
          [Attr.userId]: userId,
          [Attr.room]: targetType === "room" ? idAttribute(target) : undefined
        })
      )
      : run(outer)
  })

/** The service over `e`. */
export const makeService = (
  e: Engine,
  presence: Presence.PresenceTracker | undefined,
  replay: ReplayBufferService,
  ready: Effect.Effect<void>
): SseKifyService => {
  const service: SseKifyService & { readonly [EngineKey]: Engine } = {
    [EngineKey]: e,
    instanceId: e.instanceId,
    registerConnection: (userId, res, opts) => register(e, userId, () => e.register(userId, res, opts)),
    sendToUser: (userId, data, opts) =>
      send(e, "sendToUser", "user", userId, () => e.sendToUser(userId, data, opts)),
    sendToAll: (data, opts) => send(e, "sendToAll", "all", undefined, () => e.sendToAll(data, opts)),
    sendToRoom: (room, data, opts) => send(e, "sendToRoom", "room", room, () => e.sendToRoom(room, data, opts)),
    // Only an omitted user id means everyone: '' / null are refused by the engine.
    publish: (data, userId, opts) =>
      userId === undefined
        ? publish(e, "publish", "all", undefined, data, opts)
        : publish(e, "publish", "user", userId, data, opts),
    publishToRoom: (room, data, opts) => publish(e, "publishToRoom", "room", room, data, opts),
    close: (userId) =>
      Effect.suspend(() => {
        const bad = e.close(userId)
        if (bad === undefined) return Effect.void
        e.report(bad)
        return Effect.fail(bad)
      }),
    stats: Effect.sync(() => e.stats()),
    getUserConnectionCount: ((userId: string, query?: { readonly scope?: PresenceScope | undefined }) =>
      query?.scope === "cluster"
        ? Presence.clusterCount(presence, "getUserConnectionCount", userId)
        : Effect.sync(() => e.userConnectionCount(userId))) as SseKifyService["getUserConnectionCount"],
    getUserConnectionIds: (userId) => Effect.sync(() => e.userConnectionIds(userId)),
    getAllUsersConnectionStats: Effect.sync(() => e.allUsersConnectionStats()),
    isUserOnline: ((userId: string, query?: { readonly scope?: PresenceScope | undefined }) =>
      query?.scope === "cluster"
        ? Effect.map(Presence.clusterCount(presence, "isUserOnline", userId), (n) => n > 0)
        : Effect.sync(() => e.userConnectionCount(userId) > 0)) as SseKifyService["isUserOnline"],
    clearRecent: (userId) =>
      Effect.suspend((): Effect.Effect<void, TransportError | InvalidInput> => {
        const bad = userId === undefined ? undefined : e.checkUserId(userId)
        if (bad === undefined) return replay.clear(userId)
        e.report(bad)
        return Effect.fail(bad)
      }),
    stopAccepting: Effect.sync(() => e.stopAccepting()),
    shutdown: (opts) => e.shutdown(opts),
    ready,
    events: eventsOf(e, undefined),
    eventsOf: (types) => eventsOf(e, new Set(types)),
    subscribe: ((types?: ReadonlyArray<string>, options?: SubscribeOptions) =>
      subscribeTo(e, types === undefined ? undefined : new Set(types), options)) as SseKifyService["subscribe"],
    connect: (userId, res, opts) =>
      Effect.acquireRelease(
        register(e, userId, () => e.register(userId, res, opts)),
        (handle) => Effect.sync(handle.close)
      ),
    unsafeRegisterConnection: (userId, res, opts) => e.register(userId, res, opts),
    unsafeSendToUser: (userId, data, opts) => e.sendToUser(userId, data, opts),
    unsafeSendToAll: (data, opts) => e.sendToAll(data, opts),
    unsafeSendToRoom: (room, data, opts) => e.sendToRoom(room, data, opts),
    unsafeReport: (error) => e.report(error),
    unsafeSubscribe: (listener, wants) => e.subscribe(listener, wants),
    unsafeQueueSnapshot: () => queueSnapshot(e.hub.conns),
    unsafeObserveLatency: (observer) => observeLatency(e.hub.writer, observer),
    endpoint: {
      admit: (userId, opts, check) =>
        traced(e.events.observe, SpanName.register, userId, () => ({ [Attr.userId]: idAttribute(userId), [Attr.operation]: "endpoint" }), (span) =>
          Effect.tapError(
            e.registration.admitEndpoint(userId, opts, check),
            // as the platform endpoint always did: a stopped instance is answered, not reported
            (error) =>
              error._tag === "ShuttingDown"
                ? Effect.void
                : Effect.sync(() => e.events.observe.within({ span, userId: idAttribute(userId) }, () => e.report(error)))
          )),
      accepting: () => e.accepting,
      shuttingDown: () => e.shutdownStarted,
      layerShutdown: Effect.suspend(() => (e.closedForGood ? Effect.void : e.shutdown(e.layerShutdown))),
      shutdownInBackground: () => e.shutdownInBackground(),
      sinks: () => sinksOf(e.hub.conns.values())
    }
  }
  return service
}

function* sinksOf(conns: Iterable<{ readonly res: ConnectionSink }>): Iterable<ConnectionSink> {
  for (const conn of conns) yield conn.res
}
