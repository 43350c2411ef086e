/**
 * The drop-in `SSEKify` class: the documented imperative API of the original ssekify
 * 0.1.6 and its `EventEmitter` events, over the Effect services (one `ManagedRuntime`
 * per instance).
 *
 * ```js
 * const { SSEKify } = require('ssekify')
 * const sse = new SSEKify({ keepAliveMs: 15000, retryMs: 2000, recentBufferSize: 20 })
 * app.get('/sse', (req, res) => sse.registerConnection(String(req.query.userId), res, { rooms: ['global'] }))
 * sse.sendToUser('alice', { hello: 'world' }, { event: 'notify' })
 * ```
 *
 * @since 0.2.0
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as ManagedRuntime from "effect/ManagedRuntime"
import { EventEmitter } from "node:events"
import type { ServerResponse } from "node:http"
import type { Http2ServerResponse } from "node:http2"
import type { ConnectionHandle, NodeResponse, RegisterOptions } from "./Connection.js"
import {
  type AdapterError,
  InvalidInput,
  RequestIdRequired,
  type SendError,
  ShuttingDown,
  type SseKifyError,
  TransportError
} from "./Errors.js"
import { warn } from "./internal/events.js"
import { SERVICE_KEY } from "./internal/metrics.js"
import {
  badUserId,
  codeOf,
  inert,
  isAdapterError,
  isTagged,
  messageOf,
  requireRedisTransport,
  transportLayer,
  unwrapDefect
} from "./internal/facade.js"
import { resolve as resolveOptions } from "./internal/options.js"
import { make as makeService } from "./internal/sseKify.js"
import { isResponse } from "./internal/registration.js"
import type { ClusterQuery, InstanceQuery } from "./Presence.js"
import {
  layerStores,
  type Options,
  type SendOptions,
  type ShutdownOptions,
  SseKify,
  type SseKifyEventMap,
  type SseKifyService,
  type Stats
} from "./SseKify.js"
import * as Transport from "./Transport.js"

/**
 * Options of `new SSEKify(options)`: the instance options plus the bus.
 *
 * @since 0.2.0
 * @category models
 */
export interface SSEKifyOptions extends Options {
  /**
   * Cross-instance bus: a Redis URL (`redis://user:pass@host:6379/0`, needs
   * `ioredis`), or any `RedisLike` adapter (`createIORedisAdapter(url)`, your own, or
   * `createMemoryBus().adapter()` for tests). Omitted: this instance only.
   */
  readonly redis?: Transport.RedisLike | string | undefined
  /**
   * How messages cross the bus: `'channel'` (the default: one shared channel, readable
   * by 0.1.6 instances during a rolling upgrade) or `'user'` (per-user and per-room
   * channels, each instance receives only what its users and rooms need; sharded Pub/Sub
   * on a Redis Cluster, Redis ≥ 7). `'user'` needs `redis` to be a Redis URL or a
   * `createIORedisAdapter(...)` adapter (given to the adapter, `routing` works too).
   *
   * @since 0.3.0
   */
  readonly routing?: Transport.Routing | undefined
}

/**
 * @since 0.2.0
 * @category models
 */
export type { ConnectionHandle as RegisteredConnectionHandle, RegisterOptions, SendOptions, ShutdownOptions, Stats }

/**
 * The events of {@link SSEKify}, by name: those of the service, except that an
 * `'error'` may also be a `RedisLike` adapter's own error object, re-emitted as is (as
 * 0.1.6 did; see {@link AdapterError}). Every payload of `'error'` has a `code`
 * (`e.code`): one of the library's codes, or the adapter's own (e.g. `ECONNREFUSED`)
 * or `undefined` for an adapter error without one. `isSseKifyError(e)` tells them apart.
 *
 * @since 0.2.0
 * @category models
 */
export interface SSEKifyEventMap extends Omit<SseKifyEventMap, "error"> {
  readonly error: SseKifyError | AdapterError
}

type Listener<K extends keyof SSEKifyEventMap> = (payload: SSEKifyEventMap[K]) => void

/**
 * The typed events of {@link SSEKify}.
 *
 * @since 0.2.0
 * @category models
 */
export interface SSEKify {
  on<K extends keyof SSEKifyEventMap>(event: K, listener: Listener<K>): this
  on(event: string | symbol, listener: (...args: Array<any>) => void): this
  once<K extends keyof SSEKifyEventMap>(event: K, listener: Listener<K>): this
  once(event: string | symbol, listener: (...args: Array<any>) => void): this
  off<K extends keyof SSEKifyEventMap>(event: K, listener: Listener<K>): this
  off(event: string | symbol, listener: (...args: Array<any>) => void): this
  addListener<K extends keyof SSEKifyEventMap>(event: K, listener: Listener<K>): this
  addListener(event: string | symbol, listener: (...args: Array<any>) => void): this
  removeListener<K extends keyof SSEKifyEventMap>(event: K, listener: Listener<K>): this
  removeListener(event: string | symbol, listener: (...args: Array<any>) => void): this
  emit<K extends keyof SSEKifyEventMap>(event: K, payload: SSEKifyEventMap[K]): boolean
  emit(event: string | symbol, ...args: Array<any>): boolean
}

/**
 * A Server-Sent Events hub: connections per user and room, delivery, replay,
 * backpressure, and an optional Redis bus. Events: `'connect'`, `'disconnect'`,
 * `'publish'`, `'message-sent'`, `'drop'`, `'error'`.
 *
 * @since 0.2.0
 * @category constructors
 */
export class SSEKify extends EventEmitter {
  /** This instance's id on the bus (messages it published are not delivered twice). */
  readonly instanceId: string
  /** The bus channel. */
  readonly channel: string
  readonly #runtime: ManagedRuntime.ManagedRuntime<SseKify, InvalidInput>
  readonly #service: SseKifyService
  #shutdown: Promise<void> | undefined
  /** Set once `shutdown()` has closed the instance for good (the runtime is released). */
  #closed = false
  /** Forwarding an engine event (its errors are counted by the engine). */
  #forwarding = false
  /** `'error'` events emitted by the application (e.g. a forwarded adapter error). */
  #externalErrors = 0
  /** The instance's own `'error'` listener (counts what the application emits). */
  readonly #ownErrorListener: () => void
  /** Error codes already printed as a process warning (no `'error'` listener). */
  readonly #warned = new Set<string>()

  /**
   * @throws InvalidInput when an option has the wrong type or range.
   */
  constructor(options?: SSEKifyOptions) {
    super()
    // Like the original: 'error' always has a listener (emitting it never throws) and
    // every 'error' counts in stats().errorCount, also those the application emits.
    this.#ownErrorListener = () => {
      if (!this.#forwarding) this.#externalErrors++
    }
    this.on("error", this.#ownErrorListener)
    // Option errors are thrown here, synchronously and before anything is opened.
    const resolved = resolveOptions(options)
    requireRedisTransport(options)
    // The backends from the options: the bus (and the stores it offers) under the
    // default stores, under the service.
    const layer = Layer.scoped(SseKify, makeService(options, { unrefTimers: true, noLogs: true })).pipe(
      Layer.provide(layerStores(options).pipe(Layer.provideMerge(transportLayer(options?.redis, options?.routing))))
    )
    this.#runtime = ManagedRuntime.make(layer)
    try {
      this.#service = this.#runtime.runSync(SseKify)
    } catch (e) {
      throw unwrapDefect(e)
    }
    // For `ssekify/prometheus` and `Metrics` (any bundle: a `Symbol.for` key).
    Object.defineProperty(this, SERVICE_KEY, { value: this.#service })
    this.instanceId = this.#service.instanceId
    this.channel = resolved.channel
    // Only events someone listens to are built and forwarded (no payload per send
    // for an unobserved 'message-sent').
    this.#service.unsafeSubscribe((event) => {
      if (event.type === "error") return this.#forwardError(event.payload)
      this.#forwarding = true
      try {
        this.emit(event.type, event.payload)
      } finally {
        this.#forwarding = false
      }
    }, (type) => type === "error" || this.listenerCount(type) > 0)
  }

  /**
   * An error for the `'error'` listeners. What a `RedisLike` adapter reported on its
   * own `'error'` event goes out as the adapter's object, as in 0.1.6 (the Effect API
   * keeps the `TransportError` around it), when it is an {@link AdapterError} (an
   * `Error` whose `code` is a string or absent: what the event's type promises);
   * anything else goes out as the `TransportError`. With no `'error'` listener of the
   * application, the first error of each `code` is printed as a process warning
   * (`SsekifyWarning`): never thrown, never silent.
   */
  #forwardError(error: SseKifyError): void {
    const payload: SSEKifyEventMap["error"] = error instanceof TransportError && error.operation === "adapter" && isAdapterError(error.cause)
      ? error.cause
      : error
    const listeners = this.rawListeners("error")
    if (!listeners.some((listener) => listener !== this.#ownErrorListener)) {
      const code = codeOf(payload)
      if (!this.#warned.has(code)) {
        this.#warned.add(code)
        warn(`${messageOf(payload)} (no 'error' listener on this SSEKify instance; later ${code} errors are not printed)`, code)
      }
      if (listeners.length === 0) return
    }
    this.#forwarding = true
    try {
      this.emit("error", payload)
    } finally {
      this.#forwarding = false
    }
  }

  /**
   * Turns `res` into an SSE connection for `userId`: sets the SSE headers (plus
   * `options.headers`), writes `retry:`, starts heartbeats, replays what the client
   * missed after `Last-Event-ID`. Do not write to `res` before, nor `res.end()` after.
   * `res` may be an HTTP/2 response (`node:http2`, compat API): no `Connection` header.
   * While not accepting, the request gets 503 + `Retry-After` and the handle's
   * `connId` is `''`. A response is registered once: registering it again is an
   * `INVALID_INPUT` `'error'` (field `res`) with an inert handle, and the connection
   * made first is left as it is.
   */
  registerConnection(userId: string, res: ServerResponse | Http2ServerResponse, options?: RegisterOptions): ConnectionHandle {
    const result = this.#service.unsafeRegisterConnection(userId, res as unknown as NodeResponse, options)
    if (result._tag === "Right") return result.right
    const error = result.left
    if (!isResponse(res)) throw error
    if (!(error instanceof ShuttingDown)) this.#service.unsafeReport(error)
    return inert
  }

  /** Sends to `userId`'s connections on this instance; returns how many got it. */
  sendToUser(userId: string, data: unknown, opts?: SendOptions): number {
    return this.#sync(this.#service.unsafeSendToUser(userId, data, opts))
  }

  /** Sends to every connection on this instance (use `publish` to reach all instances). */
  sendToAll(data: unknown, opts?: SendOptions): number {
    return this.#sync(this.#service.unsafeSendToAll(data, opts))
  }

  /** Sends to the connections of `room` on this instance. */
  sendToRoom(room: string, data: unknown, opts?: SendOptions): number {
    return this.#sync(this.#service.unsafeSendToRoom(room, data, opts))
  }

  #sync(result: number | SendError): number {
    if (typeof result === "number") return result
    this.#service.unsafeReport(result)
    if (result instanceof RequestIdRequired) throw result
    return 0
  }

  /**
   * Delivers locally at once and publishes on the bus: to `userId` on every
   * instance, or to everyone when `userId` is omitted (`undefined`). Rejects when the
   * bus fails (local delivery has happened), on invalid input (`''`, `null` or a
   * non-string `userId`, bad options: nothing is sent) and when `autoFields.requestId`
   * is required and missing; a payload that cannot be serialized or is too large, or a
   * callback of the options that throws, is skipped with an `'error'` event.
   */
  publish(data: unknown, userId?: string, opts?: SendOptions): Promise<void> {
    return this.#async(this.#service.publish(data, userId, opts))
  }

  /** Delivers locally at once and publishes to `room` on every instance. */
  publishToRoom(room: string, data: unknown, opts?: SendOptions): Promise<void> {
    return this.#async(this.#service.publishToRoom(room, data, opts))
  }

  #async(effect: Effect.Effect<void, unknown>): Promise<void> {
    if (this.#closed) {
      const error = new ShuttingDown({ operation: "publish" })
      this.#service.unsafeReport(error)
      return Promise.reject(error)
    }
    return this.#runtime.runPromise(
      Effect.catchIf(
        effect,
        (e): e is SendError =>
          isTagged(e) && (e._tag === "SerializeFailed" || e._tag === "PayloadTooLarge" || e._tag === "CallbackFailed"),
        () => Effect.void
      )
    ).catch((e: unknown) => {
      throw unwrapDefect(e)
    })
  }

  /**
   * Resolves when the bus subscription is confirmed (at once without Redis). Messages
   * published by other instances before that are not received. Never rejects: a
   * failed subscription is an `'error'` event (and ioredis keeps trying).
   */
  ready(): Promise<void> {
    return this.#runtime.runPromise(this.#service.ready)
  }

  /**
   * Closes `userId`'s connections, or every connection when omitted (`undefined`).
   * `''`, `null` or a non-string close nothing and are an `'error'` (`INVALID_INPUT`).
   */
  close(userId?: string): void {
    // the service reports an invalid id (and fails: nothing more to do here)
    Effect.runSync(Effect.ignore(this.#service.close(userId)))
  }

  /** Basic metrics (see {@link Stats}). */
  stats(): Stats {
    const stats = Effect.runSync(this.#service.stats)
    return this.#externalErrors === 0 ? stats : { ...stats, errorCount: stats.errorCount + this.#externalErrors }
  }

  /**
   * Forgets the replay buffer of `userId`, or of everyone when omitted (`undefined`).
   * `''`, `null` or a non-string clear nothing and are an `'error'` (`INVALID_INPUT`);
   * after `shutdown()`, a `SHUTTING_DOWN` error.
   */
  clearRecent(userId?: string): void {
    if (this.#closed) {
      const bad = userId === undefined ? undefined : badUserId(userId)
      return this.#service.unsafeReport(bad ?? new ShuttingDown({ operation: "clearRecent" }))
    }
    // an invalid id is reported by the service at once (the fiber runs synchronously
    // up to the store's first asynchronous step)
    this.#runtime.runFork(this.#service.clearRecent(userId), { immediate: true })
  }

  /**
   * Active connections of `userId` on this instance (0 for an unknown or invalid id).
   * With `{ scope: 'cluster' }` (needs the `presence` option): on every instance, from
   * Redis, as a promise (rejects with `TransportError` when Redis is away).
   */
  getUserConnectionCount(userId: string, query?: InstanceQuery): number
  getUserConnectionCount(userId: string, query: ClusterQuery): Promise<number>
  getUserConnectionCount(userId: string, query?: InstanceQuery | ClusterQuery): number | Promise<number> {
    if (query?.scope === "cluster") return this.#cluster(this.#service.getUserConnectionCount(userId, { scope: "cluster" }))
    return Effect.runSync(this.#service.getUserConnectionCount(userId))
  }

  #cluster<A>(effect: Effect.Effect<A, unknown>): Promise<A> {
    return this.#runtime.runPromise(effect).catch((e: unknown) => {
      throw unwrapDefect(e)
    })
  }

  /** Ids of `userId`'s active connections. */
  getUserConnectionIds(userId: string): Array<string> {
    return Array.from(Effect.runSync(this.#service.getUserConnectionIds(userId)))
  }

  /** `{ userId: connections }` for every connected user. */
  getAllUsersConnectionStats(): Record<string, number> {
    return Effect.runSync(this.#service.getAllUsersConnectionStats)
  }

  /**
   * Whether `userId` has at least one active connection on this instance; with
   * `{ scope: 'cluster' }` (needs `presence`), on any instance, as a promise.
   */
  isUserOnline(userId: string, query?: InstanceQuery): boolean
  isUserOnline(userId: string, query: ClusterQuery): Promise<boolean>
  isUserOnline(userId: string, query?: InstanceQuery | ClusterQuery): boolean | Promise<boolean> {
    if (query?.scope === "cluster") return this.#cluster(this.#service.isUserOnline(userId, { scope: "cluster" }))
    return Effect.runSync(this.#service.isUserOnline(userId))
  }

  /** New connections get 503 + `Retry-After`; open connections stay. */
  stopAccepting(): void {
    Effect.runSync(this.#service.stopAccepting)
  }

  /**
   * Graceful shutdown: stop accepting, announce `{ code: 'SHUTDOWN', at }` under
   * `event`, wait `graceMs`, close every connection, close the bus (the adapter's
   * `close()`), stop every timer. Calling it again returns the same promise.
   */
  shutdown(options?: ShutdownOptions): Promise<void> {
    if (this.#shutdown === undefined) {
      const graceMs = options?.graceMs
      const safe: ShutdownOptions = {
        ...options,
        graceMs: typeof graceMs === "number" && Number.isFinite(graceMs) ? Math.max(0, graceMs) : undefined
      }
      this.#shutdown = this.#runtime.runPromise(this.#service.shutdown(safe)).then(() => {
        this.#closed = true
        return this.#runtime.dispose()
      })
    }
    return this.#shutdown
  }
}
