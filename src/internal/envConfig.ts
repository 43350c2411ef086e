/**
 * `SseKify.envConfig`: every scalar option of an instance from `SSEKIFY_*` variables
 * (or any `ConfigProvider`). Unset variables keep the defaults; times are read as
 * milliseconds (`*_MS`, seconds for `*_SECONDS`) and given to the layer as
 * `DurationInput`s.
 */
import * as Config from "effect/Config"
import type * as Duration from "effect/Duration"
import * as Option from "effect/Option"
import type { LayerOptions } from "../SseKify.js"

// A number is milliseconds as a `DurationInput`, checked by the layer (a negative one is
// `InvalidInput` there, where `Duration.millis` would clamp it to zero).
const ms = (name: string): Config.Config<Duration.DurationInput> => Config.number(name)

/** Top-level options: option name → its config. */
const top = {
  channel: Config.string("SSEKIFY_CHANNEL"),
  keepAlive: ms("SSEKIFY_KEEP_ALIVE_MS"),
  keepAliveEvent: Config.string("SSEKIFY_KEEP_ALIVE_EVENT"),
  retry: ms("SSEKIFY_RETRY_MS"),
  recentBufferSize: Config.integer("SSEKIFY_RECENT_BUFFER_SIZE"),
  maxPayloadBytes: Config.integer("SSEKIFY_MAX_PAYLOAD_BYTES"),
  recentTTL: ms("SSEKIFY_RECENT_TTL_MS"),
  recentMaxUsers: Config.integer("SSEKIFY_RECENT_MAX_USERS"),
  replayGapEvent: Config.string("SSEKIFY_REPLAY_GAP_EVENT"),
  replayOffline: Config.boolean("SSEKIFY_REPLAY_OFFLINE"),
  replay: Config.literal("memory", "redis")("SSEKIFY_REPLAY"),
  replayKeyPrefix: Config.string("SSEKIFY_REPLAY_KEY_PREFIX"),
  maxLastEventIdLength: Config.integer("SSEKIFY_MAX_LAST_EVENT_ID_LENGTH"),
  enableSeq: Config.boolean("SSEKIFY_ENABLE_SEQ"),
  instanceId: Config.string("SSEKIFY_INSTANCE_ID"),
  maxConnections: Config.integer("SSEKIFY_MAX_CONNECTIONS"),
  maxConnectionsPerUser: Config.integer("SSEKIFY_MAX_CONNECTIONS_PER_USER"),
  connectionLimitPolicy: Config.literal("reject", "closeOldest")("SSEKIFY_CONNECTION_LIMIT_POLICY"),
  connectionLimitScope: Config.literal("instance", "cluster")("SSEKIFY_CONNECTION_LIMIT_SCOPE"),
  maxRoomsPerConnection: Config.integer("SSEKIFY_MAX_ROOMS_PER_CONNECTION"),
  maxUserIdLength: Config.integer("SSEKIFY_MAX_USER_ID_LENGTH"),
  maxRoomNameLength: Config.integer("SSEKIFY_MAX_ROOM_NAME_LENGTH"),
  maxEventNameLength: Config.integer("SSEKIFY_MAX_EVENT_NAME_LENGTH"),
  maxIdLength: Config.integer("SSEKIFY_MAX_ID_LENGTH"),
  busSecret: Config.redacted("SSEKIFY_BUS_SECRET")
}

const seq = {
  startAt: Config.literal(0, 1)("SSEKIFY_SEQ_START_AT"),
  fieldName: Config.string("SSEKIFY_SEQ_FIELD_NAME"),
  frameIdPolicy: Config.literal("none", "timestamp", "snowflake")("SSEKIFY_SEQ_FRAME_ID_POLICY"),
  redisKeyPrefix: Config.string("SSEKIFY_SEQ_REDIS_KEY_PREFIX"),
  redisTTL: Config.map(
    Config.number("SSEKIFY_SEQ_REDIS_TTL_SECONDS"),
    (seconds): Duration.DurationInput => [seconds, 0]
  ),
  maxKeys: Config.integer("SSEKIFY_SEQ_MAX_KEYS")
}

const presence = {
  heartbeat: ms("SSEKIFY_PRESENCE_HEARTBEAT_MS"),
  ttl: ms("SSEKIFY_PRESENCE_TTL_MS"),
  keyPrefix: Config.string("SSEKIFY_PRESENCE_KEY_PREFIX")
}

const shutdown = {
  announce: Config.boolean("SSEKIFY_SHUTDOWN_ANNOUNCE"),
  event: Config.string("SSEKIFY_SHUTDOWN_EVENT"),
  grace: ms("SSEKIFY_SHUTDOWN_GRACE_MS")
}

type Optional<R> = { readonly [K in keyof R]: R[K] extends Config.Config<infer A> ? Config.Config<Option.Option<A>> : never }

const optional = <R extends Record<string, Config.Config<unknown>>>(configs: R): Optional<R> => {
  const out: Record<string, Config.Config<Option.Option<unknown>>> = {}
  for (const [key, config] of Object.entries(configs)) out[key] = Config.option(config)
  return out as Optional<R>
}

/** The fields that are set, or `undefined` when none is. */
const present = (fields: Readonly<Record<string, Option.Option<unknown>>>): Record<string, unknown> | undefined => {
  let out: Record<string, unknown> | undefined
  for (const [key, value] of Object.entries(fields)) {
    if (Option.isSome(value)) (out ??= {})[key] = value.value
  }
  return out
}

export const envConfig: Config.Config<LayerOptions> = Config.all({
  top: Config.all(optional(top)),
  seq: Config.all(optional(seq)),
  presenceOn: Config.option(Config.boolean("SSEKIFY_PRESENCE")),
  presence: Config.all(optional(presence)),
  timestamp: Config.option(Config.literal("iso", "epochMs", "false")("SSEKIFY_AUTO_TIMESTAMP")),
  shutdown: Config.all(optional(shutdown))
}).pipe(
  Config.map((env): LayerOptions => {
    const out: Record<string, unknown> = present(env.top) ?? {}
    const seqOptions = present(env.seq)
    if (seqOptions !== undefined) out.seq = seqOptions
    const presenceOptions = present(env.presence)
    // SSEKIFY_PRESENCE=false wins; the presence settings alone turn it on.
    const on = Option.getOrUndefined(env.presenceOn)
    if (on === false) out.presence = false
    else if (presenceOptions !== undefined) out.presence = presenceOptions
    else if (on === true) out.presence = true
    if (Option.isSome(env.timestamp)) {
      out.autoFields = { timestamp: env.timestamp.value === "false" ? false : env.timestamp.value }
    }
    const shutdownOptions = present(env.shutdown)
    if (shutdownOptions !== undefined) out.shutdown = shutdownOptions
    return out as LayerOptions
  })
)
