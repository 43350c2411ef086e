/**
 * The `Transport` service over three ioredis connections.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import { TransportError } from "../../Errors.js"
import type { RedisKv } from "../../RedisTransport.js"
import type { Handlers, TransportService } from "../../Transport.js"
import { type Connections, Publisher, ReadyGate } from "./clients.js"
import * as Errors from "./errors.js"
import * as PresenceScripts from "./presence.js"
import * as Scripts from "./scripts.js"
import type { PresenceStore } from "../../Presence.js"

/** Timing of the transport, in milliseconds. */
export interface Timing {
  /** How long publish / KV wait for a (re)connecting connection before failing. */
  readonly offlineTimeoutMs: number
  /** How long `subscribe` waits for Redis to confirm the subscription. */
  readonly subscribeTimeoutMs: number
}

/** What {@link make} returns: the service, and `release` to detach it from the connections. */
export interface Built {
  readonly service: TransportService
  /** Removes every listener the transport put on the connections (does not close them). */
  readonly release: () => void
}

interface Entry {
  readonly handlers: Handlers
}

/**
 * Builds the transport on `connections`. The subscriber's connection errors go to the
 * `onError` of every current subscription, deduplicated per outage (see `errors.ts`).
 */
export const make = (connections: Connections, timing: Timing): Built => {
  const { kv: kvClient, publisher, subscriber } = connections
  const pubGate = new ReadyGate(publisher, "pub")
  const pub = new Publisher(publisher, pubGate, timing.offlineTimeoutMs)
  const kvGate = new ReadyGate(kvClient, "kv")
  const channels = new Map<string, Set<Entry>>()
  let released = false
  /** The pending or done SUBSCRIBE of each channel with subscribers. */
  const subscribed = new Map<string, Promise<unknown>>()

  const tell = (handlers: Handlers, error: TransportError) => {
    try {
      handlers.onError(error)
    } catch {
      // a failing error handler must not break the transport
    }
  }

  const reportAll = (error: TransportError) => {
    for (const set of channels.values()) for (const entry of set) tell(entry.handlers, error)
  }

  const onMessage = (channel: string, message: string) => {
    const set = channels.get(channel)
    if (set === undefined) return
    for (const entry of set) {
      try {
        entry.handlers.onMessage(message)
      } catch (cause) {
        tell(entry.handlers, new TransportError({ operation: "onMessage", cause }))
      }
    }
  }
  const ignore = () => {}

  const unwatch = Errors.watch([[subscriber, "sub"]], (error) =>
    reportAll(new TransportError({ operation: "subscriber", cause: error })))
  subscriber.on("message", onMessage)
  // Errors of the publisher and KV connections surface as failed commands; a listener
  // keeps ioredis from printing them as unhandled.
  publisher.on("error", ignore)
  kvClient.on("error", ignore)

  const subscribeChannel = (channel: string): Promise<unknown> => {
    let pending = subscribed.get(channel)
    if (pending === undefined) {
      const sent = subscriber.subscribe(channel)
      pending = sent
      subscribed.set(channel, sent)
      // the callers observe a rejection; forget it so the next subscription sends SUBSCRIBE again
      sent.catch(() => {
        if (subscribed.get(channel) === sent) subscribed.delete(channel)
      })
    }
    return pending
  }

  const unsubscribeChannel = (channel: string) => {
    subscribed.delete(channel)
    if (subscriber.status === "end") return
    subscriber.unsubscribe(channel).catch(ignore)
  }

  const waitSubscribed = (channel: string, handlers: Handlers): Promise<void> =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        tell(
          handlers,
          new TransportError({
            operation: "subscribe",
            cause: new Error(
              `Redis did not confirm SUBSCRIBE ${channel} within ${timing.subscribeTimeoutMs} ms (status: ${subscriber.status}); it completes when the connection is back`
            )
          })
        )
        resolve()
      }, timing.subscribeTimeoutMs)
      subscribeChannel(channel).then(
        () => {
          clearTimeout(timer)
          resolve()
        },
        (cause) => {
          clearTimeout(timer)
          tell(handlers, new TransportError({ operation: "subscribe", cause: Errors.sanitize(cause) }))
          resolve()
        }
      )
    })

  const closedError = () => Promise.reject(new Error("the Redis transport is closed"))

  const publish = (channel: string, message: string): Effect.Effect<void, TransportError> =>
    Effect.tryPromise({
      try: () => released ? closedError() : pub.publish(channel, message),
      catch: (cause) => new TransportError({ operation: "publish", cause: Errors.sanitize(cause) })
    }).pipe(Effect.asVoid)

  const register = (channel: string, handlers: Handlers): Entry => {
    const entry: Entry = { handlers }
    let set = channels.get(channel)
    if (set === undefined) channels.set(channel, set = new Set())
    set.add(entry)
    subscribeChannel(channel)
    return entry
  }

  const unregister = (channel: string, entry: Entry) => {
    const set = channels.get(channel)
    if (set === undefined) return
    set.delete(entry)
    if (set.size === 0) {
      channels.delete(channel)
      unsubscribeChannel(channel)
    }
  }

  const subscribe = (channel: string, handlers: Handlers): Effect.Effect<void, never, Scope.Scope> =>
    Effect.suspend(() => {
      if (released) {
        tell(handlers, new TransportError({ operation: "subscribe", cause: new Error("the Redis transport is closed") }))
        return Effect.void
      }
      return Effect.acquireRelease(
        Effect.sync(() => register(channel, handlers)),
        (entry) => Effect.sync(() => unregister(channel, entry))
      ).pipe(Effect.zipRight(Effect.promise(() => waitSubscribed(channel, handlers))))
    })

  const scripts = Scripts.install(kvClient)
  const onKv = <A>(operation: string, f: () => Promise<A>): Effect.Effect<A, TransportError> =>
    Effect.tryPromise({
      try: () => released ? closedError() : kvGate.run(timing.offlineTimeoutMs, f),
      catch: (cause) => new TransportError({ operation, cause: Errors.sanitize(cause) })
    })
  const kv: RedisKv = {
    incrExpire: (key, ttlSeconds) => onKv("incrExpire", () => scripts.incrExpire(key, ttlSeconds)),
    expire: (key, ttlSeconds) => Effect.asVoid(onKv("expire", () => kvClient.expire(key, Scripts.seconds(ttlSeconds)))),
    // one script per key, all written at once (pipelined: one round trip; on a Cluster,
    // one batch per node, so keys need not share a slot)
    appendCapped: (entries, maxLength, ttlMs) =>
      Effect.asVoid(onKv("appendCapped", () =>
        Promise.all(entries.map(([key, value, score]) => scripts.appendCapped(key, value, score, maxLength, ttlMs))))),
    list: (key) => onKv("list", () => kvClient.zrangeBuffer(key, 0, -1)),
    del: (keys) =>
      Effect.asVoid(onKv("del", () => Promise.all(keys.map((key) => kvClient.del(key)))))
  }

  // -- presence (Presence.ts): separate from the bus and replay commands ---------
  const presenceScripts = PresenceScripts.install(kvClient)
  const presence: PresenceStore = {
    admit: (key, member, ttlMs, max, closeOldest) =>
      onKv("presence.admit", () => presenceScripts.admit(key, member, ttlMs, max, closeOldest)),
    beat: (entries, ttlMs) =>
      onKv("presence.beat", () =>
        Promise.all(entries.map(([key, members]) => presenceScripts.beat(key, members, ttlMs))).then((all) => all.flat())),
    remove: (entries) =>
      Effect.asVoid(onKv("presence.remove", () =>
        Promise.all(entries.map(([key, members]) => presenceScripts.remove(key, members))))),
    count: (key) => onKv("presence.count", () => presenceScripts.count(key))
  }
  const kvWithPresence: RedisKv & { readonly presence: PresenceStore } = { ...kv, presence }
  // ------------------------------------------------------------------------------

  const service: TransportService = {
    kind: "redis",
    publish,
    subscribe,
    kv: Option.some(kvWithPresence)
  }

  const release = () => {
    released = true
    unwatch()
    subscriber.off("message", onMessage)
    publisher.off("error", ignore)
    kvClient.off("error", ignore)
    pubGate.detach()
    kvGate.detach()
    channels.clear()
  }

  return { service, release }
}
