/**
 * The `Transport` service over a Redis connection (its publisher and subscriber).
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import { TransportError } from "../../Errors.js"
import type { Handlers, TransportService } from "../../Transport.js"
import type { RedisConnectionService } from "../../RedisConnection.js"
import { SubscriberQueue } from "./subscriberQueue.js"
import * as Errors from "./errors.js"
import * as Routed from "./routed.js"

/** How the transport routes (see `TransportRedis.RoutingOptions`), resolved. */
export interface Routing {
  /** `undefined`: the shared channel only (`routing: "channel"`). */
  readonly routed: Routed.Mode | undefined
}

/** What {@link make} returns: the service, and `release` to detach it from the connection. */
export interface Built {
  readonly service: TransportService
  /** Removes every listener the transport put on the connection (does not close it). */
  readonly release: () => void
}

interface Entry {
  readonly handlers: Handlers
}

/**
 * Builds the transport on `connections`. The subscriber's connection errors go to the
 * `onError` of every current subscription, deduplicated per outage (see `errors.ts`).
 * Each subscription waits for Redis' confirmation at most the subscribe timeout.
 */
export const make = (connection: RedisConnectionService, routing: Routing = { routed: undefined }): Built => {
  const { subscriber } = connection
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

  const unwatch = connection.watch(["sub"], (error) =>
    reportAll(new TransportError({ operation: "subscriber", cause: error })))
  subscriber.on("message", onMessage)

  const queue = new SubscriberQueue(subscriber)

  const subscribeChannel = (channel: string): Promise<unknown> => {
    let pending = subscribed.get(channel)
    if (pending === undefined) {
      const sent = queue.run(() => subscriber.subscribe(channel))
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
    queue.run(() => subscriber.unsubscribe(channel)).catch(ignore)
  }

  // Never rejects: a refused or unconfirmed SUBSCRIBE is told to the subscriber, and
  // the subscription completes in the background when Redis is back.
  const waitSubscribed = (channel: string, handlers: Handlers): Promise<void> =>
    connection.confirm(`SUBSCRIBE ${channel}`, subscribeChannel(channel)).then(
      () => undefined,
      (cause: unknown) => tell(handlers, new TransportError({ operation: "subscribe", cause: Errors.sanitize(cause) }))
    )


  const closed = Effect.fail(
    new TransportError({ operation: "publish", cause: new Error("the Redis transport is closed") })
  )
  const publish = (channel: string, message: string): Effect.Effect<void, TransportError> =>
    Effect.suspend(() => released ? closed : Effect.asVoid(connection.publish(channel, message)))

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

  const routed = routing.routed === undefined ? undefined : Routed.make(connection, routing.routed)

  const service: TransportService = {
    kind: "redis",
    publish,
    subscribe,
    ...(routed === undefined ? {} : { routed: routed.routed })
  }

  const release = () => {
    released = true
    routed?.release()
    queue.detach()
    unwatch()
    subscriber.off("message", onMessage)
    channels.clear()
  }

  return { service, release }
}
