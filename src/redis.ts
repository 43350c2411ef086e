/**
 * `ssekify/redis`: the Redis backends of the Effect API, built on ioredis (an optional
 * peer dependency: `npm i ioredis`). Their declarations use ioredis' own types
 * (`RedisOptions`, `Redis`, `Cluster`), so they live in this entry: the main entry
 * (`ssekify`) type-checks without ioredis installed, even with `skipLibCheck: false`.
 *
 * ```ts
 * import { Layer } from "effect"
 * import { SseKify } from "ssekify"
 * import { RedisTransport } from "ssekify/redis"
 *
 * const Live = SseKify.layer({ channel: "app:sse" }).pipe(
 *   Layer.provide(RedisTransport.layer({ url: "redis://127.0.0.1:6379" }))
 * )
 * ```
 *
 * The facade's `createIORedisAdapter` stays in the main entry (its types are
 * structural); it is exported here too, with the adapter's types.
 *
 * @since 0.3.0
 */
export * as PresenceRedis from "./Presence/Redis.js"
export * as RedisConnection from "./RedisConnection.js"
export * as RedisTransport from "./RedisTransport.js"
export * as ReplayBufferRedis from "./ReplayBuffer/Redis.js"
export * as SequencerRedis from "./Sequencer/Redis.js"
export * as TransportRedis from "./Transport/Redis.js"
export { createIORedisAdapter } from "./redisAdapter.js"
export type { IORedisAdapter, IORedisAdapterInput, IORedisAdapterOptions, IORedisClientLike } from "./redisAdapter.js"
