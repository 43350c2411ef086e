/**
 * ssekify: Server-Sent Events for Node.js on Effect.
 *
 * The plain API is the `SSEKify` class (a drop-in for the original ssekify 0.1.6:
 * `const { SSEKify, createIORedisAdapter } = require('ssekify')`). Effect users
 * compose the modules: `SseKify` (the service and its layers), `Transport` (the bus),
 * `Connection`, `ReplayBuffer`, `Sequencer`, `Presence`, `Metrics`, `Frame`, `Envelope`;
 * the Redis backends (`RedisTransport`, `RedisConnection`, …) are in `ssekify/redis`.
 *
 * @since 0.2.0
 */
import { SSEKify } from "./facade.js"
import { createIORedisAdapter } from "./redisAdapter.js"
import { createMemoryBus } from "./Transport.js"

export { SSEKify } from "./facade.js"
export type { RegisteredConnectionHandle, SSEKifyEventMap, SSEKifyOptions } from "./facade.js"
export { createIORedisAdapter } from "./redisAdapter.js"
export type { IORedisAdapter, IORedisAdapterInput, IORedisAdapterOptions, IORedisClientLike } from "./redisAdapter.js"

/**
 * An in-process bus for tests: instances given `bus.adapter()` as `redis` exchange
 * `publish` / `publishToRoom` as if Redis were there.
 *
 * @since 0.2.0
 * @category constructors
 */
export { createMemoryBus } from "./Transport.js"

export type { ConnectionHandle, DropPolicy, RegisterOptions } from "./Connection.js"
export type { RedisLike } from "./Transport.js"
export type {
  AutoFieldsOptions,
  TraceIdField,
  FrameIdPolicy,
  Options,
  SendOptions,
  SeqOptions,
  ShutdownOptions,
  SseKifyEvent,
  SseKifyEventMap,
  Stats
} from "./SseKify.js"
export * from "./Errors.js"

export * as Connection from "./Connection.js"
export * as Envelope from "./Envelope.js"
export * as Frame from "./Frame.js"
export * as Metrics from "./Metrics.js"
export * as Presence from "./Presence.js"
export * as ReplayBuffer from "./ReplayBuffer.js"
export * as Sequencer from "./Sequencer.js"
export * as SseKify from "./SseKify.js"
export { SseKifyLive } from "./SseKify.js"
export * as Transport from "./Transport.js"

/**
 * The default export, for `import ssekify from 'ssekify'` then
 * `const { SSEKify, createIORedisAdapter } = ssekify`.
 *
 * @since 0.2.0
 */
const ssekify: {
  readonly SSEKify: typeof SSEKify
  readonly createIORedisAdapter: typeof createIORedisAdapter
  readonly createMemoryBus: typeof createMemoryBus
} = { SSEKify, createIORedisAdapter, createMemoryBus }

export default ssekify
