/**
 * Cluster-wide presence in Redis: the commands of the `PresenceStore` (see
 * `Presence.ts`), as Lua scripts registered with `defineCommand`.
 *
 * One sorted set per user (`<prefix><userId>`): a member per live connection,
 * `<createdAt, 13 digits>|<instanceId>|<connId>`, scored with its expiry in ms
 * (Redis server time, so the clocks of the instances do not matter). A member that
 * `admit` evicted (policy `closeOldest`) is kept for a while with a negative score
 * (`-evictedAt`): its instance sees it at its next heartbeat and closes the
 * connection. Every script touches that one key, so it runs on a Cluster (any slot)
 * and on Redis 7.0 (no per-field TTL needed: the scores are the TTLs).
 *
 * @internal
 */
import type { Client } from "./clients.js"

/** Redis server time in ms, expired members and old eviction markers dropped. */
const prelude = `
local key = KEYS[1]
local ttl = tonumber(ARGV[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', key, 0, now)
redis.call('ZREMRANGEBYSCORE', key, '(' .. (-(now - 2 * ttl)), '(0')
`

const admitName = "ssekifyPresenceAdmit"

/**
 * ARGV: ttlMs, member, max (0: no cap), closeOldest ('1' / '0').
 * Returns { admitted (1/0), live count (with the new member when admitted), evicted… }.
 */
const admitLua = `${prelude}
local member = ARGV[2]
local max = tonumber(ARGV[3])
local live = redis.call('ZCOUNT', key, '(' .. now, '+inf')
local out = {}
if max > 0 and live >= max then
  if ARGV[4] ~= '1' then
    return {0, live}
  end
  local members = redis.call('ZRANGEBYSCORE', key, '(' .. now, '+inf')
  table.sort(members)
  local excess = live - max + 1
  for i = 1, excess do
    redis.call('ZADD', key, -now, members[i])
    out[#out + 1] = members[i]
  end
  live = live - excess
end
redis.call('ZADD', key, now + ttl, member)
redis.call('PEXPIRE', key, 2 * ttl)
local reply = {1, live + 1}
for i = 1, #out do reply[#reply + 1] = out[i] end
return reply
`

const beatName = "ssekifyPresenceBeat"

/** ARGV: ttlMs, members…: refreshes them; returns those marked evicted (removed, not refreshed). */
const beatLua = `${prelude}
local evicted = {}
for i = 2, #ARGV do
  local s = redis.call('ZSCORE', key, ARGV[i])
  if s and tonumber(s) < 0 then
    redis.call('ZREM', key, ARGV[i])
    evicted[#evicted + 1] = ARGV[i]
  else
    redis.call('ZADD', key, now + ttl, ARGV[i])
  end
end
redis.call('PEXPIRE', key, 2 * ttl)
return evicted
`

const countName = "ssekifyPresenceCount"

/** No write: the live members now (Redis time). */
const countLua = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')
`

/** The reply of `admit`. */
export interface AdmitReply {
  readonly admitted: boolean
  readonly count: number
  readonly evicted: ReadonlyArray<string>
}

/** The presence commands, bound to a connection (promises; the transport wraps them). */
export interface PresenceCommands {
  readonly admit: (key: string, member: string, ttlMs: number, max: number, closeOldest: boolean) => Promise<AdmitReply>
  readonly beat: (key: string, members: ReadonlyArray<string>, ttlMs: number) => Promise<ReadonlyArray<string>>
  readonly remove: (key: string, members: ReadonlyArray<string>) => Promise<unknown>
  readonly count: (key: string) => Promise<number>
}

type WithScripts = {
  readonly [admitName]: (key: string, ttl: number, member: string, max: number, closeOldest: string) => Promise<Array<unknown>>
  readonly [beatName]: (key: string, ttl: number, ...members: Array<string>) => Promise<Array<unknown>>
  readonly [countName]: (key: string) => Promise<number | string>
}

const ms = (n: number): number => {
  if (!Number.isFinite(n) || n <= 0) throw new RangeError(`ttlMs must be a finite number > 0, got ${n}`)
  return Math.ceil(n)
}

const strings = (reply: ReadonlyArray<unknown>, from: number): Array<string> =>
  reply.slice(from).map((x) => (Buffer.isBuffer(x) ? x.toString("utf8") : String(x)))

/** Registers the scripts on `client` (idempotent) and returns the commands. */
export const install = (client: Client): PresenceCommands => {
  client.defineCommand(admitName, { numberOfKeys: 1, lua: admitLua })
  client.defineCommand(beatName, { numberOfKeys: 1, lua: beatLua })
  client.defineCommand(countName, { numberOfKeys: 1, lua: countLua })
  const c = client as unknown as WithScripts
  return {
    admit: async (key, member, ttlMs, max, closeOldest) => {
      const reply = await c[admitName](key, ms(ttlMs), member, Math.max(0, Math.floor(max)), closeOldest ? "1" : "0")
      return { admitted: Number(reply[0]) === 1, count: Number(reply[1]), evicted: strings(reply, 2) }
    },
    beat: async (key, members, ttlMs) => strings(await c[beatName](key, ms(ttlMs), ...members), 0),
    remove: (key, members) => members.length === 0 ? Promise.resolve(0) : client.zrem(key, ...members),
    count: async (key) => Number(await c[countName](key))
  }
}
