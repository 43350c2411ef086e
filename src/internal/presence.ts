/**
 * Cluster-wide presence: keeps this instance's connections in the Redis presence
 * store (see `Presence.ts` and `internal/redis/presence.ts`), refreshes them with one
 * ticker, answers cluster-wide queries and, with `connectionLimitScope: 'cluster'`,
 * admits registrations against the cluster-wide `maxConnectionsPerUser`.
 *
 * Writes are batched per tick (connects and disconnects of one tick leave together);
 * a connection that comes and goes within one tick costs nothing in Redis. Failed
 * writes are reported once per outage (the next success re-arms the report); the
 * heartbeat re-adds what Redis lost (a restart) and expiry removes what a failed
 * removal left.
 */
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import type { ConnectionHandle, NodeResponse } from "./domain.js"
import { InvalidInput, LimitExceeded, type TransportError } from "../Errors.js"
import * as Presence from "../Presence.js"
import type { PresenceHost } from "./presenceHost.js"
import type { ResolvedPresence } from "./presenceOptions.js"

export type { ClusterAdmission, PresenceHost } from "./presenceHost.js"
interface Entry {
  readonly userId: string
  readonly connId: string
  readonly key: string
}

type Batch = Map<string, Array<string>>

const push = (batch: Batch, key: string, member: string) => {
  const list = batch.get(key)
  if (list === undefined) batch.set(key, [member])
  else list.push(member)
}

const isOpen = (res: NodeResponse): boolean => res.destroyed !== true && res.writableEnded !== true

export interface TrackerDeps {
  readonly engine: PresenceHost
  readonly store: Presence.PresenceStore
  readonly options: ResolvedPresence
  readonly channel: string
  readonly connectionLimitScope: Presence.ConnectionLimitScope
  readonly maxConnectionsPerUser: number
  readonly closeOldest: boolean
  readonly every: (ms: number, tick: () => void) => () => void
  readonly now: () => number
  /** Ends a refused registration (status, Retry-After). */
  readonly refuse: (res: NodeResponse, status: number, body: string, retryAfter: boolean) => void
}

export class PresenceTracker {
  readonly ttlMs: number
  private readonly prefix: string
  /** connId → member, per user (this instance's connections). */
  private readonly byUser = new Map<string, Map<string, string>>()
  private readonly byMember = new Map<string, Entry>()
  private adds: Batch = new Map()
  private removes: Batch = new Map()
  private flushScheduled = false
  private beating = false
  private failing = false
  private readonly inFlight = new Set<Promise<unknown>>()
  private readonly stopTicker: () => void
  private readonly unsubscribe: () => void
  private closed = false
  /**
   * Admitted by `admitLater`, not attached yet: in Redis (with the TTL) but not refreshed
   * until its 'connect'; given back by `cancelAdmission`, forgotten after `ttlMs`.
   */
  private readonly admittedLater = new Map<string, { readonly userId: string; readonly member: string; readonly at: number }>()

  constructor(private readonly deps: TrackerDeps) {
    this.ttlMs = deps.options.ttlMs
    this.prefix = deps.options.keyPrefix ?? `${deps.channel}:presence:`
    this.unsubscribe = deps.engine.subscribe((event) => {
      if (event.type === "connect") this.onConnect(event.payload.userId, event.payload.connId)
      else if (event.type === "disconnect") this.onDisconnect(event.payload.userId, event.payload.connId)
    })
    this.stopTicker = deps.every(deps.options.heartbeatMs, () => this.beat())
    if (deps.connectionLimitScope === "cluster" && deps.maxConnectionsPerUser > 0) {
      deps.engine.setAdmission({
        now: (userId, res, connId, open) => this.admit(userId, res, connId, open),
        later: (userId, connId) => this.admitLater(userId, connId),
        cancel: (connId) => this.cancelAdmission(connId)
      })
    }
  }

  keyOf(userId: string): string {
    return this.prefix + userId
  }

  private memberOf(connId: string): string {
    return `${String(this.deps.now()).padStart(13, "0")}|${this.deps.engine.instanceId}|${connId}`
  }

  private record(userId: string, connId: string, member: string): void {
    let conns = this.byUser.get(userId)
    if (conns === undefined) this.byUser.set(userId, conns = new Map())
    conns.set(connId, member)
    this.byMember.set(member, { userId, connId, key: this.keyOf(userId) })
  }

  private onConnect(userId: string, connId: string): void {
    if (this.byUser.get(userId)?.has(connId) === true) return // admitted: already in Redis
    const admitted = this.admittedLater.get(connId)
    if (admitted !== undefined && admitted.userId === userId) {
      // admitted by `admitLater`: in Redis already, kept alive from now on
      this.admittedLater.delete(connId)
      this.record(userId, connId, admitted.member)
      return
    }
    const member = this.memberOf(connId)
    this.record(userId, connId, member)
    push(this.adds, this.keyOf(userId), member)
    this.schedule()
  }

  private onDisconnect(userId: string, connId: string): void {
    const conns = this.byUser.get(userId)
    const member = conns?.get(connId)
    if (conns === undefined || member === undefined) return
    conns.delete(connId)
    if (conns.size === 0) this.byUser.delete(userId)
    const entry = this.byMember.get(member)!
    this.byMember.delete(member)
    const pending = this.adds.get(entry.key)
    const i = pending === undefined ? -1 : pending.indexOf(member)
    if (i >= 0) {
      pending!.splice(i, 1) // never written
      if (pending!.length === 0) this.adds.delete(entry.key)
      return
    }
    push(this.removes, entry.key, member)
    this.schedule()
  }

  private schedule(): void {
    if (this.flushScheduled) return
    this.flushScheduled = true
    process.nextTick(() => this.flush())
  }

  /** Writes this tick's adds and removes. */
  flush(): void {
    this.flushScheduled = false
    if (this.removes.size > 0) {
      const entries = Array.from(this.removes)
      this.removes = new Map()
      this.run(this.deps.store.remove(entries), () => {})
    }
    if (this.adds.size > 0) {
      const entries = Array.from(this.adds)
      this.adds = new Map()
      this.run(this.deps.store.beat(entries, this.ttlMs), (evicted) => this.evict(evicted))
    }
  }

  /** One heartbeat: refreshes every connection of this instance (skipped while the last one is unanswered). */
  beat(): void {
    if (this.admittedLater.size > 0) {
      const expired = this.deps.now() - this.ttlMs
      for (const [connId, admitted] of this.admittedLater) if (admitted.at < expired) this.admittedLater.delete(connId)
    }
    if (this.beating || this.closed || this.byUser.size === 0) return
    const entries: Array<readonly [string, ReadonlyArray<string>]> = []
    for (const [userId, conns] of this.byUser) entries.push([this.keyOf(userId), Array.from(conns.values())])
    this.beating = true
    this.run(this.deps.store.beat(entries, this.ttlMs), (evicted) => this.evict(evicted), () => {
      this.beating = false
    })
  }

  /** Closes this instance's connections that another instance evicted (policy `closeOldest`). */
  private evict(members: ReadonlyArray<string>, report = true): void {
    for (const member of members) {
      const entry = this.byMember.get(member)
      if (entry === undefined) continue
      this.deps.engine.closeConnection(entry.connId, report ? this.limitError(entry.userId) : undefined)
    }
  }

  private limitError(userId: string): LimitExceeded {
    return new LimitExceeded({ limit: "maxConnectionsPerUser", value: this.deps.maxConnectionsPerUser, userId, scope: "cluster" })
  }

  private run<A>(effect: Effect.Effect<A, TransportError>, onSuccess: (a: A) => void, always?: () => void): void {
    const promise = Effect.runPromiseExit(effect).then((exit) => {
      this.inFlight.delete(promise)
      always?.()
      if (Exit.isSuccess(exit)) {
        this.failing = false
        onSuccess(exit.value)
        return
      }
      if (!this.failing) {
        this.failing = true
        const error = Option.getOrUndefined(Exit.causeOption(exit).pipe(Option.flatMap((c) => Option.fromNullable(squashFail(c)))))
        if (error !== undefined) this.deps.engine.report(error)
      }
    })
    this.inFlight.add(promise)
  }

  /**
   * A registration under the cluster-wide cap: admitted by Redis first, then opened
   * (headers, `retry:`, 'connect'); refused with 429 before any SSE header.
   */
  admit(userId: string, res: NodeResponse, connId: string, open: () => ConnectionHandle): ConnectionHandle {
    // what this tick removed (e.g. the local 'closeOldest' just now) reaches Redis first:
    // commands on one connection run in order, so the admission counts without them
    this.flush()
    const key = this.keyOf(userId)
    const member = this.memberOf(connId)
    let handle: ConnectionHandle | undefined
    let cancelled = false
    const rooms: Array<string> = []
    const engine = this.deps.engine
    const settle = (exit: Exit.Exit<Presence.Admission, TransportError>) => {
      const admitted = Exit.isSuccess(exit) && exit.value.admitted
      if (cancelled || !isOpen(res) || !engine.accepting) {
        if (admitted) {
          push(this.removes, key, member)
          this.schedule()
        }
        if (!engine.accepting && isOpen(res)) this.deps.refuse(res, 503, "Server is shutting down", true)
        return
      }
      if (Exit.isFailure(exit)) {
        // Redis did not answer: fail open (the local cap still held), tell the application
        const error = squashFail(exit.cause)
        if (error !== undefined) engine.report(error)
        handle = open() // 'connect' adds it to Redis
      } else if (!exit.value.admitted) {
        engine.report(this.limitError(userId))
        this.deps.refuse(res, 429, "Too many connections for this user", false)
        return
      } else {
        this.record(userId, connId, member)
        handle = open()
        this.evict(exit.value.evicted, false)
        if (exit.value.evicted.length > 0) engine.report(this.limitError(userId))
      }
      for (const room of rooms) handle.join(room)
    }
    const promise = Effect.runPromiseExit(
      this.deps.store.admit(key, member, this.ttlMs, this.deps.maxConnectionsPerUser, this.deps.closeOldest)
    ).then((exit) => {
      this.inFlight.delete(promise)
      settle(exit)
    })
    this.inFlight.add(promise)
    return {
      connId,
      close: () => {
        if (handle !== undefined) return handle.close()
        if (cancelled) return
        cancelled = true
        try {
          if (isOpen(res)) res.end()
        } catch {
          // gone
        }
      },
      join: (room: string) => {
        if (handle !== undefined) return handle.join(room)
        if (cancelled || typeof room !== "string" || room.length === 0) return false
        if (!rooms.includes(room)) rooms.push(room)
        return true
      },
      leave: (room: string) => {
        if (handle !== undefined) return handle.leave(room)
        const i = rooms.indexOf(room)
        if (i >= 0) rooms.splice(i, 1)
        return !cancelled && typeof room === "string" && room.length > 0
      }
    }
  }

  /**
   * The cluster's admission for an endpoint that attaches later (the platform's): waits
   * for Redis; admitted, the connection is counted there and must attach with `connId`
   * (its 'connect' keeps it alive) or be cancelled. Redis not answering: admitted (the
   * local cap held), the error reported. Refused: fails with the cluster's
   * `LimitExceeded` (the caller reports it).
   */
  admitLater(userId: string, connId: string): Effect.Effect<void, LimitExceeded> {
    return Effect.suspend(() => {
      this.flush()
      const key = this.keyOf(userId)
      const member = this.memberOf(connId)
      return Effect.flatMap(
        Effect.exit(this.deps.store.admit(key, member, this.ttlMs, this.deps.maxConnectionsPerUser, this.deps.closeOldest)),
        (exit): Effect.Effect<void, LimitExceeded> => {
          if (Exit.isFailure(exit)) {
            const error = squashFail(exit.cause)
            if (error !== undefined) this.deps.engine.report(error)
            return Effect.void
          }
          if (!exit.value.admitted) return Effect.fail(this.limitError(userId))
          this.admittedLater.set(connId, { userId, member, at: this.deps.now() })
          this.evict(exit.value.evicted, false)
          if (exit.value.evicted.length > 0) this.deps.engine.report(this.limitError(userId))
          return Effect.void
        }
      )
    })
  }

  /** An admission of `admitLater` that will not attach: removed from Redis. */
  cancelAdmission(connId: string): void {
    const admitted = this.admittedLater.get(connId)
    if (admitted === undefined) return
    this.admittedLater.delete(connId)
    push(this.removes, this.keyOf(admitted.userId), admitted.member)
    this.schedule()
  }

  /** Live connections of `userId` on every instance. */
  count(userId: string): Effect.Effect<number, TransportError> {
    return this.deps.store.count(this.keyOf(userId))
  }

  /** Writes what is pending, waits (at most `timeoutMs`) for the writes in flight, stops. */
  close(timeoutMs: number): Effect.Effect<void> {
    return Effect.promise(async () => {
      this.flush()
      this.closed = true
      this.stopTicker()
      this.deps.engine.setAdmission(undefined)
      if (this.inFlight.size > 0) {
        let timer: ReturnType<typeof setTimeout> | undefined
        await Promise.race([
          Promise.allSettled(Array.from(this.inFlight)),
          new Promise<void>((resolve) => {
            timer = setTimeout(resolve, timeoutMs)
          })
        ])
        clearTimeout(timer)
      }
      this.unsubscribe()
    })
  }
}

const squashFail = (cause: import("effect/Cause").Cause<TransportError>): TransportError | undefined => {
  let found: TransportError | undefined
  const walk = (c: import("effect/Cause").Cause<TransportError>): void => {
    if (found !== undefined) return
    if (c._tag === "Fail") found = c.error
    else if (c._tag === "Sequential" || c._tag === "Parallel") {
      walk(c.left)
      walk(c.right)
    }
  }
  walk(cause)
  return found
}

/**
 * Starts presence for an engine when the options ask for it: needs a presence store
 * (`Presence.Store` in the context) (`InvalidInput` otherwise). The scope stops it (after the
 * connections were closed: the caller acquires it before the shutdown finalizer).
 */
export const make = (
  engine: PresenceHost,
  store: Option.Option<Presence.PresenceStore>,
  every: (ms: number, tick: () => void) => () => void,
  now: () => number,
  refuse: TrackerDeps["refuse"]
): Effect.Effect<PresenceTracker | undefined, InvalidInput, Scope.Scope> =>
  Effect.suspend(() => {
    const options = engine.options
    if (options.presence === undefined) return Effect.succeed(undefined)
    const presenceOptions = options.presence
    return Option.match(store, {
      onNone: () =>
        Effect.fail(
          new InvalidInput({
            field: "presence",
            reason: "needs the Redis transport (a Redis URL, createIORedisAdapter(...) or RedisTransport.layer)"
          })
        ),
      onSome: (store) =>
        Effect.acquireRelease(
          Effect.sync(() =>
            new PresenceTracker({
              engine,
              store,
              options: presenceOptions,
              channel: options.channel,
              connectionLimitScope: options.connectionLimitScope,
              maxConnectionsPerUser: options.maxConnectionsPerUser,
              closeOldest: options.connectionLimitPolicy === "closeOldest",
              every,
              now,
              refuse
            })
          ),
          (tracker) => tracker.close(3_000)
        )
    })
  })

/** A cluster-wide count for the service (0 for an invalid user id, as the local form). */
export const clusterCount = (
  tracker: PresenceTracker | undefined,
  operation: string,
  userId: unknown
): Effect.Effect<number, Presence.PresenceError> => {
  if (tracker === undefined) return Effect.fail(new Presence.PresenceDisabled({ operation }))
  if (typeof userId !== "string" || userId.length === 0) return Effect.succeed(0)
  return tracker.count(userId)
}
