/**
 * Subscriptions to an instance's events for the lifetime of a `Scope`: a queue whose
 * listener is registered synchronously when the subscription is acquired (no event
 * emitted afterwards is lost), unbounded or bounded by a capacity (the oldest waiting
 * event dropped for a new one, counted).
 */
import * as Effect from "effect/Effect"
import * as Chunk from "effect/Chunk"
import * as MutableQueue from "effect/MutableQueue"
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { InvalidInput } from "../Errors.js"
import type { SseKifyEvent } from "./domain.js"
import type { EventName } from "./events.js"
import { describe } from "./options.js"

/**
 * Options of `SseKifyService.subscribe`.
 *
 * @since 0.3.0
 * @category models
 */
export interface SubscribeOptions {
  /**
   * At most this many events wait in the queue (a positive integer). When it is full,
   * a new event replaces the oldest waiting one (a sliding queue: the newest events are
   * kept), and the drop is counted in {@link Subscription.dropped}. Default: unbounded.
   */
  readonly capacity?: number | undefined
}

/**
 * What `SseKifyService.subscribe` gives: the queue of the events, and how many it
 * dropped (always 0 without a capacity).
 *
 * @since 0.3.0
 * @category models
 */
export interface Subscription<A> extends Queue.Dequeue<A> {
  /** Events dropped so far because the queue was full at its capacity (the oldest waiting one each time). */
  readonly dropped: Effect.Effect<number>
}

/** The engine side a subscription needs. */
export interface EventSource {
  subscribe(listener: (event: SseKifyEvent) => void, wants?: (type: EventName) => boolean): () => void
}

const checkCapacity = (capacity: unknown): number | undefined => {
  if (capacity === undefined) return undefined
  if (typeof capacity === "number" && Number.isSafeInteger(capacity) && capacity > 0) return capacity
  throw new InvalidInput({ field: "subscribe.capacity", reason: `must be a positive integer, got ${describe(capacity)}` })
}

/**
 * The queue of a subscription with a capacity: full, a new event replaces the oldest
 * waiting one (the listener offers with `unsafeOffer`, which applies no strategy: the
 * backing queue slides itself), counting the drops.
 */
class SlidingBacking<A> implements Queue.BackingQueue<A> {
  readonly [Queue.BackingQueueTypeId] = { _A: (a: A): A => a }
  dropped = 0
  private readonly items = MutableQueue.unbounded<A>()
  constructor(private readonly max: number) {}
  poll<Def>(def: Def): A | Def {
    return MutableQueue.poll(this.items, def)
  }
  pollUpTo(limit: number): Chunk.Chunk<A> {
    return MutableQueue.pollUpTo(this.items, limit)
  }
  offerAll(elements: Iterable<A>): Chunk.Chunk<A> {
    for (const element of elements) this.offer(element)
    return Chunk.empty()
  }
  offer(element: A): boolean {
    if (MutableQueue.length(this.items) >= this.max) {
      MutableQueue.poll(this.items, undefined)
      this.dropped++
    }
    return MutableQueue.offer(this.items, element)
  }
  capacity(): number {
    return this.max
  }
  length(): number {
    return MutableQueue.length(this.items)
  }
}

/**
 * A subscription for the current scope; events of other types are not built for it.
 * Released with the scope (listener removed, queue shut down). A capacity that is not a
 * positive integer is a defect (`InvalidInput`), as a queue's own capacity would be.
 */
export const subscribeTo = <E extends SseKifyEvent>(
  source: EventSource,
  types: ReadonlySet<string> | undefined,
  options: SubscribeOptions | undefined
): Effect.Effect<Subscription<E>, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.flatMap(
      Effect.try({ try: () => checkCapacity(options?.capacity), catch: (e) => e }).pipe(Effect.orDie),
      (capacity) => {
        const backing = capacity === undefined ? undefined : new SlidingBacking<E>(capacity)
        return Effect.map(backing === undefined ? Queue.unbounded<E>() : Queue.make(backing, Queue.slidingStrategy()), (queue) => {
          const unsubscribe = source.subscribe(
            (event) => void queue.unsafeOffer(event as E),
            types === undefined ? undefined : (type) => types.has(type)
          )
          const subscription = Object.defineProperty(queue, "dropped", {
            value: Effect.sync(() => backing?.dropped ?? 0),
            enumerable: false
          }) as unknown as Subscription<E>
          return { subscription, unsubscribe }
        })
      }
    ),
    ({ subscription, unsubscribe }) => Effect.zipRight(Effect.sync(unsubscribe), Queue.shutdown(subscription))
  ).pipe(Effect.map(({ subscription }) => subscription))

/** A stream of the events (of `types`, else all), subscribed when the stream starts. */
export const eventsOf = <E extends SseKifyEvent>(source: EventSource, types: ReadonlySet<string> | undefined): Stream.Stream<E> =>
  Stream.unwrapScoped(Effect.map(subscribeTo<E>(source, types, undefined), (queue) => Stream.fromQueue(queue)))
