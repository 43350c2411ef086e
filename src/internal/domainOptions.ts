/**
 * The option types of an instance, of a send and of a shutdown (a leaf module, part of
 * the domain types: see `domain.ts`, which re-exports them).
 */
import type * as Duration from "effect/Duration"
import type * as Redacted from "effect/Redacted"
import type * as Tracer from "effect/Tracer"
import type { ConnectionLimitScope, PresenceOptions } from "../Presence.js"
import type { RedisKvLike } from "../Sequencer.js"

/**
 * Options of `sendTo*` and `publish*`.
 *
 * @since 0.2.0
 * @category models
 */
export interface SendOptions {
  /** `event:` line: the name a page listens to with `addEventListener`. */
  readonly event?: string | undefined
  /**
   * `id:` line: echoed by the browser as `Last-Event-ID` when it reconnects. Sent
   * without leading / trailing spaces and tabs (HTTP trims them from the header the
   * browser echoes); an id of only spaces is `InvalidInput`.
   */
  readonly id?: string | undefined
}

/**
 * A frame id policy (`seq.frameIdPolicy`): no generated id (`'none'`, default),
 * `<epochMs>-<instanceId>-<seq>` (`'timestamp'`), a time-ordered 64-bit decimal id
 * (`'snowflake'`), or a function of the data and its `seq`.
 *
 * @since 0.2.0
 * @category models
 */
export type FrameIdPolicy = "none" | "timestamp" | "snowflake" | ((data: unknown, nextSeq: number) => string)

/**
 * An automatically filled field (`autoFields.traceId` / `autoFields.requestId`).
 *
 * @since 0.2.0
 * @category models
 */
export interface AutoField<Mode extends string> {
  /** `'off'`; `'ifMissing'`: add `getter()` when absent; `'require'`: refuse data without it. */
  readonly mode: Mode
  readonly getter?: (() => unknown) | undefined
  /** Field name. Default `'traceId'` / `'requestId'`. */
  readonly fieldName?: string | undefined
}

/**
 * `autoFields.traceId`: as {@link AutoField}, with a getter that receives the current
 * span, or `'span'`: the current span's trace id. A send from within an Effect (the
 * service's members, also `publish*`) has the span of its `ssekify.publish` span (a
 * child of the caller's, same trace id); the facade's synchronous sends have none (the
 * getter gets `undefined`; with `'span'` the field is left out).
 *
 * @since 0.3.0
 * @category models
 */
export interface TraceIdField {
  /** `'off'`; `'ifMissing'`: add the value when absent. */
  readonly mode: "off" | "ifMissing"
  readonly getter?: ((span: Tracer.AnySpan | undefined) => unknown) | "span" | undefined
  /** Field name. Default `'traceId'`. */
  readonly fieldName?: string | undefined
}

/**
 * Fields added to plain-object data that lacks them (on a copy; the caller's object
 * is never changed).
 *
 * @since 0.2.0
 * @category models
 */
export interface AutoFieldsOptions {
  /** Send time: ISO 8601 UTC (`'iso'`, default), epoch ms (`'epochMs'`) or none (`false`). */
  readonly timestamp?: "iso" | "epochMs" | false | undefined
  readonly traceId?: TraceIdField | undefined
  readonly requestId?: AutoField<"off" | "ifMissing" | "require"> | undefined
}

/**
 * The automatic per-key `seq`.
 *
 * @since 0.2.0
 * @category models
 */
export interface SeqOptions {
  /** The key of a message's stream. Default: `data.requestId || data.streamId`. */
  readonly keyExtractor?: ((data: Readonly<Record<string, unknown>>) => unknown) | undefined
  /** First value: 0 (default) or 1. */
  readonly startAt?: 0 | 1 | undefined
  /** Last frame of a stream (its counter is dropped). Default: `final === true` or `phase` 'done' / 'error'. */
  readonly finalPredicate?: ((data: Readonly<Record<string, unknown>>) => unknown) | undefined
  /** Field name. Default `'seq'`. */
  readonly fieldName?: string | undefined
  /** Generated frame ids. Default `'none'`. An explicit `opts.id` always wins. */
  readonly frameIdPolicy?: FrameIdPolicy | undefined
  /** An explicit key/value client for the global seq (`incr`, `expire`); `null`: none. */
  readonly redis?: RedisKvLike | null | undefined
  /**
   * Prefix of the seq keys in Redis. Default `'ssekify:seq:'` on the default channel,
   * `'<channel>:seq:'` on any other (so tenants on their own channels never share counters).
   */
  readonly redisKeyPrefix?: string | undefined
  /** TTL of a key (Redis and memory), seconds (the 0.1.6 name; or `redisTTL`). Default 86 400. */
  readonly redisTTLSeconds?: number | undefined
  /**
   * TTL of a key (Redis and memory), as a Duration (whole seconds, rounded up); give
   * this or `redisTTLSeconds`, not both. Default 1 day.
   *
   * @since 0.3.0
   */
  readonly redisTTL?: Duration.DurationInput | undefined
  /** In-memory keys kept at most. Default 100 000. */
  readonly maxKeys?: number | undefined
}

/**
 * Options of an instance. Every option of the original 0.1.6 keeps its name and
 * default.
 *
 * @since 0.2.0
 * @category models
 */
export interface Options {
  /** Pub/sub channel of the bus. Default `'ssekify:bus'`. */
  readonly channel?: string | undefined
  /** Heartbeat interval (`: ping` comment lines) in ms (the 0.1.6 name; or `keepAlive`); 0: none. Default 15 000. */
  readonly keepAliveMs?: number | undefined
  /**
   * Heartbeat interval as a Duration (`"15 seconds"`); zero: none. Give this or
   * `keepAliveMs`, not both. Default 15 seconds.
   *
   * @since 0.3.0
   */
  readonly keepAlive?: Duration.DurationInput | undefined
  /** Also send each heartbeat as a named event a page can listen to (no CR / LF / NUL, at most `maxEventNameLength`). Default: none. */
  readonly keepAliveEvent?: string | undefined
  /** `retry:` sent on connect: the browser's reconnect delay in ms (the 0.1.6 name; or `retry`). Default 2 000. */
  readonly retryMs?: number | undefined
  /**
   * `retry:` sent on connect as a Duration (sent in whole ms). Give this or `retryMs`,
   * not both. Default 2 seconds.
   *
   * @since 0.3.0
   */
  readonly retry?: Duration.DurationInput | undefined
  /** Frames with an id kept per user for `Last-Event-ID` replay; 0: off. Default 20. */
  readonly recentBufferSize?: number | undefined
  /** Data → text. Default `JSON.stringify`. */
  readonly serializer?: ((data: unknown) => string | undefined) | undefined
  /** Largest serialized payload in bytes; larger messages are skipped with an `'error'`; 0: no limit. Default 1 MiB. */
  readonly maxPayloadBytes?: number | undefined
  /** Replay buffers of users inactive this many ms are dropped (the 0.1.6 name; or `recentTTL`); 0: never. Default 30 min. */
  readonly recentTTLMs?: number | undefined
  /**
   * Replay buffers of users inactive this long are dropped; zero: never. Give this or
   * `recentTTLMs`, not both. Default 30 minutes.
   *
   * @since 0.3.0
   */
  readonly recentTTL?: Duration.DurationInput | undefined
  /** Users with a replay buffer at most (least recently active evicted). Default 10 000. */
  readonly recentMaxUsers?: number | undefined
  /**
   * When set, a reconnect that cannot get everything it missed (the `Last-Event-ID` is
   * unknown, expired, evicted, or frames were sent while it was offline and not kept)
   * first gets this event with `{ lastEventId, reason }` (an event name: no CR / LF / NUL,
   * at most `maxEventNameLength`). Default: off (the wire of 0.1.6).
   */
  readonly replayGapEvent?: string | undefined
  /**
   * Keep frames sent to a user (with `sendToUser` / `publish` to the user) while the user
   * has no connection on this instance but still has a replay buffer, so a reconnect after
   * a short gap replays them. Default false: like 0.1.6, such frames are not recorded.
   */
  readonly replayOffline?: boolean | undefined
  /**
   * Where the replay buffer lives: `'memory'` (default, per instance) or `'redis'` (needs
   * the Redis transport: a reconnect to another instance still replays).
   */
  readonly replay?: "memory" | "redis" | undefined
  /** Key prefix of the Redis replay buffer. Default `'<channel>:replay:'`. */
  readonly replayKeyPrefix?: string | undefined
  /** Longest accepted `Last-Event-ID`; longer ones are ignored with an `'error'`. Default 1 024. */
  readonly maxLastEventIdLength?: number | undefined
  /** Automatic fields. Default: `{ timestamp: 'iso' }`. */
  readonly autoFields?: AutoFieldsOptions | undefined
  /** Automatic `seq` for data with a `requestId` / `streamId`. Default true. */
  readonly enableSeq?: boolean | undefined
  readonly seq?: SeqOptions | undefined
  /** This instance's id on the bus (origin dedup; part of `'timestamp'` frame ids, so no CR / LF / NUL). Default: random. */
  readonly instanceId?: string | undefined
  /** Connections this instance accepts at most; more get 503 + `Retry-After`. Default 0: no limit. */
  readonly maxConnections?: number | undefined
  /** Connections one user may hold on this instance. Default 0: no limit. */
  readonly maxConnectionsPerUser?: number | undefined
  /** Beyond `maxConnectionsPerUser`: refuse the new one with 429 (`'reject'`, default) or close the user's oldest (`'closeOldest'`). */
  readonly connectionLimitPolicy?: "reject" | "closeOldest" | undefined
  /** Rooms one connection may join. Default 1 024. */
  readonly maxRoomsPerConnection?: number | undefined
  /** Longest user id. Default 256. */
  readonly maxUserIdLength?: number | undefined
  /** Longest room name. Default 256. */
  readonly maxRoomNameLength?: number | undefined
  /** Longest event name. Default 256. */
  readonly maxEventNameLength?: number | undefined
  /** Longest frame id. Default 1 024. */
  readonly maxIdLength?: number | undefined
  /**
   * Sign bus messages with this key (HMAC-SHA256, at least 16 characters) and drop
   * unsigned or wrongly signed ones: whoever can publish on the Redis channel cannot
   * inject frames. Every instance on the channel needs the same key; instances of
   * 0.1.6 (unsigned) are then refused. Default: unsigned.
   */
  readonly busSecret?: string | Redacted.Redacted<string> | undefined
  /**
   * Cluster-wide presence (needs the Redis transport): `true` or `{ heartbeatMs, ttlMs }`.
   * Enables `{ scope: 'cluster' }` on `isUserOnline` / `getUserConnectionCount` and
   * `connectionLimitScope: 'cluster'`. See the `Presence` module. Default: off.
   */
  readonly presence?: boolean | PresenceOptions | undefined
  /**
   * Where `maxConnectionsPerUser` counts: `'instance'` (default) or `'cluster'` (turns
   * `presence` on; a registration then waits for one Redis round trip, see `Presence`).
   */
  readonly connectionLimitScope?: ConnectionLimitScope | undefined
}

/**
 * `shutdown` options.
 *
 * @since 0.2.0
 * @category models
 */
export interface ShutdownOptions {
  /** Send `{ code: 'SHUTDOWN', at }` to every connection first. Default true. */
  readonly announce?: boolean | undefined
  /** Event name of the announcement. Default `'server:shutdown'`. */
  readonly event?: string | undefined
  /** Wait this many ms before closing the connections (the 0.1.6 name; or `grace`). Default 5 000. */
  readonly graceMs?: number | undefined
  /**
   * Wait this long before closing the connections (it ends early when every client
   * has gone). Give this or `graceMs`, not both. Default 5 seconds.
   *
   * @since 0.3.0
   */
  readonly grace?: Duration.DurationInput | undefined
}
