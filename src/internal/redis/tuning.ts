/**
 * The one definition of the Redis connections' tuning, behind
 * `RedisConnection.CommonOptions` (`ssekify/redis`) and `IORedisAdapterOptions` (the
 * main entry, whose declarations must not import ioredis' types).
 */
import type * as Duration from "effect/Duration"
import type * as Redacted from "effect/Redacted"

/**
 * The tuning of the Redis connections (every option but ioredis' own `redisOptions`).
 *
 * @since 0.3.0
 * @category models
 */
export interface ConnectionTuning {
  /** The data nodes' password (`AUTH`); never logged. Default: none, or the URL's. */
  readonly password?: Redacted.Redacted<string> | undefined
  /** The ACL user name. Default: none, or the URL's. */
  readonly username?: string | undefined
  /**
   * How long `publish` and the KV commands wait for a connection that is
   * (re)connecting before they fail with `TransportError`. Default: 1 second.
   */
  readonly offlineTimeout?: Duration.DurationInput | undefined
  /** How long a publish or KV command may wait for its reply. Default: 2 seconds. */
  readonly commandTimeout?: Duration.DurationInput | undefined
  /**
   * How long `subscribe` waits for Redis to confirm a new subscription. After that it
   * returns anyway, `onError` is told, and the subscription completes in the background
   * when Redis is reachable. Default: 2 seconds.
   */
  readonly subscribeTimeout?: Duration.DurationInput | undefined
  /**
   * The prefix of the connections' names (`CLIENT SETNAME`): `<name>:pub`, `<name>:sub`,
   * `<name>:kv`, so they are easy to find in `CLIENT LIST`. Default: `"ssekify"`.
   */
  readonly connectionName?: string | undefined
}
