/**
 * What `createIORedisAdapter` and `RedisTransport` share: the hidden symbol-keyed
 * reference from an adapter to its ioredis connections, so a full transport (with the
 * atomic KV script) can be built on an adapter's connections.
 *
 * @internal
 */
import type { Connections } from "./clients.js"
import type { Timing } from "./transport.js"

/**
 * The key under which an adapter made by `createIORedisAdapter` keeps its connections.
 * `Symbol.for`, so two copies of ssekify (ESM and CJS builds) recognise each other's.
 */
export const ConnectionsKey: unique symbol = Symbol.for("ssekify/RedisAdapter/connections") as never

/** What the key holds. */
export interface AdapterConnections {
  readonly connections: Connections
  readonly timing: Timing
}

/** The connections an adapter carries, if it was made by `createIORedisAdapter`. */
export const connectionsOf = (adapter: unknown): AdapterConnections | undefined => {
  if (typeof adapter !== "object" || adapter === null) return undefined
  const value = (adapter as { [ConnectionsKey]?: unknown })[ConnectionsKey]
  if (typeof value !== "object" || value === null) return undefined
  const v = value as Partial<AdapterConnections>
  return v.connections !== undefined && v.timing !== undefined ? (v as AdapterConnections) : undefined
}
