/**
 * The common options of `RedisTransport` / `createIORedisAdapter`, resolved.
 *
 * @internal
 */
import * as Duration from "effect/Duration"
import * as Redacted from "effect/Redacted"
import type { RedisOptions } from "ioredis"
import type { CommonOptions } from "../../RedisConnection.js"
import type { Settings } from "./clients.js"
import type { Timing } from "./connection.js"

const millis = (input: Duration.DurationInput | undefined, fallback: number): number =>
  input === undefined ? fallback : Duration.toMillis(Duration.decode(input))

const credentials = (options: CommonOptions): RedisOptions => ({
  ...(options.password !== undefined ? { password: Redacted.value(options.password) } : {}),
  ...(options.username !== undefined ? { username: options.username } : {})
})

/** How the connections are made. */
export const settingsOf = (options: CommonOptions): Settings => ({
  redisOptions: { ...options.redisOptions, ...credentials(options) },
  offlineTimeoutMs: millis(options.offlineTimeout, 1000),
  commandTimeoutMs: millis(options.commandTimeout, 2000),
  connectionName: options.connectionName ?? "ssekify"
})

/** The timing of the transport. */
export const timingOf = (options: CommonOptions): Timing => ({
  offlineTimeoutMs: millis(options.offlineTimeout, 1000),
  subscribeTimeoutMs: millis(options.subscribeTimeout, 2000)
})

