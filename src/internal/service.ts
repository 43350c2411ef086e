/**
 * The `SseKify` service over an engine: the Effect forms (typed failures, each also
 * reported as an `'error'` event), the scoped `connect`, and the synchronous `unsafe*`
 * members that skins with a synchronous API (the facade) and the metrics use. Nothing
 * outside reaches the engine: this object is the only way in.
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type { InvalidInput, SendError, SseKifyError, TransportError } from "../Errors.js"
import type { Scope as PresenceScope } from "../Presence.js"
import type { ReplayBufferService } from "../ReplayBuffer.js"
import type { SseKifyService } from "../SseKify.js"
import type { ConnectionSink, SseKifyEvent } from "./domain.js"
import type { Engine } from "./engine.js"
import { observeLatency, queueSnapshot } from "./metrics.js"
import * as Presence from "./presence.js"

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

const sendResult = (engine: Engine, result: number | SendError): Effect.Effect<number, SendError> => {
  if (typeof result === "number") return Effect.succeed(result)
  engine.report(result)
  return Effect.fail(result)
}

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
    registerConnection: (userId, res, opts) => Effect.suspend(() => fromEither(e, e.register(userId, res, opts))),
    sendToUser: (userId, data, opts) => Effect.suspend(() => sendResult(e, e.sendToUser(userId, data, opts))),
    sendToAll: (data, opts) => Effect.suspend(() => sendResult(e, e.sendToAll(data, opts))),
    sendToRoom: (room, data, opts) => Effect.suspend(() => sendResult(e, e.sendToRoom(room, data, opts))),
    // Only an omitted user id means everyone: '' / null are refused by the engine.
    publish: (data, userId, opts) =>
      userId === undefined ? e.publish("all", undefined, data, opts) : e.publish("user", userId, data, opts),
    publishToRoom: (room, data, opts) => e.publish("room", room, data, opts),
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
    subscribe: ((types?: ReadonlyArray<string>) =>
      subscribeTo(e, types === undefined ? undefined : new Set(types))) as SseKifyService["subscribe"],
    connect: (userId, res, opts) =>
      Effect.acquireRelease(
        Effect.suspend(() => fromEither(e, e.register(userId, res, opts))),
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
        Effect.tapError(
          e.registration.admitEndpoint(userId, opts, check),
          // as the platform endpoint always did: a stopped instance is answered, not reported
          (error) => error._tag === "ShuttingDown" ? Effect.void : Effect.sync(() => e.report(error))
        ),
      accepting: () => e.accepting,
      shuttingDown: () => e.shutdownStarted,
      layerShutdown: Effect.suspend(() => (e.closedForGood ? Effect.void : e.shutdown(e.layerShutdown))),
      shutdownInBackground: () => e.shutdownInBackground(),
      sinks: () => sinksOf(e.hub.conns.values())
    }
  }
  return service
}

/**
 * A subscription for the current scope: an unbounded queue whose listener is registered
 * synchronously when the subscription is acquired, so every event emitted afterwards is
 * in it; events of other types are not built for it. Released with the scope.
 */
const subscribeTo = <E extends SseKifyEvent>(
  engine: Engine,
  types: ReadonlySet<string> | undefined
): Effect.Effect<Queue.Dequeue<E>, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.map(Queue.unbounded<E>(), (queue) => {
      const unsubscribe = engine.subscribe(
        (event) => void queue.unsafeOffer(event as E),
        types === undefined ? undefined : (type) => types.has(type)
      )
      return { queue, unsubscribe }
    }),
    ({ queue, unsubscribe }) => Effect.zipRight(Effect.sync(unsubscribe), Queue.shutdown(queue))
  ).pipe(Effect.map(({ queue }) => queue))

const eventsOf = <E extends SseKifyEvent>(engine: Engine, types: ReadonlySet<string> | undefined): Stream.Stream<E> =>
  Stream.unwrapScoped(Effect.map(subscribeTo<E>(engine, types), (queue) => Stream.fromQueue(queue)))

function* sinksOf(conns: Iterable<{ readonly res: ConnectionSink }>): Iterable<ConnectionSink> {
  for (const conn of conns) yield conn.res
}
