/**
 * One Redis connection set: the publisher, subscriber and KV ioredis clients of one
 * URL / client / Cluster / Sentinel config, with what every user of them needs once:
 * the ready gates (a command waits at most `offlineTimeoutMs` for a reconnecting
 * connection, never queued to be sent late), the per-tick publish pipeline, the
 * subscribe-confirmation timeout, deduplicated error watching and an idempotent close.
 *
 * `RedisConnection` (Effect service, acquired with `acquireRelease`) and
 * `createIORedisAdapter` (a Promise skin) are both this class; the Redis backends
 * (`Transport/Redis`, `Sequencer/Redis`, `ReplayBuffer/Redis`, `Presence/Redis`) are
 * built on it.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import { TransportError } from "../../Errors.js"
import { type Client, closeAll, type Connections, openAll, Publisher, ReadyGate, type Settings, type Source } from "./clients.js"
import * as Errors from "./errors.js"

/** Timing of the connection users, in milliseconds. */
export interface Timing {
  /** How long publish / KV wait for a (re)connecting connection before failing. */
  readonly offlineTimeoutMs: number
  /** How long `subscribe` waits for Redis to confirm a subscription. */
  readonly subscribeTimeoutMs: number
}

const closedError = () => new Error("the Redis connection is closed")

/** How a transport on this connection routes, when the adapter that made it says so. */
export interface RoutingSettings {
  readonly routing?: "channel" | "user" | undefined
  readonly sharded?: boolean | "auto" | undefined
}

export class Connection {
  /** Set by `createIORedisAdapter(input, { routing })`: `RedisTransport.layerAdapter` honours it. */
  routing: RoutingSettings | undefined = undefined
  readonly publisher: Client
  readonly subscriber: Client
  readonly kv: Client
  private readonly pubGate: ReadyGate
  private readonly kvGate: ReadyGate
  private readonly pub: Publisher
  private closing: Promise<void> | undefined
  private readonly ignore = () => {}

  constructor(readonly connections: Connections, readonly timing: Timing) {
    this.publisher = connections.publisher
    this.subscriber = connections.subscriber
    this.kv = connections.kv
    this.pubGate = new ReadyGate(this.publisher, "pub")
    this.kvGate = new ReadyGate(this.kv, "kv")
    this.pub = new Publisher(this.publisher, this.pubGate, timing.offlineTimeoutMs)
    // Errors of the publisher and KV connections surface as failed commands; a listener
    // keeps ioredis from printing them as unhandled.
    this.publisher.on("error", this.ignore)
    this.kv.on("error", this.ignore)
  }

  /** Opens the three connections (in the background: never waits for Redis). */
  static open(source: Source, settings: Settings, timing: Timing): Connection {
    return new Connection(openAll(source, settings), timing)
  }

  get closed(): boolean {
    return this.closing !== undefined
  }

  /** `PUBLISH`, gated and pipelined per tick; rejects (sanitised) within the offline timeout. */
  publishPromise(channel: string, message: string): Promise<number> {
    if (this.closing !== undefined) return Promise.reject(closedError())
    return this.pub.publish(channel, message).catch((e: unknown) => Promise.reject(Errors.sanitize(e)))
  }

  /** Runs a KV command once the KV connection is ready (within the offline timeout). */
  kvPromise<A>(f: (client: Client) => Promise<A>): Promise<A> {
    if (this.closing !== undefined) return Promise.reject(closedError())
    return this.kvGate.run(this.timing.offlineTimeoutMs, () => f(this.kv)).catch((e: unknown) =>
      Promise.reject(Errors.sanitize(e))
    )
  }

  /** {@link publishPromise} as an effect failing with `TransportError`. */
  readonly publish = (channel: string, message: string): Effect.Effect<number, TransportError> =>
    Effect.tryPromise({
      try: () => this.publishPromise(channel, message),
      catch: (cause) => new TransportError({ operation: "publish", cause })
    })

  /** {@link kvPromise} as an effect failing with `TransportError` (named by `operation`). */
  readonly command = <A>(operation: string, f: (client: Client) => Promise<A>): Effect.Effect<A, TransportError> =>
    Effect.tryPromise({
      try: () => this.kvPromise(f),
      catch: (cause) => new TransportError({ operation, cause })
    })

  /** `promise`, or a rejection when it is not settled within the subscribe timeout. */
  readonly confirm = <A>(what: string, promise: Promise<A>): Promise<A> => {
    const ms = this.timing.subscribeTimeoutMs
    let timer: ReturnType<typeof setTimeout> | undefined
    return Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () =>
            reject(
              new Error(
                `${what} not confirmed by Redis within ${ms} ms (status: ${this.subscriber.status}); it completes when the connection is back`
              )
            ),
          ms
        )
      })
    ]).finally(() => clearTimeout(timer))
  }

  /** Deduplicated connection errors of the given roles (see `errors.ts`); returns the unwatch. */
  readonly watch = (roles: ReadonlyArray<"pub" | "sub" | "kv">, report: (error: Error) => void): (() => void) => {
    const byRole = { pub: this.publisher, sub: this.subscriber, kv: this.kv }
    return Errors.watch(roles.map((role) => [byRole[role], role] as const), report)
  }

  /** Closes the three connections (`QUIT`, then disconnect) and detaches the gates. Idempotent. */
  close(): Promise<void> {
    if (this.closing === undefined) {
      this.closing = closeAll(this.connections).finally(() => {
        this.publisher.off("error", this.ignore)
        this.kv.off("error", this.ignore)
        this.pubGate.detach()
        this.kvGate.detach()
      })
    }
    return this.closing
  }
}

/** The key under which an adapter made by `createIORedisAdapter` keeps its connection. */
export const ConnectionKey: unique symbol = Symbol.for("ssekify/RedisAdapter/connections") as never

/** The connection an adapter carries, if it was made by `createIORedisAdapter`. */
export const connectionOf = (adapter: unknown): Connection | undefined => {
  if (typeof adapter !== "object" || adapter === null) return undefined
  const value = (adapter as { [ConnectionKey]?: unknown })[ConnectionKey]
  // structural, not `instanceof`: the ESM and CJS builds recognise each other's adapters
  const c = value as Partial<Connection> | null
  return typeof c === "object" && c !== null && typeof c.kvPromise === "function" &&
      typeof c.publishPromise === "function" && typeof c.confirm === "function"
    ? (c as Connection)
    : undefined
}
