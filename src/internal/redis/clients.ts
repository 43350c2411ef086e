/**
 * The three ioredis connections of the Redis transport (publisher, subscriber, KV),
 * created from a URL, ioredis options, a Cluster node list or an existing client, each
 * with the options its role needs:
 *
 * - publisher and KV fail fast: no ioredis offline queue (`enableOfflineQueue: false`),
 *   in-flight commands rejected as soon as the socket closes (`maxRetriesPerRequest: 0`,
 *   no resend), a `commandTimeout` for a socket that hangs. While the connection is
 *   (re)connecting, a command waits for it at most `offlineTimeoutMs` ({@link ReadyGate})
 *   and then fails: it is never queued to be sent late.
 * - the subscriber keeps its commands until it is connected (offline queue, no retry
 *   limit) and resubscribes by itself after a reconnect (`autoResubscribe`). On a
 *   Cluster it also has ioredis' sharded subscribers (one connection per master, for
 *   `SSUBSCRIBE`), which follow failovers and slot moves.
 * - all of them reconnect for ever (capped delay), until they are closed.
 *
 * @internal
 */
import type { Cluster, ClusterNode, ClusterOptions, Redis, RedisOptions } from "ioredis"
import * as IORedis from "./ioredis.js"

/** A connection: a single node (plain or through Sentinel) or a Cluster. */
export type Client = Redis | Cluster

/** The roles of the three connections. */
export type Role = "pub" | "sub" | "kv"

/** Where the connections go. */
export type Source =
  | { readonly _tag: "Url"; readonly url: string }
  | { readonly _tag: "Options"; readonly options: RedisOptions }
  | { readonly _tag: "Client"; readonly client: Client }
  | { readonly _tag: "Cluster"; readonly nodes: ReadonlyArray<ClusterNode>; readonly options: ClusterOptions }

/** How the connections are made. */
export interface Settings {
  /** ioredis options for every connection (for a Cluster: the options of its nodes). */
  readonly redisOptions: RedisOptions
  /** How long a publish / KV command waits for a (re)connecting connection. */
  readonly offlineTimeoutMs: number
  /** `commandTimeout` of the publisher and KV connections. */
  readonly commandTimeoutMs: number
  /** `CLIENT SETNAME` prefix: connections are named `<prefix>:pub`, `:sub`, `:kv`. */
  readonly connectionName: string
}

/** `min(attempt × 100 ms, 1 s)`: after Redis returns, every connection is back within a second. */
export const defaultRetryStrategy = (attempt: number): number => Math.min(attempt * 100, 1000)

/** `true` for an `ioredis.Cluster`. */
export const isCluster = (client: Client): client is Cluster =>
  (client as { isCluster?: unknown }).isCluster === true

const failFast = (settings: Settings): RedisOptions => ({
  enableOfflineQueue: false,
  maxRetriesPerRequest: 0,
  autoResendUnfulfilledCommands: false,
  commandTimeout: settings.commandTimeoutMs
})

const keepUntilConnected: RedisOptions = {
  enableOfflineQueue: true,
  maxRetriesPerRequest: null,
  autoResubscribe: true,
  commandTimeout: undefined
}

/** The ioredis options a single-node connection of `role` is made with. */
export const nodeOptions = (role: Role, settings: Settings, base: RedisOptions): RedisOptions => ({
  retryStrategy: defaultRetryStrategy,
  // after disconnect(), a socket that does not close is destroyed after this (ioredis: 2 s)
  disconnectTimeout: 500,
  ...base,
  ...settings.redisOptions,
  connectionName: `${settings.connectionName}:${role}`,
  lazyConnect: false,
  ...(role === "sub" ? keepUntilConnected : failFast(settings))
})

/**
 * How often the subscriber of a Cluster asks for the slot layout when nothing else makes
 * it (a `MOVED`, a lost node): after a slot migration Redis drops the shard channels of
 * that slot without a reply ioredis acts on, and the next refresh resubscribes them on
 * the slot's new owner.
 */
export const subscriberSlotsRefreshMs = 5000

const clusterOptions = (role: Role, settings: Settings, base: ClusterOptions): ClusterOptions => ({
  ...base,
  ...(role === "sub"
    // one sharded subscriber per master, started when a shard channel of its slots is wanted
    // (forced: a given client's options always say `false`, ioredis' default)
    ? { shardedSubscribers: true, slotsRefreshInterval: base.slotsRefreshInterval ?? subscriberSlotsRefreshMs }
    : {}),
  enableOfflineQueue: role === "sub",
  lazyConnect: false,
  redisOptions: {
    ...base.redisOptions,
    ...settings.redisOptions,
    connectionName: `${settings.connectionName}:${role}`,
    ...(role === "sub" ? {} : { commandTimeout: settings.commandTimeoutMs })
  }
})

/** Opens the connection of `role` to `source`. Never touches a client given in `source`. */
export const open = (source: Source, role: Role, settings: Settings): Client => {
  const { Cluster, Redis } = IORedis.load()
  switch (source._tag) {
    case "Url":
      return new Redis(source.url, nodeOptions(role, settings, {}))
    case "Options":
      return new Redis(nodeOptions(role, settings, source.options))
    case "Cluster":
      return new Cluster(source.nodes.slice(), clusterOptions(role, settings, source.options))
    case "Client": {
      const client = source.client
      if (isCluster(client)) return client.duplicate([], clusterOptions(role, settings, client.options))
      return client.duplicate(nodeOptions(role, settings, {}))
    }
  }
}

const hash = (text: string): number => {
  let h = 0
  for (let i = 0; i < text.length; i++) h = (Math.imul(h, 31) + text.charCodeAt(i)) | 0
  return h >>> 0
}

const address = (node: Redis): string => `${node.options.host ?? ""}:${node.options.port ?? 0}`

/**
 * `PUBLISH` in order. On a single node that is just `publish`. On a Cluster, ioredis
 * sends a keyless command such as PUBLISH to a random node, and messages published on
 * different nodes reach a subscriber through different cluster-bus links, so one
 * publisher's messages could arrive out of order. Here every message of a channel goes
 * to the same master (chosen by a hash of the channel among the masters, sorted by
 * address), so they arrive in the order they were published as long as the topology
 * holds.
 */
export const publishOrdered = (client: Client, channel: string, message: string): Promise<number> => {
  if (!isCluster(client)) return client.publish(channel, message)
  const masters = client.nodes("master")
  if (masters.length === 0) return client.publish(channel, message)
  masters.sort((x, y) => (address(x) < address(y) ? -1 : address(x) > address(y) ? 1 : 0))
  return masters[hash(channel) % masters.length]!.publish(channel, message)
}

/** What one PUBLISH of a batch gave: the number of receivers, or why it failed. */
type Outcome = readonly [error: Error | null, receivers: unknown]

/** The PUBLISHes (or SPUBLISHes) of a batch in one pipeline (one write) on a single node. */
const publishBatch = (
  client: Redis,
  batch: ReadonlyArray<Pending>,
  command: PublishCommand
): Promise<ReadonlyArray<Outcome>> => {
  const pipeline = client.pipeline()
  for (const { channel, message } of batch) pipeline[command](channel, message)
  return pipeline.exec().then((results) => {
    const outcomes = results ?? []
    // not written at all (the stream closed): the gate sends the whole batch again
    if (outcomes.length > 0 && outcomes.every(([error]) => isNotSent(error))) throw outcomes[0]![0]
    return outcomes
  })
}

/** `publish` (classic Pub/Sub) or `spublish` (sharded Pub/Sub, Redis ≥ 7). */
export type PublishCommand = "publish" | "spublish"

interface Pending {
  readonly channel: string
  readonly message: string
  readonly resolve: (receivers: number) => void
  readonly reject: (error: unknown) => void
}

/**
 * `PUBLISH` with one write per tick. The messages published within one tick (a loop
 * of `publish` calls) leave as one pipeline: one `write()` on the socket and one read
 * for Redis instead of one each, in the order they were published. On loopback a
 * small write costs tens of microseconds (the receiver's network path runs in the
 * sender's system call), so this is most of what a burst of publishes costs. A lone
 * message is a plain `PUBLISH`, sent on the same tick (`process.nextTick`); on a
 * Cluster every message is a plain `PUBLISH` to its channel's master. Each call still
 * gets its own result, and the connection's {@link ReadyGate} applies as before.
 *
 * With `spublish` (sharded Pub/Sub) a Cluster sends each message to the master of its
 * channel's slot (ioredis routes it by key), so one channel's messages stay in order.
 */
export class Publisher {
  private pending: Array<Pending> = []

  constructor(
    private readonly client: Client,
    private readonly gate: ReadyGate,
    private readonly offlineTimeoutMs: number,
    private readonly command: PublishCommand = "publish"
  ) {}

  publish(channel: string, message: string): Promise<number> {
    return new Promise<number>((resolve, reject) => {
      if (this.pending.length === 0) process.nextTick(this.flush)
      this.pending.push({ channel, message, resolve, reject })
    })
  }

  private readonly flush = (): void => {
    const batch = this.pending
    this.pending = []
    const client = this.client
    const command = this.command
    // On a Cluster each message goes to its channel's master as before (in order).
    if (batch.length === 1 || isCluster(client)) {
      const one = command === "publish"
        ? (channel: string, message: string) => publishOrdered(client, channel, message)
        : (channel: string, message: string) => client.spublish(channel, message).then(Number)
      for (const { channel, message, reject, resolve } of batch) {
        this.gate.run(this.offlineTimeoutMs, () => one(channel, message)).then(resolve, reject)
      }
      return
    }
    this.gate.run(this.offlineTimeoutMs, () => publishBatch(client, batch, command)).then(
      (outcomes) =>
        batch.forEach(({ reject, resolve }, i) => {
          const outcome = outcomes[i]
          if (outcome === undefined) reject(new Error("Redis gave no reply to PUBLISH"))
          else if (outcome[0] !== null) reject(outcome[0])
          else resolve(Number(outcome[1]))
        }),
      (error: unknown) => {
        for (const { reject } of batch) reject(error)
      }
    )
  }
}

/** The publisher, subscriber and KV connections. */
export interface Connections {
  readonly publisher: Client
  readonly subscriber: Client
  readonly kv: Client
}

/** Opens the three connections; if one cannot be made, the others are closed. */
export const openAll = (source: Source, settings: Settings): Connections => {
  const opened: Array<Client> = []
  try {
    const publisher = open(source, "pub", settings)
    opened.push(publisher)
    const subscriber = open(source, "sub", settings)
    opened.push(subscriber)
    const kv = open(source, "kv", settings)
    opened.push(kv)
    return { publisher, subscriber, kv }
  } catch (error) {
    for (const client of opened) client.disconnect()
    throw error
  }
}

/** ioredis refused to send the command: the connection is not writable (not a failure of Redis). */
const isNotSent = (error: unknown): boolean =>
  error instanceof Error &&
  (error.message.startsWith("Stream isn't writeable") || error.message.startsWith("Cluster isn't ready"))

/**
 * Waits for a connection to be `ready`, at most a given time, sharing one pair of
 * listeners among all waiters (so a burst of publishes while Redis is away does not
 * pile up listeners).
 */
export class ReadyGate {
  private readonly waiters = new Set<{ resolve: () => void; reject: (error: Error) => void }>()
  private readonly onReady = () => {
    for (const w of Array.from(this.waiters)) w.resolve()
  }
  private readonly onEnd = () => {
    for (const w of Array.from(this.waiters)) w.reject(new Error(`redis ${this.role} connection is closed`))
  }

  constructor(readonly client: Client, readonly role: Role) {
    client.on("ready", this.onReady)
    client.on("end", this.onEnd)
  }

  get isReady(): boolean {
    return this.client.status === "ready"
  }

  /** Resolves when the connection is ready; rejects after `timeoutMs` or when it has ended. */
  wait(timeoutMs: number): Promise<void> {
    const status = this.client.status
    if (status === "ready") return Promise.resolve()
    if (status === "end") return Promise.reject(new Error(`redis ${this.role} connection is closed`))
    return this.next(timeoutMs)
  }

  /** Resolves at the next `ready` event (whatever the status now); rejects after `timeoutMs` or at `end`. */
  private next(timeoutMs: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const waiter = {
        resolve: () => {
          clearTimeout(timer)
          this.waiters.delete(waiter)
          resolve()
        },
        reject: (error: Error) => {
          clearTimeout(timer)
          this.waiters.delete(waiter)
          reject(error)
        }
      }
      const timer = setTimeout(
        () => waiter.reject(new Error(`redis ${this.role} connection not ready within ${timeoutMs} ms (status: ${this.client.status})`)),
        timeoutMs
      )
      this.waiters.add(waiter)
    })
  }

  /**
   * Runs `f` once the connection is ready (immediately when it is), within `timeoutMs`.
   * Right after a socket dies the status may still read `ready` while ioredis already
   * refuses to write (`Stream isn't writeable…` / `Cluster isn't ready…`): such a
   * command was not sent, so it is run once more after the next `ready`, if that comes
   * before the deadline.
   */
  run<A>(timeoutMs: number, f: () => Promise<A>): Promise<A> {
    const deadline = Date.now() + timeoutMs
    const attempt = () =>
      f().catch((error: unknown) => {
        const remaining = deadline - Date.now()
        if (!isNotSent(error) || remaining <= 0) throw error
        return this.next(remaining).then(f)
      })
    return this.isReady ? attempt() : this.wait(timeoutMs).then(attempt)
  }

  /** Removes the gate's listeners from the client. */
  detach(): void {
    this.client.off("ready", this.onReady)
    this.client.off("end", this.onEnd)
    this.onEnd()
  }
}

const noop = () => {}

/** The status of a connection, read afresh (not narrowed by earlier checks). */
export const statusOf = (client: Client): string => client.status

const endOf = (client: Client, timeoutMs: number): Promise<void> =>
  client.status === "end"
    ? Promise.resolve()
    : new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer)
        client.off("end", done)
        resolve()
      }
      const timer = setTimeout(done, timeoutMs)
      client.once("end", done)
    })

/**
 * Closes a connection: `QUIT` when it is ready (bounded, and cut short if the socket
 * closes meanwhile), then `disconnect()`, and waits (bounded) for its `end`. Never
 * throws. Afterwards no socket of the connection is left and it does not reconnect.
 *
 * A single-node connection that is `reconnecting` has no socket, only a reconnect
 * timer: `disconnect()` cancels it and ioredis emits no `end` (its status stays
 * `reconnecting`), so there is nothing to wait for.
 */
export const close = async (client: Client, timeoutMs = 1000): Promise<void> => {
  if (statusOf(client) === "end") return
  if (statusOf(client) === "ready") {
    let timer: ReturnType<typeof setTimeout> | undefined
    let onClose: (() => void) | undefined
    await Promise.race([
      client.quit().catch(noop),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, timeoutMs)
        onClose = resolve
        client.once("close", onClose)
      })
    ])
    clearTimeout(timer)
    if (onClose !== undefined) client.off("close", onClose)
  }
  const status = statusOf(client)
  if (status === "end") return
  if (!isCluster(client) && (status === "reconnecting" || status === "close")) {
    client.disconnect()
    return
  }
  const ended = endOf(client, timeoutMs)
  client.disconnect()
  await ended
}

/** Closes the three connections in parallel. */
export const closeAll = (connections: Connections, timeoutMs = 1000): Promise<void> =>
  Promise.all([
    close(connections.publisher, timeoutMs),
    close(connections.subscriber, timeoutMs),
    close(connections.kv, timeoutMs)
  ]).then(noop)
