/**
 * The routed channels of the Redis transport (`routing: "user"`): the per-user and
 * per-room channels an instance holds, counted, with the subscribes and unsubscribes of
 * one tick sent together.
 *
 * - Interest is counted per channel. A channel enters the wanted set with its first
 *   `add` and leaves it with its last `remove`; what is sent is the difference between
 *   the wanted set and what was sent, computed once per tick (`setImmediate`): so the
 *   adds of a tick leave as one `SUBSCRIBE` with every channel (one per slot on a
 *   Cluster with sharded Pub/Sub: Redis refuses an `SSUBSCRIBE` across slots), and an
 *   `add` and `remove` of the same channel within one tick send nothing.
 * - `add` completes when Redis confirmed every channel it waits for (or at once when
 *   they already are), and fails with `TransportError` after the subscribe timeout; the
 *   subscription stays wanted and completes in the background.
 * - After a reconnect ioredis resubscribes by itself: on a single node `autoResubscribe`
 *   sends the confirmed channels again, then the unconfirmed `SUBSCRIBE`s in flight (so
 *   their confirmation still arrives and completes the waiting `add`s), then the queued
 *   ones; on a Cluster its sharded subscribers resubscribe every shard channel on the
 *   master that owns the slot after a failover or a slot move. A `SUBSCRIBE` that fails
 *   is sent again (backoff up to 2 s); on a Cluster one not confirmed within the
 *   subscribe timeout is sent again too (ioredis leaves an `SSUBSCRIBE` answered by
 *   `MOVED` unsettled).
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import { TransportError } from "../../Errors.js"
import type { RedisConnectionService } from "../../RedisConnection.js"
import type { RoutedChannels } from "../../Transport.js"
import { type Client, isCluster, Publisher, ReadyGate } from "./clients.js"
import * as Errors from "./errors.js"
import * as Interest from "./interest.js"

export type { Mode } from "./interest.js"

const slotMoveRefreshMs = 1000

/** What {@link make} returns: the service, and `release` to detach it from the connection. */
export interface Built {
  readonly routed: RoutedChannels
  readonly mode: Interest.Mode
  /** Unsubscribes what it subscribed (when the connection is open) and removes its listeners. */
  readonly release: () => void
}

type Listener = {
  readonly onMessage: (channel: string, message: string) => void
  readonly onError: (error: TransportError) => void
}

export const make = (connection: RedisConnectionService, mode: Interest.Mode): Built => {
  const subscriber: Client = connection.subscriber
  const cluster = isCluster(subscriber)
  let listener: Listener | undefined
  let released = false
  const timers = new Set<ReturnType<typeof setTimeout>>()

  const report = (error: TransportError) => {
    try {
      listener?.onError(error)
    } catch {
      // a failing error handler must not break the transport
    }
  }

  const interest = Interest.make(connection, mode, report)

  const onMessage = (channel: string, message: string) => {
    const current = listener
    if (current === undefined) return
    // the shared channel (or a channel being left) is not a routed message
    if (!interest.holds(channel)) return
    try {
      current.onMessage(channel, message)
    } catch (cause) {
      report(new TransportError({ operation: "onMessage", cause }))
    }
  }
  // Connection errors are not reported here: the subscription of the shared channel (on
  // the same subscriber connection) reports them once; this reports failed subscribes.
  subscriber.on("message", onMessage)
  subscriber.on("smessage", onMessage)
  // A slot moved away: its master drops the slot's shard channels with an unsolicited
  // `sunsubscribe`, which ioredis does not expect (it reports a "Command queue state
  // error … Last reply: sunsubscribe,…" as a `nodeError`). Asking for the slot layout
  // resubscribes them on the new owner; asked now and once more a second later (the node
  // asked may not know the move yet), else the periodic refresh does it within 5 s.
  const refreshSlots = () => {
    if (!released && isCluster(subscriber)) subscriber.refreshSlotsCache()
  }
  const onNodeError = (error: unknown) => {
    if (error instanceof Error && error.message.includes("Last reply: sunsubscribe")) {
      refreshSlots()
      const timer = setTimeout(() => {
        timers.delete(timer)
        refreshSlots()
      }, slotMoveRefreshMs)
      timers.add(timer)
    }
  }
  if (cluster && mode === "sharded") subscriber.on("nodeError", onNodeError)

  const listen = (
    onMessage: (channel: string, message: string) => void,
    onError: (error: TransportError) => void
  ): Effect.Effect<void, never, Scope.Scope> =>
    Effect.acquireRelease(
      Effect.sync(() => {
        const mine: Listener = { onMessage, onError }
        listener = mine
        return mine
      }),
      (mine) =>
        Effect.sync(() => {
          if (listener === mine) listener = undefined
        })
    ).pipe(Effect.asVoid)

  const gate = mode === "sharded" ? new ReadyGate(connection.publisher, "pub") : undefined
  const sharded = gate === undefined
    ? undefined
    : new Publisher(connection.publisher, gate, connection.timing.offlineTimeoutMs, "spublish")

  const publish = (channel: string, message: string): Effect.Effect<void, TransportError> =>
    Effect.suspend(() => {
      if (released) return Effect.fail(Interest.closedError("publish"))
      if (sharded === undefined) return Effect.asVoid(connection.publish(channel, message))
      return Effect.tryPromise({
        try: () => sharded.publish(channel, message),
        catch: (cause) => new TransportError({ operation: "publish", cause: Errors.sanitize(cause) })
      })
    }).pipe(Effect.asVoid)

  const release = () => {
    if (released) return
    released = true
    for (const timer of timers) clearTimeout(timer)
    timers.clear()
    interest.release()
    subscriber.off("message", onMessage)
    subscriber.off("smessage", onMessage)
    subscriber.off("nodeError", onNodeError)
    gate?.detach()
    listener = undefined
  }

  return { routed: { add: interest.add, remove: interest.remove, listen, publish }, mode, release }
}
