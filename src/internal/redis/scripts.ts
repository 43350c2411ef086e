/**
 * Multi-step Redis work as single Lua scripts (one round trip, atomic), registered
 * with ioredis' `defineCommand` (EVALSHA, with EVAL when the script is not cached,
 * e.g. after a Redis restart). Each script touches one key, so it runs on a Cluster.
 *
 * @internal
 */
import type { Client } from "./clients.js"

const incrExpireName = "ssekifyIncrExpire"

/** INCR the key; when the TTL (seconds) is positive, EXPIRE it; return the new value. */
const incrExpireLua = `
local n = redis.call('INCR', KEYS[1])
local ttl = tonumber(ARGV[1])
if ttl and ttl > 0 then
  redis.call('EXPIRE', KEYS[1], ttl)
end
return n
`

/** A TTL in whole seconds for EXPIRE (rounded up, so a positive TTL never becomes 0). */
export const seconds = (ttlSeconds: number): number => {
  if (!Number.isFinite(ttlSeconds) || ttlSeconds < 0) {
    throw new RangeError(`ttlSeconds must be a finite number >= 0, got ${ttlSeconds}`)
  }
  return Math.ceil(ttlSeconds)
}

/** The scripts, bound to a connection. */
export interface Scripts {
  readonly incrExpire: (key: string, ttlSeconds: number) => Promise<number>
}

type WithScripts = {
  readonly [incrExpireName]: (key: string, ttl: number) => Promise<number | string>
}

/** Registers the scripts on `client` (idempotent) and returns them. */
export const install = (client: Client): Scripts => {
  client.defineCommand(incrExpireName, { numberOfKeys: 1, lua: incrExpireLua })
  const commands = client as unknown as WithScripts
  return {
    incrExpire: async (key, ttlSeconds) => Number(await commands[incrExpireName](key, seconds(ttlSeconds)))
  }
}
