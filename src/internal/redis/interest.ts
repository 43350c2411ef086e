/**
 * The counted subscriptions of the routed channels (see `routed.ts`): which channels
 * are wanted, what was sent, what Redis confirmed, and the one command per tick.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import { TransportError } from "../../Errors.js"
import type { RedisConnectionService } from "../../RedisConnection.js"
import { type Client, isCluster } from "./clients.js"
import * as Errors from "./errors.js"
import { slotOf } from "./slot.js"

/** How the routed channels travel: classic Pub/Sub, or sharded (`SSUBSCRIBE` / `SPUBLISH`, Redis ≥ 7). */
export type Mode = "classic" | "sharded"

/** At most this many channels in one `SUBSCRIBE` / `UNSUBSCRIBE`. */
export const maxChannelsPerCommand = 1000

const maxRetryDelayMs = 2000
const maxClusterResendMs = 60_000

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

/** The counted subscriptions of one transport. */
export interface Interest {
  readonly add: (channels: ReadonlyArray<string>) => Effect.Effect<void, TransportError>
  readonly remove: (channels: ReadonlyArray<string>) => void
  /** `true` while `channel` is held (added more often than removed). */
  readonly holds: (channel: string) => boolean
  /** Leaves every channel (when the connection stays open) and stops. */
  readonly release: () => void
}

/** The error of an `add` or `publish` after the transport was released. */
export const closedError = (operation: string) =>
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

export const make = (
  connection: RedisConnectionService,
  mode: Mode,
  report: (error: TransportError) => void
): Interest => {
  const subscriber: Client = connection.subscriber
  const cluster = isCluster(subscriber)
  const entries = new Map<string, Entry>()
  /** Channels whose wanted state changed since the last flush. */
  const dirty = new Set<string>()
  let scheduled: ReturnType<typeof setImmediate> | undefined
  const timers = new Set<ReturnType<typeof setTimeout>>()
  let retries = 0
  let released = false
  const ignore = () => {}

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

  const holds = (channel: string): boolean => (entries.get(channel)?.refs ?? 0) > 0

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
    subscriber.off("ready", onReady)
    // the connection may outlive the transport (an adapter's): leave the channels it held
    const leave = () => {
      for (const group of groups(held)) unsubscribeCommand(group).catch(ignore)
    }
    if (held.length > 0 && subscriber.status === "ready") leave()
    else if (held.length > 0 && subscriber.status !== "end") subscriber.once("ready", leave)
  }

  return { add, remove, holds, release }
}
