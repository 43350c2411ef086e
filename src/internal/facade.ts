/**
 * What the `SSEKify` facade needs besides the service: the bus layer from its `redis`
 * option, the option checks that must run before anything is opened, the inert handle
 * of a refused registration, and how errors are named and unwrapped.
 */
import * as Cause from "effect/Cause"
import type * as Layer from "effect/Layer"
import * as Runtime from "effect/Runtime"
import type { ConnectionHandle } from "../Connection.js"
import { type AdapterError, InvalidInput } from "../Errors.js"
import type { SSEKifyOptions } from "../facade.js"
import { createIORedisAdapter } from "../redisAdapter.js"
import * as RedisTransport from "../RedisTransport.js"
import * as Transport from "../Transport.js"
import { describe } from "./options.js"

/**
 * The backend layers of the `redis` option: none → `Transport.layerNone` (memory
 * stores); a URL or an ioredis adapter → every Redis backend on the adapter's
 * connection (transport, seq counters, replay store, presence store); any other
 * `RedisLike` → the generic transport, with a seq store when it has `incr` / `expire`.
 */
export const transportLayer = (
  redis: SSEKifyOptions["redis"],
  routing?: SSEKifyOptions["routing"]
): Layer.Layer<Transport.Transport> => {
  if (redis === undefined || redis === null || redis === "") return Transport.layerNone
  // `routing` given here wins over the one an adapter was made with
  const routed = routing === undefined ? {} : { routing }
  if (typeof redis === "string") {
    return RedisTransport.layerAdapter(createIORedisAdapter(redis, routed), { closeOnRelease: true })
  }
  if (Transport.isRedisLike(redis)) return RedisTransport.layerAdapter(redis, { closeOnRelease: true, ...routed })
  throw new InvalidInput({
    field: "redis",
    reason: `must be a Redis URL or an adapter with publish/subscribe/on, got ${describe(redis)}`
  })
}


/**
 * Options that need the Redis transport (`replay: 'redis'`, `presence`, `routing: 'user'`)
 * are refused here, before the bus is opened: a
 * layer that fails after its transport was acquired releases it asynchronously (the
 * adapter's `close()`), and `runSync` would then throw Effect's "cannot be resolved
 * synchronously" instead of the `InvalidInput`.
 */
export const requireRedisTransport = (options: SSEKifyOptions | undefined): void => {
  if (options === undefined || options === null || typeof options !== "object") return
  const routing: unknown = options.routing
  if (routing !== undefined && routing !== "channel" && routing !== "user") {
    throw new InvalidInput({ field: "routing", reason: `must be 'channel' or 'user', got ${describe(routing)}` })
  }
  const redis = options.redis
  const isRedis = (typeof redis === "string" && redis !== "") || RedisTransport.isIORedisAdapter(redis)
  if (isRedis || redis === undefined || redis === null || redis === "") return
  const reason = "needs the Redis transport (a Redis URL, createIORedisAdapter(...) or RedisTransport.layer)"
  if (options.routing === "user") throw new InvalidInput({ field: "routing", reason: `'user' ${reason}` })
  if (options.replay === "redis") throw new InvalidInput({ field: "replay", reason: `'redis' ${reason}` })
  if ((options.presence !== undefined && options.presence !== false) || options.connectionLimitScope === "cluster") {
    throw new InvalidInput({ field: options.presence !== undefined && options.presence !== false ? "presence" : "connectionLimitScope", reason })
  }
}

/** What `registerConnection` returns for a refused registration: `connId` `''`, methods that do nothing. */
export const inert: ConnectionHandle = Object.freeze({
  connId: "",
  close: () => {},
  join: () => false,
  leave: () => false
})

/** After shutdown (the runtime is released): the one check of `clearRecent` that still applies. */
export const badUserId = (userId: unknown): InvalidInput | undefined =>
  typeof userId === "string" && userId.length > 0
    ? undefined
    : new InvalidInput({ field: "userId", reason: `must be a non-empty string, got ${describe(userId)}` })

const isObject = (value: unknown): boolean => typeof value === "object" && value !== null

/** The `code` of an error (ours, or e.g. `ECONNREFUSED` of an adapter's), else its name. */
export const codeOf = (error: unknown): string => {
  const code = isObject(error) ? (error as { code?: unknown }).code : undefined
  if (typeof code === "string" && code.length > 0) return code
  return error instanceof Error ? error.name : typeof error
}

export const messageOf = (error: unknown): string => {
  try {
    return error instanceof Error ? error.message : String(error)
  } catch {
    // an adapter's error whose conversion to text throws: named by its type
    return typeof error
  }
}

export const isTagged = (value: unknown): value is { readonly _tag: string } =>
  isObject(value) && typeof (value as { _tag?: unknown })._tag === "string"

/** `runSync` / `runPromise` wrap failures in a FiberFailure; users get the typed error. */
export const unwrapDefect = (e: unknown): unknown =>
  Runtime.isFiberFailure(e) ? Cause.squash(e[Runtime.FiberFailureCauseId]) : e

/** An adapter's error the facade may re-emit as is: an `Error` whose `code` is a string or absent. */
export const isAdapterError = (u: unknown): u is AdapterError => {
  try {
    if (!(u instanceof Error)) return false
    const code = (u as { readonly code?: unknown }).code
    return code === undefined || typeof code === "string"
  } catch {
    // a hostile proxy or getter: not re-emitted as is
    return false
  }
}
