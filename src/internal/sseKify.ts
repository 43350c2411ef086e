/**
 * The implementation of `SseKify.make`: the engine on the backends of the context, its
 * timers, presence, the bus subscription and the shutdown finalizer, and the service
 * over it (`service.ts`).
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import * as FiberSet from "effect/FiberSet"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Runtime from "effect/Runtime"
import * as Scope from "effect/Scope"
import { InvalidInput } from "../Errors.js"
import { Store as PresenceStore } from "../Presence.js"
import * as ReplayBuffer from "../ReplayBuffer.js"
import * as Sequencer from "../Sequencer.js"
import type { LayerOptions, SseKifyService } from "../SseKify.js"
import { Transport } from "../Transport.js"
import type { Options } from "./domain.js"
import { Engine, refuse } from "./engine.js"
import { graceOf, resolve } from "./options.js"
import * as Presence from "./presence.js"
import { makeService } from "./service.js"

/** How the facade runs the service. */
export interface Internal {
  /** Background timers do not keep the process alive (the facade). */
  readonly unrefTimers?: boolean
  /** Reported errors are not logged (the facade: its 'error' event and `SsekifyWarning` say it). */
  readonly noLogs?: boolean
}

// Only an option the checks refused is an InvalidInput; anything else thrown while
// reading the options (a getter, a proxy) is a defect, not relabelled.
export const resolveOptions = (options: Options | undefined) =>
  Effect.suspend(() => {
    try {
      graceOf((options as LayerOptions | undefined)?.shutdown)
      return Effect.succeed(resolve(options))
    } catch (e) {
      return e instanceof InvalidInput ? Effect.fail(e) : Effect.die(e)
    }
  })

export const make = (
  options?: LayerOptions,
  internal?: Internal
): Effect.Effect<
  SseKifyService,
  InvalidInput,
  Transport | ReplayBuffer.ReplayBuffer | Sequencer.Sequencer | Scope.Scope
> =>
  Effect.gen(function*() {
    const resolved = yield* resolveOptions(options)
    const transport = yield* Transport
    const clock = yield* Effect.clock
    const now = () => clock.unsafeCurrentTimeMillis()
    const runFork = yield* FiberSet.makeRuntime<never, void, never>()

    const timers = new Set<NodeJS.Timeout>()
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        for (const timer of timers) clearInterval(timer)
        timers.clear()
      })
    )
    const every = internal?.unrefTimers
      ? (ms: number, tick: () => void) => {
        const timer = setInterval(tick, ms)
        timer.unref()
        timers.add(timer)
        return () => {
          clearInterval(timer)
          timers.delete(timer)
        }
      }
      : (ms: number, tick: () => void) => {
        const fiber = runFork(Effect.forever(Effect.zipRight(Effect.sleep(ms), Effect.sync(tick))))
        return () => fiber.unsafeInterruptAsFork(FiberId.none)
      }

    // The stores: taken from the context; what they report goes to this instance.
    const sequencer = yield* Sequencer.Sequencer
    const replay = yield* ReplayBuffer.ReplayBuffer
    const presenceStore = yield* Effect.serviceOption(PresenceStore)

    const engine = new Engine({
      options: resolved,
      transport,
      replay,
      sequencer,
      now,
      every,
      fork: (effect) => void runFork(effect),
      forkNow: (effect) => void runFork(effect, { immediate: true })
    })
    const e = engine
    yield* e.events.observe.install(internal?.noLogs !== true)
    if (sequencer.subscribeErrors !== undefined) yield* sequencer.subscribeErrors((warning) => e.report(warning))
    if (replay.subscribeErrors !== undefined) yield* replay.subscribeErrors((error) => e.report(error))
    // Before the shutdown finalizer below, so it is released after the connections closed.
    const presence = yield* Presence.make(e, presenceStore, every, now, refuse)

    // The bus subscription registers its handlers at once (synchronously: an in-process
    // bus sees the next publish) and may wait for the broker's confirmation in the
    // background; `ready` waits for it.
    const layerScope = yield* Effect.scope
    const runtime = yield* Effect.runtime<never>()
    const subscription = Runtime.runFork(runtime)(
      transport.subscribe(resolved.channel, {
        onMessage: (raw) => e.receive(raw),
        onError: (error) => e.report(error)
      }).pipe(Scope.extend(layerScope)),
      { immediate: true }
    )
    yield* Effect.addFinalizer(() => Fiber.interrupt(subscription))
    const ready = Effect.asVoid(Fiber.await(subscription))
    // Routed mode: the receiver of the per-user and room channels, for the layer's life.
    if (transport.routed !== undefined) {
      yield* transport.routed.listen(
        (channel, raw) => e.receiveRouted(channel, raw),
        (error) => e.report(error)
      )
    }

    // One housekeeping ticker: replay TTL and idle seq keys.
    const sweepMs = Math.max(10_000, Math.min(resolved.recentTTLMs > 0 ? resolved.recentTTLMs : 60_000, resolved.seqTTLSeconds > 0 ? resolved.seqTTLSeconds * 1000 : 60_000, 60_000))
    const sweepNow = () => Effect.runSync(Effect.zipRight(sequencer.sweep, replay.sweep))
    const stopSweep = every(sweepMs, sweepNow)
    yield* Effect.addFinalizer(() => Effect.sync(stopSweep))

    // The layer's shutdown: also run when the HTTP server serving the platform endpoint
    // starts closing (see `ssekify/platform`), whichever is released first.
    e.layerShutdown = options?.shutdown
    yield* Effect.addFinalizer(() =>
      Effect.suspend(() => (e.closedForGood ? Effect.void : e.shutdown(options?.shutdown))).pipe(
        Effect.ensuring(Effect.sync(() => e.hub.stopTickers()))
      )
    )

    return makeService(e, presence, replay, ready)
  })

/** `SseKify.layerStores`. */
export const layerStores = (
  options?: Options
): Layer.Layer<ReplayBuffer.ReplayBuffer | Sequencer.Sequencer, InvalidInput, Transport> =>
  Layer.scopedContext(Effect.gen(function*() {
    const resolved = yield* resolveOptions(options)
    const transport = yield* Transport
    const sequencer = yield* Option.match(yield* Effect.serviceOption(Sequencer.Sequencer), {
      onSome: Effect.succeed,
      onNone: () =>
        Effect.flatMap(Effect.serviceOption(Sequencer.Store), (store) =>
          Sequencer.make({
            startAt: resolved.seqStartAt,
            ttlSeconds: resolved.seqTTLSeconds,
            maxKeys: resolved.seqMaxKeys,
            keyPrefix: resolved.seqKeyPrefix,
            kv: resolved.seqKv === undefined
              ? Option.getOrUndefined(store)
              : resolved.seqKv === null
              ? undefined
              : Sequencer.kvFromIncr(resolved.seqKv),
            expectKv: transport.kind !== "none"
          }))
    })
    const replay = yield* Option.match(yield* Effect.serviceOption(ReplayBuffer.ReplayBuffer), {
      onSome: Effect.succeed,
      onNone: () =>
        resolved.replay === "redis"
          ? Effect.flatMap(Effect.serviceOption(ReplayBuffer.Store), (store) =>
            Option.match(store, {
              onNone: () =>
                Effect.fail(
                  new InvalidInput({
                    field: "replay",
                    reason: "'redis' needs the Redis transport (a Redis URL, createIORedisAdapter(...) or RedisTransport.layer)"
                  })
                ),
              onSome: (store) =>
                ReplayBuffer.makeRedis(store, {
                  size: resolved.recentBufferSize,
                  ttlMs: resolved.recentTTLMs,
                  keyPrefix: resolved.replayKeyPrefix ?? `${resolved.channel}:replay:`
                })
            }))
          : ReplayBuffer.makeMemory({
            size: resolved.recentBufferSize,
            ttlMs: resolved.recentTTLMs,
            maxUsers: resolved.recentMaxUsers,
            recordOffline: resolved.replayOffline
          })
    })
    return Context.make(ReplayBuffer.ReplayBuffer, replay).pipe(Context.add(Sequencer.Sequencer, sequencer))
  }))
