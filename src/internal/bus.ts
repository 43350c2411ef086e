/**
 * The bus: what this instance publishes (the envelope with the frame's text, signed
 * and numbered on a signed bus) and what it receives (verified against the channel,
 * decoded, within the field limits, inside the replay window, not its own; then
 * encoded once and delivered here). In routed mode (`routing: "user"`) the message is
 * the routed format of `wire.ts` on the target's own channel, and what arrives is
 * written as the publisher encoded it.
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import { randomBytes } from "node:crypto"
import * as Envelope from "../Envelope.js"
import { type BusMessageInvalid, SerializeFailed, type TransportError } from "../Errors.js"
import type { TransportService } from "../Transport.js"
import type { Delivery } from "./delivery.js"
import type { Events } from "./events.js"
import type { Hub } from "./hub.js"
import type { Resolved } from "./options.js"
import type { Encoded, Prepared, SendPrep } from "./prepare.js"
import type { PublishOrder } from "./publishOrder.js"
import { ReplayGuard } from "./replayGuard.js"
import * as Wire from "./wire.js"

export class Bus {
  /** Messages this instance put on the bus (`stats().published`). */
  published = 0
  /** Messages from other instances delivered here (`stats().received`). */
  received = 0
  /** Messages from the bus refused (`stats().busRejected`). */
  busRejected = 0
  /** Signed bus: this boot's nonce and message counter, and the replay window of what arrives. */
  private readonly signedBus = { boot: randomBytes(9).toString("base64url"), counter: 0, guard: new ReplayGuard(Envelope.MAX_AGE_MS) }

  constructor(
    private readonly options: Resolved,
    private readonly transport: TransportService,
    private readonly instanceId: string,
    private readonly hub: Hub,
    private readonly prep: SendPrep,
    private readonly delivery: Delivery,
    private readonly events: Events,
    private readonly now: () => number,
    private readonly order: PublishOrder
  ) {}

  /** Whether there is a bus to publish on (not `Transport.layerNone`). */
  get enabled(): boolean {
    return this.transport.kind !== "none"
  }

  /**
   * Publishes a message already delivered here: `p` as prepared, `e` its serialized
   * data and frame, `order` its order key (the envelope carries its millisecond and counter).
   * `before`: what the message waits for before it goes on the bus (its record in a shared
   * replay store); later publishes wait behind it, so the bus keeps the call order.
   */
  publish(
    type: Envelope.TargetType,
    target: string | undefined,
    p: Prepared,
    e: Encoded,
    order: number,
    before?: Effect.Effect<void>
  ): Effect.Effect<void, SerializeFailed | TransportError> {
    // the order's millisecond (ahead of the clock only past 1024 sends in one)
    const at = Math.floor(order / 1024)
    const secret = this.options.busSecret
    const routed = this.transport.routed
    if (routed !== undefined) {
      const channel = Wire.channelOf(this.options.channel, type, target)
      const signed = secret !== undefined
      const message = Wire.encode(
        {
          type,
          target,
          id: p.id,
          event: p.event,
          at,
          n: order & 1023,
          origin: this.instanceId,
          b: signed ? this.signedBus.boot : undefined,
          c: signed ? ++this.signedBus.counter : undefined
        },
        e.frameText,
        channel,
        secret
      )
      this.published++
      return this.order.sendAfter(before, type === "all" ? this.transport.publish(channel, message) : routed.publish(channel, message))
    }
    const text = e.text
    let message: string
    try {
      message = Envelope.encode(
        Envelope.make({
          type,
          target,
          data: p.data,
          event: p.event,
          id: p.id,
          at,
          origin: this.instanceId,
          n: order & 1023,
          // signed bus: what the receivers' replay window checks (covered by the HMAC)
          b: secret === undefined ? undefined : this.signedBus.boot,
          c: secret === undefined ? undefined : this.signedBus.counter + 1
        }),
        text
      )
    } catch (cause) {
      return Effect.fail(new SerializeFailed({ cause }))
    }
    if (secret !== undefined) {
      this.signedBus.counter++
      message = Envelope.sign(message, secret, this.options.channel)
    }
    this.published++
    return this.order.sendAfter(before, this.transport.publish(this.options.channel, message))
  }

  /**
   * A message from the bus: checked (signature bound to the channel, shape, field
   * limits, replay window), deduplicated by origin, serialized once.
   */
  receive(raw: string): void {
    if (this.transport.routed !== undefined) return this.receiveRouted(this.options.channel, raw)
    const secret = this.options.busSecret
    if (typeof raw === "string" && raw.startsWith(Wire.PREFIX)) {
      return this.rejectBusMessage(
        Envelope.invalid("a routed message (routing: 'user') on a single-channel instance: every instance on a channel must use the same routing", raw)
      )
    }
    let text = raw
    if (secret !== undefined) {
      const verified = Envelope.verify(raw, secret, this.options.channel)
      if (Either.isLeft(verified)) return this.rejectBusMessage(verified.left)
      text = verified.right
    }
    const decoded = Envelope.decode(text)
    if (Either.isLeft(decoded)) return this.rejectBusMessage(decoded.left)
    const env = decoded.right
    if (env.origin === this.instanceId) return
    const over = Envelope.overLimit(env, this.options)
    if (over !== undefined) return this.rejectBusMessage(Envelope.invalid(over, raw))
    if (secret !== undefined) {
      const refused = env.origin === undefined || env.b === undefined || env.c === undefined
        ? "signed without origin, boot nonce and counter (an older signed format): refused, it could be replayed"
        : this.signedBus.guard.admit(env.origin.length + ":" + env.origin + env.b, env.c, env.at, this.now())
      if (refused !== undefined) return this.rejectBusMessage(Envelope.invalid(refused, raw))
    }
    this.received++
    if (this.events.observe.tracing) this.events.observe.annotateEnvelope(env.type, env.target, env.event)
    if (this.events.wants("publish")) {
      // Listeners get the envelope in 0.1.6's shape, without the bus's own fields.
      const { b: _b, c: _c, n: _n, sig: _sig, ...published } = env
      this.events.emit("publish", published)
    }
    const e = this.prep.encode(env.data, env.event, env.id)
    if (!("frame" in e)) {
      this.events.report(e)
      return
    }
    const order = env.at * 1024 + ((env.n ?? 0) & 1023)
    if (env.type === "all") this.delivery.all(e.frame, env.id, order)
    else if (env.type === "user") this.delivery.user(env.target!, e.frame, env.id, false, order)
    else if (env.type === "room") {
      const members = this.hub.rooms.get(env.target!)
      if (members !== undefined && members.size > 0) this.delivery.room(env.target!, e.frame, env.id, order)
    }
  }

  /**
   * A message of the routed format that arrived on `channel`: checked (signature bound to
   * that channel, header, target of that channel, a well-formed single frame, field and
   * size limits, replay window), then its frame written as the publisher encoded it.
   */
  receiveRouted(channel: string, raw: string): void {
    const secret = this.options.busSecret
    const decoded = Wire.decode(raw, this.options.channel, channel, secret, this.options.maxPayloadBytes)
    if (Either.isLeft(decoded)) return this.rejectBusMessage(decoded.left)
    const m = decoded.right
    if (m.origin === this.instanceId) return
    const over = Wire.overLimit(m, this.options)
    if (over !== undefined) return this.rejectBusMessage(Envelope.invalid(over, raw))
    if (secret !== undefined) {
      const refused = m.b === undefined || m.c === undefined
        ? "signed without boot nonce and counter: refused, it could be replayed"
        : this.signedBus.guard.admit(m.origin.length + ":" + m.origin + m.b, m.c, m.at, this.now())
      if (refused !== undefined) return this.rejectBusMessage(Envelope.invalid(refused, raw))
    }
    this.received++
    if (this.events.observe.tracing) this.events.observe.annotateEnvelope(m.type, m.target, m.event)
    if (this.events.wants("publish")) {
      // 0.1.6's envelope shape, its data read back from the frame only for the listener
      const published: { -readonly [K in keyof Envelope.Envelope]?: Envelope.Envelope[K] } = { type: m.type }
      if (m.target !== undefined) published.target = m.target
      published.data = Wire.dataOf(m)
      if (m.event !== undefined) published.event = m.event
      if (m.id !== undefined) published.id = m.id
      published.at = m.at
      published.origin = m.origin
      this.events.emit("publish", published as Envelope.Envelope)
    }
    const frame = Buffer.from(m.frame, "utf8")
    const order = m.at * 1024 + m.n
    if (m.type === "all") this.delivery.all(frame, m.id, order)
    else if (m.type === "user") this.delivery.user(m.target!, frame, m.id, false, order)
    else {
      const members = this.hub.rooms.get(m.target!)
      if (members !== undefined && members.size > 0) this.delivery.room(m.target!, frame, m.id, order)
    }
  }

  /** A message from the bus refused: reported and counted in `stats().busRejected`. */
  private rejectBusMessage(error: BusMessageInvalid): void {
    this.busRejected++
    this.events.report(error)
  }
}
