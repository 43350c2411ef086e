/**
 * The implementation behind the `SseKify` service: it wires the parts of the data flow
 * (DESIGN.md) and runs the operations of the API over them. Each part is its own
 * module: `events` (listeners, reporting), `registration` (checks, admission, headers,
 * `Last-Event-ID`, refusals, attach), `reconnect` (replay on connect), `prepare` (input
 * checks, auto fields, seq, frame ids, encode once), `delivery` (user / all / room, replay
 * recording), `bus` (publish and receive), `hub` / `writer` / `heartbeat` (the registry,
 * the write path and its bounded queue, the heartbeat tickers). Synchronous where the API
 * is synchronous; the Effect service wraps it.
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import type * as Envelope from "../Envelope.js"
import {
  BackpressureDisconnect,
  InvalidInput,
  type LimitExceeded,
  ShuttingDown,
  type SendError,
  type SseKifyError,
  type TransportError
} from "../Errors.js"
import * as Frame from "../Frame.js"
import type { ReplayBufferService } from "../ReplayBuffer.js"
import type { TransportService } from "../Transport.js"
import { Bus } from "./bus.js"
import { PublishOrder } from "./publishOrder.js"
import type { SinkResponse } from "./conn.js"
import { Delivery } from "./delivery.js"
import type {
  ConnectionHandle,
  NodeResponse,
  RegisterOptions,
  SendOptions,
  ShutdownOptions,
  SseKifyEvent,
  Stats
} from "./domain.js"
import { type EventName, Events } from "./events.js"
import { Hub } from "./hub.js"
import { type Ambient, Attr } from "./observe.js"
import { DEFAULTS, graceOf, type Resolved, type ResolvedConnection } from "./options.js"
import { isNonEmptyString, SendPrep } from "./prepare.js"
import type { ClusterAdmission } from "./presence.js"
import { Reconnect } from "./reconnect.js"
import { inert, Registration } from "./registration.js"
import { Routes } from "./routes.js"
import type { SequencerImpl } from "./sequencer.js"

export { isResponse, refuse } from "./registration.js"
export { warn } from "./events.js"

let instanceCounter = 0

export interface EngineDeps {
  readonly options: Resolved
  readonly transport: TransportService
  readonly replay: ReplayBufferService
  readonly sequencer: SequencerImpl
  readonly now: () => number
  /** Starts a repeating background ticker; returns its stop function. */
  readonly every: (ms: number, tick: () => void) => () => void
  /** Runs an effect in the background (replay lookups that are not synchronous). */
  readonly fork: (effect: Effect.Effect<void>) => void
  /** Runs an effect in the background, synchronously up to its first asynchronous step (routed subscribes). */
  readonly forkNow?: ((effect: Effect.Effect<void>) => void) | undefined
}

export class Engine {
  readonly instanceId: string
  readonly hub: Hub
  readonly options: Resolved
  readonly events = new Events()
  readonly registration: Registration
  shutdownStarted = false
  /** Set once the instance has shut down for good (after the grace period). */
  closedForGood = false
  private readonly prep: SendPrep
  private readonly delivery: Delivery
  private readonly reconnect: Reconnect
  private readonly bus: Bus
  /** Routed mode: the channels of the users and rooms held here. */
  readonly routes: Routes | undefined = undefined
  private readonly sequencer: SequencerImpl
  private readonly now: () => number
  /** Runs an effect in the instance's background. */
  private readonly fork: (effect: Effect.Effect<void>) => void
  private readonly replay: ReplayBufferService

  constructor(deps: EngineDeps) {
    this.options = deps.options
    this.replay = deps.replay
    this.now = deps.now
    this.fork = deps.fork
    const pid = typeof process === "object" ? process.pid : 0
    this.instanceId = deps.options.instanceId ??
      `${Math.random().toString(36).slice(2, 10)}${(instanceCounter++).toString(36)}-${pid}`
    const keepAliveEvent = deps.options.keepAliveEvent
    this.hub = new Hub({
      onDisconnect: (conn) => this.events.emit("disconnect", { userId: conn.userId, connId: conn.id }),
      onBackpressureDisconnect: (error) => this.events.report(error),
      onDrop: (conn, policy, frames) => {
        if (this.events.wants("drop")) this.events.emit("drop", { connId: conn.id, userId: conn.userId, policy, frames })
      },
      backpressureError: (conn) =>
        new BackpressureDisconnect({
          connId: conn.id,
          userId: conn.userId,
          queueItems: conn.count,
          queueBytes: conn.bytes
        }),
      every: deps.every,
      now: this.now,
      ping: keepAliveEvent === undefined
        ? Frame.ping
        : (now) => {
          const ping = Frame.ping(now)
          const named = Frame.message(String(now), { event: keepAliveEvent })
          return Buffer.concat([ping, named])
        }
    })
    this.prep = new SendPrep(deps.options, deps.sequencer, this.events, this.instanceId, this.now)
    this.delivery = new Delivery(this.hub, deps.replay, this.events)
    this.reconnect = new Reconnect(deps.options, deps.replay, this.hub.writer, this.events, deps.fork)
    this.registration = new Registration(deps.options, this.hub, this.events, this.prep, this.reconnect)
    // Not on the instance's runtime: a publish waiting when the instance shuts down must
    // still be sent or fail (a fiber forked on a closed runtime never runs, and its caller
    // would wait for ever); the sends need nothing from the context.
    const publishOrder = new PublishOrder((effect) => void Effect.runFork(effect, { immediate: true }))
    this.bus = new Bus(deps.options, deps.transport, this.instanceId, this.hub, this.prep, this.delivery, this.events, this.now, publishOrder)
    if (deps.transport.routed !== undefined) {
      this.routes = new Routes(deps.transport.routed, deps.options.channel, deps.forkNow ?? deps.fork, (error) => this.report(error))
      this.hub.routes = this.routes
    }
    this.sequencer = deps.sequencer
  }

  static readonly inert = inert

  // ---------------------------------------------------------------------------
  // events, registration: the parts' own methods
  // ---------------------------------------------------------------------------

  /** False after `stopAccepting()` / `shutdown()`. */
  get accepting(): boolean {
    return this.registration.accepting
  }

  set accepting(value: boolean) {
    this.registration.accepting = value
  }

  subscribe(listener: (event: SseKifyEvent) => void, wants?: (type: EventName) => boolean): () => void {
    return this.events.subscribe(listener, wants)
  }

  report(error: SseKifyError): void {
    this.events.report(error)
  }

  register(
    userId: unknown,
    res: NodeResponse,
    options: RegisterOptions | undefined
  ): Either.Either<ConnectionHandle, InvalidInput | ShuttingDown | LimitExceeded> {
    return this.registration.register(userId, res, options)
  }

  check(userId: unknown, options: RegisterOptions | undefined): Either.Either<ResolvedConnection, InvalidInput> {
    return this.registration.check(userId, options)
  }

  admit(userId: string): Either.Either<void, LimitExceeded> {
    return this.registration.admit(userId)
  }

  attach(userId: string, sink: SinkResponse, resolved: ResolvedConnection, lastEventId: string | undefined): ConnectionHandle {
    return this.registration.attach(userId, sink, resolved, lastEventId)
  }

  setAdmission(admission: ClusterAdmission | undefined): void {
    this.registration.setAdmission(admission)
  }

  closeConnection(connId: string, reason?: SseKifyError): boolean {
    return this.registration.closeConnection(connId, reason)
  }

  checkUserId(userId: unknown): InvalidInput | undefined {
    return this.prep.checkUserId(userId)
  }

  /** A message from the bus (see `Bus.receive`), in a span once accepted when the layer's tracer is not Effect's default. */
  receive(raw: string): void {
    if (!this.events.observe.tracing) return this.bus.receive(raw)
    const m = this.hub.metrics
    const sent = m.sent
    this.events.observe.receive(
      { [Attr.instanceId]: this.instanceId },
      () => this.bus.receive(raw),
      (span) => span.attribute(Attr.delivered, m.sent - sent)
    )
  }

  /** Routed mode: a message from a per-user or room channel (see `Bus.receiveRouted`). */
  receiveRouted(channel: string, raw: string): void {
    if (!this.events.observe.tracing) return this.bus.receiveRouted(channel, raw)
    const m = this.hub.metrics
    const sent = m.sent
    this.events.observe.receive(
      { [Attr.instanceId]: this.instanceId },
      () => this.bus.receiveRouted(channel, raw),
      (span) => span.attribute(Attr.delivered, m.sent - sent)
    )
  }

  // ---------------------------------------------------------------------------
  // sending
  // ---------------------------------------------------------------------------

  sendToUser(userId: unknown, data: unknown, opts?: SendOptions): number | SendError {
    if (this.closedForGood) return new ShuttingDown({ operation: "sendToUser" })
    const badUser = this.prep.checkUserId(userId)
    if (badUser !== undefined) return badUser
    const now = this.now()
    const p = this.prep.prepareLocal(data, opts, now)
    if (!("data" in p)) return p
    const e = this.prep.encode(p.data, p.event, p.id)
    if (!("frame" in e)) return e
    return this.delivery.user(userId as string, e.frame, p.id, false, this.prep.nextOrder(now))
  }

  sendToAll(data: unknown, opts?: SendOptions): number | SendError {
    if (this.closedForGood) return new ShuttingDown({ operation: "sendToAll" })
    const now = this.now()
    const p = this.prep.prepareLocal(data, opts, now)
    if (!("data" in p)) return p
    const e = this.prep.encode(p.data, p.event, p.id)
    if (!("frame" in e)) return e
    return this.delivery.all(e.frame, p.id, this.prep.nextOrder(now))
  }

  sendToRoom(room: unknown, data: unknown, opts?: SendOptions): number | SendError {
    if (this.closedForGood) return new ShuttingDown({ operation: "sendToRoom" })
    const badRoom = this.prep.checkRoom(room)
    if (badRoom !== undefined) return badRoom
    const members = this.hub.rooms.get(room as string)
    if (members === undefined || members.size === 0) return 0
    const now = this.now()
    const p = this.prep.prepareLocal(data, opts, now)
    if (!("data" in p)) return p
    const e = this.prep.encode(p.data, p.event, p.id)
    if (!("frame" in e)) return e
    return this.delivery.room(room as string, e.frame, p.id, this.prep.nextOrder(now))
  }

  /** The facade's form: failures become `'error'` events and a count of 0. */
  settle(result: number | SendError): number {
    return typeof result === "number" ? result : this.failed(result)
  }

  private failed(error: SendError): number {
    this.report(error)
    return 0
  }

  /**
   * Delivers locally at once, then publishes on the bus. Local delivery happens even
   * when the bus fails; the bus failure is then the result.
   */
  publish(
    type: Envelope.TargetType,
    target: string | undefined,
    data: unknown,
    opts: SendOptions | undefined,
    /** The caller's span and user (for `autoFields.traceId` and the reports' logs). */
    ambient?: Ambient
  ): Effect.Effect<void, SendError | TransportError | ShuttingDown> {
    const observe = this.events.observe
    return Effect.suspend(() => observe.within(ambient, (): Effect.Effect<void, SendError | TransportError | ShuttingDown> => {
      if (this.closedForGood) {
        return Effect.fail(new ShuttingDown({ operation: type === "room" ? "publishToRoom" : "publish" }))
      }
      // "everyone" is a separate type: a user or room target must be a valid id
      // (`''` / `null` never widen a message to everyone)
      const badTarget = type === "all" ? undefined : type === "room" ? this.prep.checkRoom(target) : this.prep.checkUserId(target)
      if (badTarget !== undefined) return Effect.fail(badTarget)
      return Effect.flatMap(this.prep.prepareGlobal(data, opts, this.now()), (p): Effect.Effect<void, SendError | TransportError> => {
        const e = this.prep.encode(p.data, p.event, p.id)
        if (!("frame" in e)) return Effect.fail(e)
        const order = this.prep.nextOrder(this.now())
        if (type === "all") this.delivery.all(e.frame, p.id, order)
        else if (type === "user") this.delivery.user(target!, e.frame, p.id, true, order)
        else this.delivery.room(target!, e.frame, p.id, order)
        if (!this.bus.enabled) return Effect.void
        // a shared replay store: the frame recorded for the user is in the store before the
        // message is on the bus (an instance subscribing to the user meanwhile finds it there)
        const recorded = type === "user" && p.id !== undefined && this.replay.enabled ? this.replay.recorded?.() : undefined
        return this.bus.publish(type, target, p, e, order, recorded)
      })
    })).pipe(Effect.tapError((error) => Effect.sync(() => observe.within(ambient, () => this.report(error)))))
  }

  // ---------------------------------------------------------------------------
  // closing, stats and lifecycle
  // ---------------------------------------------------------------------------

  /**
   * Closes a user's connections, or every connection when `userId` is `undefined`
   * (omitted). Any other value that is not a user id (`''`, `null`, a number) is an
   * `InvalidInput` and closes nothing.
   */
  close(userId?: unknown): InvalidInput | undefined {
    if (userId === undefined) {
      for (const conn of Array.from(this.hub.conns.values())) this.hub.remove(conn, true)
      return undefined
    }
    const bad = this.checkUserId(userId)
    if (bad !== undefined) return bad
    for (const conn of Array.from(this.hub.connectionsOf(userId as string))) this.hub.remove(conn, true)
    return undefined
  }

  stats(): Stats {
    const m = this.hub.metrics
    const s = this.sequencer.counters
    return {
      connections: this.hub.conns.size,
      users: this.hub.users.size,
      rooms: this.hub.rooms.size,
      sent: m.sent,
      droppedOldest: m.droppedOldest,
      droppedNewest: m.droppedNewest,
      disconnectedByBackpressure: m.disconnectedByBackpressure,
      queueItemsMax: m.queueItemsMax,
      queueBytesMax: m.queueBytesMax,
      errorCount: this.events.errorCount,
      seqIncrsLocal: s.seqIncrsLocal,
      seqIncrsRedis: s.seqIncrsRedis,
      lastSeqKvFallbackAt: s.lastSeqKvFallbackAt,
      replayed: this.reconnect.replayed,
      replayMisses: this.reconnect.replayMisses,
      published: this.bus.published,
      received: this.bus.received,
      busRejected: this.bus.busRejected,
      accepting: this.accepting
    }
  }

  userConnectionIds(userId: unknown): Array<string> {
    if (!isNonEmptyString(userId)) return []
    return this.hub.connectionsOf(userId).map((conn) => conn.id)
  }

  userConnectionCount(userId: unknown): number {
    return isNonEmptyString(userId) ? this.hub.userConnectionCount(userId) : 0
  }

  allUsersConnectionStats(): Record<string, number> {
    const out: Record<string, number> = {}
    for (const [userId, entry] of this.hub.users) {
      const n = Array.isArray(entry) ? entry.length : 1
      // `out.__proto__ = n` would set the prototype, not add the user
      if (userId === "__proto__") Object.defineProperty(out, userId, { value: n, enumerable: true, writable: true, configurable: true })
      else out[userId] = n
    }
    return out
  }

  stopAccepting(): void {
    this.accepting = false
  }

  /**
   * The shutdown the instance's layer runs when its scope closes (`LayerOptions.shutdown`),
   * also run by {@link shutdownInBackground}.
   */
  layerShutdown: ShutdownOptions | undefined = undefined

  /**
   * Stop accepting, announce, wait the grace period, close every connection. The
   * caller then releases the transport and timers (closing the layer's scope).
   *
   * The grace period is skipped when no connection is open and ends as soon as the
   * last one is gone. A second call while one runs does not announce again: it waits
   * for the connections and closes them.
   */
  shutdown(options: ShutdownOptions | undefined): Effect.Effect<void> {
    return Effect.suspend(() => {
      const announce = options?.announce ?? true
      const event = options?.event ?? DEFAULTS.shutdownEvent
      const graceMs = this.graceOf(options)
      const again = this.shutdownStarted
      this.shutdownStarted = true
      this.accepting = false
      if (announce && !again && this.hub.conns.size > 0) {
        this.settle(this.sendToAll({ code: "SHUTDOWN", at: this.now() }, { event }))
      }
      return Effect.andThen(
        graceMs > 0 && this.hub.conns.size > 0
          // Each side interruptible so the loser stops, even inside a finalizer.
          ? Effect.raceFirst(Effect.interruptible(Effect.sleep(graceMs)), Effect.interruptible(this.allGone))
          : Effect.void,
        Effect.sync(() => {
          this.close()
          this.hub.stopTickers()
          this.closedForGood = true
        })
      )
    })
  }

  /**
   * The grace period of a shutdown. An invalid one (the layer's was checked when it
   * was built) is reported as an `InvalidInput` and the default used: a shutdown runs.
   */
  private graceOf(options: ShutdownOptions | undefined): number {
    try {
      return graceOf(options)
    } catch (e) {
      if (!(e instanceof InvalidInput)) throw e
      this.report(e)
      return DEFAULTS.shutdownGraceMs
    }
  }

  /** Completes when no connection is open (at once when none is). */
  private readonly allGone: Effect.Effect<void> = Effect.async<void>((resume) => {
    if (this.hub.conns.size === 0) return resume(Effect.void)
    const unsubscribe = this.subscribe(() => {
      if (this.hub.conns.size === 0) resume(Effect.void)
    }, (type) => type === "disconnect")
    return Effect.sync(unsubscribe)
  })

  /**
   * Runs the layer's shutdown ({@link layerShutdown}) in the instance's background
   * (when the HTTP server the connections live on starts closing): once.
   */
  shutdownInBackground(): void {
    if (this.shutdownStarted) return
    this.fork(this.shutdown(this.layerShutdown))
  }
}
