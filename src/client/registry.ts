/**
 * The request registry: the active subscriptions by `requestId`, and the routing of
 * each frame to one of them, to the broadcast handler, or to the bin (a frame id already
 * seen, a `seq` not above the last delivered one, a request that has ended), so a
 * replay or a reconnect delivers nothing twice. Both memories are bounded by `dedupeWindow`.
 *
 * @since 0.2.0
 */
import { BoundedSet } from "./BoundedSet.js"
import type { DropReason, Emitter, EndReason, SubscriptionEnd } from "./events.js"
import { type FrameMeta, frameText, type ListenMessage, type MessageHandler, parseFrame } from "./frames.js"
import type { ClientConfig } from "./options.js"
import { type MessageEventLike, type Timer, unref } from "./platform.js"

/** One request's subscription. */
export interface Subscription {
  readonly requestId: string
  readonly onMessage: MessageHandler<unknown>
  readonly onEnd: ((end: SubscriptionEnd) => void) | undefined
  readonly resolveEnded: (end: SubscriptionEnd) => void
  readonly ended: Promise<SubscriptionEnd>
  readonly idleMs: number
  idleTimer: Timer | undefined
  lastSeq: number
  messages: number
  active: boolean
}

/** What the registry needs of the client's options. */
export type RegistryConfig = Pick<ClientConfig, "eventName" | "seqField" | "dedupeWindow" | "onBroadcast">

/** The subscriptions of one client and the routing of its frames. */
export class RequestRegistry {
  readonly #config: RegistryConfig
  readonly #events: Emitter
  readonly #subs = new Map<string, Subscription>()
  readonly #endedIds: BoundedSet
  readonly #seenFrameIds: BoundedSet
  #delivered = 0
  #dropped = 0

  constructor(config: RegistryConfig, events: Emitter) {
    this.#config = config
    this.#events = events
    this.#endedIds = new BoundedSet(config.dedupeWindow)
    this.#seenFrameIds = new BoundedSet(config.dedupeWindow)
  }

  /** Active subscriptions. */
  get size(): number {
    return this.#subs.size
  }

  /** Frames delivered to callbacks and to `onBroadcast`. */
  get delivered(): number {
    return this.#delivered
  }

  /** Duplicate or late frames dropped. */
  get dropped(): number {
    return this.#dropped
  }

  /** The requestIds with an active subscription. */
  requestIds(): Array<string> {
    return Array.from(this.#subs.keys())
  }

  has(requestId: string): boolean {
    return this.#subs.has(requestId)
  }

  /** Registers an active subscription (a requestId that had ended may start again). */
  subscribe(
    requestId: string,
    onMessage: MessageHandler<unknown>,
    onEnd: ((end: SubscriptionEnd) => void) | undefined,
    idleMs: number
  ): Subscription {
    let resolveEnded: (end: SubscriptionEnd) => void = () => {}
    const ended = new Promise<SubscriptionEnd>((resolve) => {
      resolveEnded = resolve
    })
    const sub: Subscription = {
      requestId,
      onMessage,
      onEnd,
      resolveEnded,
      ended,
      idleMs,
      idleTimer: undefined,
      lastSeq: Number.NEGATIVE_INFINITY,
      messages: 0,
      active: true
    }
    this.#subs.set(requestId, sub)
    this.#endedIds.delete(requestId)
    this.#armIdle(sub)
    return sub
  }

  /** Ends a subscription once: later frames of its requestId are dropped as `'ended'`. */
  end(sub: Subscription, reason: EndReason): void {
    if (!sub.active) return
    sub.active = false
    if (sub.idleTimer !== undefined) clearTimeout(sub.idleTimer)
    sub.idleTimer = undefined
    if (this.#subs.get(sub.requestId) === sub) this.#subs.delete(sub.requestId)
    this.#endedIds.add(sub.requestId)
    const end: SubscriptionEnd = { requestId: sub.requestId, reason, messages: sub.messages }
    const onEnd = sub.onEnd
    if (onEnd !== undefined) this.#events.guard(() => onEnd(end))
    sub.resolveEnded(end)
    this.#events.emit("end", end)
  }

  /** Ends every active subscription. */
  endAll(reason: EndReason): void {
    for (const sub of Array.from(this.#subs.values())) this.end(sub, reason)
  }

  /** Routes a frame of `eventName` whose own id is `id`. */
  receive(event: MessageEventLike, id: string | undefined): void {
    const raw = frameText(event.data)
    const meta: FrameMeta = { event: this.#config.eventName, id, raw }
    const { message, requestId, seq } = parseFrame(raw, this.#config.seqField)
    if (id !== undefined) {
      if (this.#seenFrameIds.has(id)) return this.#drop("frame-id", requestId, seq, meta)
      this.#seenFrameIds.add(id)
    }
    if (requestId !== undefined) {
      const sub = this.#subs.get(requestId)
      if (sub !== undefined) return this.#deliver(sub, message as ListenMessage, seq, meta)
      if (this.#endedIds.has(requestId)) return this.#drop("ended", requestId, seq, meta)
    }
    this.#delivered++
    this.#events.emit("broadcast", { message, meta })
    const onBroadcast = this.#config.onBroadcast
    if (onBroadcast !== undefined) this.#events.guard(() => onBroadcast(message, meta))
  }

  #deliver(sub: Subscription, message: ListenMessage, seq: number | undefined, meta: FrameMeta): void {
    const terminal = message.phase === "done" || message.phase === "error"
    if (seq !== undefined) {
      // A terminal frame is never a duplicate while its subscription is active (the first
      // one ends it), so it is delivered even if the server's counter restarted.
      if (seq <= sub.lastSeq && !terminal) return this.#drop("seq", sub.requestId, seq, meta)
      if (seq > sub.lastSeq) sub.lastSeq = seq
    }
    sub.messages++
    this.#delivered++
    this.#armIdle(sub)
    this.#events.guard(() => sub.onMessage(message, meta))
    if (terminal) this.end(sub, message.phase as "done" | "error")
  }

  #drop(reason: DropReason, requestId: string | undefined, seq: number | undefined, meta: FrameMeta): void {
    this.#dropped++
    this.#events.emit("dropped", { reason, requestId, seq, meta })
  }

  #armIdle(sub: Subscription): void {
    if (sub.idleMs <= 0) return
    if (sub.idleTimer !== undefined) clearTimeout(sub.idleTimer)
    sub.idleTimer = setTimeout(() => this.end(sub, "timeout"), sub.idleMs)
    unref(sub.idleTimer)
  }
}
