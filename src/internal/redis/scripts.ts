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

const appendCappedName = "ssekifyAppendCapped"

/**
 * ZADD NX the value ARGV[1] with score ARGV[4] (an item already there keeps its score:
 * the same item recorded by several instances is kept once); keep the ARGV[2]
 * highest-scored items (when > 0); PEXPIRE ARGV[3] ms (when > 0). Returns 1 when added.
 */
const appendCappedLua = `
local added = redis.call('ZADD', KEYS[1], 'NX', ARGV[4], ARGV[1])
local max = tonumber(ARGV[2])
if max and max > 0 then
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -max - 1)
end
local ttl = tonumber(ARGV[3])
if ttl and ttl > 0 then
  redis.call('PEXPIRE', KEYS[1], ttl)
end
return added
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
  readonly appendCapped: (key: string, value: Uint8Array, score: number, maxLength: number, ttlMs: number) => Promise<unknown>
}

type WithScripts = {
  readonly [incrExpireName]: (key: string, ttl: number) => Promise<number | string>
  readonly [appendCappedName]: (key: string, value: Buffer, max: number, ttlMs: number, score: string) => Promise<unknown>
}

/** A view of the bytes as a `Buffer` (no copy). */
export const bufferOf = (bytes: Uint8Array): Buffer =>
  Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)

const count = (n: number, what: string): number => {
  if (!Number.isFinite(n) || n < 0) throw new RangeError(`${what} must be a finite number >= 0, got ${n}`)
  return Math.ceil(n)
}

/** Registers the scripts on `client` (idempotent) and returns them. */
export const install = (client: Client): Scripts => {
  client.defineCommand(incrExpireName, { numberOfKeys: 1, lua: incrExpireLua })
  client.defineCommand(appendCappedName, { numberOfKeys: 1, lua: appendCappedLua })
  const commands = client as unknown as WithScripts
  return {
    incrExpire: async (key, ttlSeconds) => Number(await commands[incrExpireName](key, seconds(ttlSeconds))),
    appendCapped: (key, value, score, maxLength, ttlMs) => {
      if (!Number.isFinite(score)) throw new RangeError(`score must be a finite number, got ${score}`)
      return commands[appendCappedName](key, bufferOf(value), count(maxLength, "maxLength"), count(ttlMs, "ttlMs"), String(score))
    }
  }
}
