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
import { slotOf } from "./slot.js"

/** How the routed channels travel: classic Pub/Sub, or sharded (`SSUBSCRIBE` / `SPUBLISH`, Redis ≥ 7). */
export type Mode = "classic" | "sharded"

/** At most this many channels in one `SUBSCRIBE` / `UNSUBSCRIBE`. */
export const maxChannelsPerCommand = 1000

const maxRetryDelayMs = 2000
const maxClusterResendMs = 60_000
const slotMoveRefreshMs = 1000

interface Entry {
  /** Interests held (`add` minus `remove`). */
  refs: number
  /** A subscribe including this channel was sent (and no unsubscribe since). */
  sent: boolean
  /** Redis confirmed that subscribe. */
  confirmed: boolean
  /** Subscribes sent since the last confirmation (spaces the resends on a Cluster). */
  attempts: number
  /** The `add`s waiting for the confirmation. */
  readonly waiters: Set<() => void>
}

/** What {@link make} returns: the service, and `release` to detach it from the connection. */
export interface Built {
  readonly routed: RoutedChannels
  readonly mode: Mode
  /** Unsubscribes what it subscribed (when the connection is open) and removes its listeners. */
  readonly release: () => void
}

type Listener = {
  readonly onMessage: (channel: string, message: string) => void
  readonly onError: (error: TransportError) => void
}

const closedError = (operation: string) =>
  new TransportError({ operation, cause: new Error("the Redis transport is closed") })

/** Splits `items` in chunks of at most `size`. */
const chunks = <A>(items: ReadonlyArray<A>, size: number): Array<ReadonlyArray<A>> => {
  const out: Array<ReadonlyArray<A>> = []
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size))
  return out
}

/** Groups channels by hash slot (a Cluster refuses one `SSUBSCRIBE` across slots). */
const bySlot = (channels: ReadonlyArray<string>): Array<ReadonlyArray<string>> => {
  const groups = new Map<number, Array<string>>()
  for (const channel of channels) {
    const slot = slotOf(channel)
    const group = groups.get(slot)
    if (group === undefined) groups.set(slot, [channel])
    else group.push(channel)
  }
  return Array.from(groups.values())
}

export const make = (connection: RedisConnectionService, mode: Mode): Built => {
  const subscriber: Client = connection.subscriber
  const cluster = isCluster(subscriber)
  const entries = new Map<string, Entry>()
  /** Channels whose wanted state changed since the last flush. */
  const dirty = new Set<string>()
  let scheduled: ReturnType<typeof setImmediate> | undefined
  const timers = new Set<ReturnType<typeof setTimeout>>()
  let retries = 0
  let listener: Listener | undefined
  let released = false
  const ignore = () => {}

  const report = (error: TransportError) => {
    try {
      listener?.onError(error)
    } catch {
      // a failing error handler must not break the transport
    }
  }

  const later = (ms: number, f: () => void) => {
    const timer = setTimeout(() => {
      timers.delete(timer)
      f()
    }, ms)
    timers.add(timer)
  }

  const schedule = () => {
    if (scheduled === undefined && !released) scheduled = setImmediate(flush)
  }

  const settle = (entry: Entry) => {
    for (const resolve of Array.from(entry.waiters)) resolve()
    entry.waiters.clear()
  }

  const subscribeCommand = (channels: ReadonlyArray<string>): Promise<unknown> =>
    mode === "sharded" ? subscriber.ssubscribe(...channels) : subscriber.subscribe(...channels)

  const unsubscribeCommand = (channels: ReadonlyArray<string>): Promise<unknown> =>
    mode === "sharded" ? subscriber.sunsubscribe(...channels) : subscriber.unsubscribe(...channels)

  /** The groups one command each may carry. */
  const groups = (channels: ReadonlyArray<string>): Array<ReadonlyArray<string>> =>
    (mode === "sharded" && cluster ? bySlot(channels) : [channels]).flatMap((g) => chunks(g, maxChannelsPerCommand))

  /** Sends one subscribe for `channels` and completes their entries when Redis confirms it. */
  const subscribeGroup = (channels: ReadonlyArray<string>) => {
    const sent = channels.map((channel) => [channel, entries.get(channel)!] as const)
    let attempts = 0
    for (const [, entry] of sent) {
      entry.sent = true
      attempts = Math.max(attempts, entry.attempts++)
    }
    const current = () => sent.filter(([channel, entry]) => entries.get(channel) === entry && entry.sent && !entry.confirmed)
    subscribeCommand(channels).then(
      () => {
        retries = 0
        for (const [, entry] of current()) {
          entry.confirmed = true
          entry.attempts = 0
          settle(entry)
        }
      },
      (cause: unknown) => {
        const failed = current()
        if (released || failed.length === 0) return
        report(new TransportError({ operation: "subscribe", cause: Errors.sanitize(cause) }))
        resend(failed.map(([channel]) => channel), Math.min(100 * 2 ** retries++, maxRetryDelayMs))
      }
    )
    // On a Cluster an SSUBSCRIBE answered by MOVED stays unsettled: send it again after the
    // subscribe timeout, then spaced out (each resend is also kept by ioredis' subscriber
    // group until the channel is left)
    if (cluster) {
      const delay = Math.min(connection.timing.subscribeTimeoutMs * 2 ** Math.min(attempts, 5), maxClusterResendMs)
      later(delay, () => {
        const waiting = current()
        if (!released && waiting.length > 0) resend(waiting.map(([channel]) => channel), 0)
      })
    }
  }

  /** Marks `channels` as not sent and flushes after `delayMs`. */
  const resend = (channels: ReadonlyArray<string>, delayMs: number) => {
    for (const channel of channels) {
      const entry = entries.get(channel)
      if (entry !== undefined && entry.refs > 0 && !entry.confirmed) {
        entry.sent = false
        dirty.add(channel)
      }
    }
    if (delayMs <= 0) schedule()
    else later(delayMs, schedule)
  }

  /**
   * Flushes at the next `ready`. Never send while the connection is not ready: ioredis
   * writes a `SUBSCRIBE` at once in the `connect` state (before its ready check), the
   * ready check's `INFO` is then refused in subscriber mode, and the connection starts
   * over without resubscribing (it was never `ready`). Queued until `ready`, it is sent
   * after ioredis' own resubscription.
   */
  let awaitingReady = false
  const onReady = () => {
    awaitingReady = false
    schedule()
  }

  function flush() {
    scheduled = undefined
    if (released) return
    if (subscriber.status !== "ready") {
      if (!awaitingReady && subscriber.status !== "end") {
        awaitingReady = true
        subscriber.once("ready", onReady)
      }
      return
    }
    const subscribe: Array<string> = []
    const unsubscribe: Array<string> = []
    for (const channel of dirty) {
      const entry = entries.get(channel)
      if (entry === undefined) continue
      if (entry.refs > 0 && !entry.sent) subscribe.push(channel)
      else if (entry.refs === 0) {
        entries.delete(channel)
        settle(entry)
        if (entry.sent) unsubscribe.push(channel)
      }
    }
    dirty.clear()
    for (const group of groups(unsubscribe)) unsubscribeCommand(group).catch(ignore)
    for (const group of groups(subscribe)) subscribeGroup(group)
  }

  /** Waits until every entry of `waiting` is confirmed, at most the subscribe timeout. */
  const confirmed = (waiting: ReadonlyArray<Entry>): Effect.Effect<void, TransportError> =>
    Effect.async<void, TransportError>((resume) => {
      let left = waiting.length
      const done = () => {
        if (--left === 0) {
          clearTimeout(timer)
          resume(Effect.void)
        }
      }
      const ms = connection.timing.subscribeTimeoutMs
      const timer = setTimeout(() => {
        for (const entry of waiting) entry.waiters.delete(done)
        const command = mode === "sharded" ? "SSUBSCRIBE" : "SUBSCRIBE"
        resume(Effect.fail(
          new TransportError({
            operation: "subscribe",
            cause: new Error(
              `${command} of ${left} channel(s) not confirmed by Redis within ${ms} ms (status: ${subscriber.status}); it completes when the connection is back`
            )
          })
        ))
      }, ms)
      for (const entry of waiting) entry.waiters.add(done)
      return Effect.sync(() => {
        clearTimeout(timer)
        for (const entry of waiting) entry.waiters.delete(done)
      })
    })

  const add = (channels: ReadonlyArray<string>): Effect.Effect<void, TransportError> =>
    Effect.suspend(() => {
      if (released) return Effect.fail(closedError("subscribe"))
      const waiting = new Set<Entry>()
      for (const channel of channels) {
        let entry = entries.get(channel)
        if (entry === undefined) {
          entry = { refs: 0, sent: false, confirmed: false, attempts: 0, waiters: new Set() }
          entries.set(channel, entry)
        }
        entry.refs++
        if (!entry.sent) {
          dirty.add(channel)
          schedule()
        }
        if (!entry.confirmed) waiting.add(entry)
      }
      return waiting.size === 0 ? Effect.void : confirmed(Array.from(waiting))
    })

  const remove = (channels: ReadonlyArray<string>): void => {
    if (released) return
    for (const channel of channels) {
      const entry = entries.get(channel)
      // a channel not held (a foreign or repeated remove) changes nothing
      if (entry === undefined || entry.refs === 0) continue
      if (--entry.refs > 0) continue
      if (entry.sent) {
        dirty.add(channel)
        schedule()
      } else {
        // never sent: nothing to undo at Redis
        entries.delete(channel)
        dirty.delete(channel)
        settle(entry)
      }
    }
  }

  const onMessage = (channel: string, message: string) => {
    const current = listener
    if (current === undefined) return
    const entry = entries.get(channel)
    // the shared channel (or a channel being left) is not a routed message
    if (entry === undefined || entry.refs === 0) return
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
      later(slotMoveRefreshMs, refreshSlots)
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
      if (released) return Effect.fail(closedError("publish"))
      if (sharded === undefined) return Effect.asVoid(connection.publish(channel, message))
      return Effect.tryPromise({
        try: () => sharded.publish(channel, message),
        catch: (cause) => new TransportError({ operation: "publish", cause: Errors.sanitize(cause) })
      })
    }).pipe(Effect.asVoid)

  const release = () => {
    if (released) return
    released = true
    if (scheduled !== undefined) clearImmediate(scheduled)
    scheduled = undefined
    for (const timer of timers) clearTimeout(timer)
    timers.clear()
    const held = Array.from(entries).filter(([, entry]) => entry.sent).map(([channel]) => channel)
    for (const entry of entries.values()) settle(entry)
    entries.clear()
    dirty.clear()
    // the connection may outlive the transport (an adapter's): leave the channels it held
    const leave = () => {
      for (const group of groups(held)) unsubscribeCommand(group).catch(ignore)
    }
    if (held.length > 0 && subscriber.status === "ready") leave()
    else if (held.length > 0 && subscriber.status !== "end") subscriber.once("ready", leave)
    subscriber.off("message", onMessage)
    subscriber.off("smessage", onMessage)
    subscriber.off("ready", onReady)
    subscriber.off("nodeError", onNodeError)
    gate?.detach()
    listener = undefined
  }

  return { routed: { add, remove, listen, publish }, mode, release }
}
