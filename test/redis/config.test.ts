/**
 * RedisTransport.config / parseHostPorts: what the environment becomes (no Redis needed).
 */
import { expect, it } from "@effect/vitest"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Redacted from "effect/Redacted"
import { inspect } from "node:util"
import { describe } from "vitest"
import * as RedisTransport from "../../src/RedisTransport.js"

const fromEnv = (env: Record<string, string>) =>
  RedisTransport.config.pipe(Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env)))))

describe("RedisTransport.config", () => {
  it("parseHostPorts: lists, default ports, IPv6, errors", () => {
    expect(RedisTransport.parseHostPorts("a:7000, b:7001,,c", 6379)).toEqual(
      Either.right([{ host: "a", port: 7000 }, { host: "b", port: 7001 }, { host: "c", port: 6379 }])
    )
    expect(RedisTransport.parseHostPorts("[::1]:26380,[fe80::1]", 26379)).toEqual(
      Either.right([{ host: "::1", port: 26380 }, { host: "fe80::1", port: 26379 }])
    )
    expect(Either.isLeft(RedisTransport.parseHostPorts("a:0", 1))).toBe(true)
    expect(Either.isLeft(RedisTransport.parseHostPorts("a:70000", 1))).toBe(true)
    expect(Either.isLeft(RedisTransport.parseHostPorts("a b:1", 1))).toBe(true)
    expect(Either.isLeft(RedisTransport.parseHostPorts(" , ", 1))).toBe(true)
  })

  it.effect("REDIS_CLUSTER_NODES wins, then REDIS_SENTINELS, then REDIS_URL; REDIS_PASSWORD is Redacted", () =>
    Effect.gen(function*() {
      const all = {
        REDIS_URL: "redis://:urlsecret@h:1",
        REDIS_CLUSTER_NODES: "n1:7000,n2:7001",
        REDIS_SENTINELS: "s1:26379",
        REDIS_PASSWORD: "pw-secret"
      }
      const cluster = yield* fromEnv(all)
      expect("cluster" in cluster && cluster.cluster).toEqual([{ host: "n1", port: 7000 }, { host: "n2", port: 7001 }])
      expect(Redacted.isRedacted(cluster.password)).toBe(true)
      expect(Redacted.value(cluster.password!)).toBe("pw-secret")

      const { REDIS_CLUSTER_NODES: _, ...noCluster } = all
      const sentinel = yield* fromEnv({ ...noCluster, REDIS_SENTINEL_MASTER: "main" })
      expect("sentinel" in sentinel && sentinel.sentinel).toEqual({ sentinels: [{ host: "s1", port: 26379 }], name: "main" })
      const defaultName = yield* fromEnv(noCluster)
      expect("sentinel" in defaultName && defaultName.sentinel.name).toBe("mymaster")

      const url = yield* fromEnv({ REDIS_URL: all.REDIS_URL })
      expect("url" in url && Redacted.isRedacted(url.url) && Redacted.value(url.url)).toBe(all.REDIS_URL)
      expect(url.password).toBeUndefined()
      for (const options of [cluster, sentinel, url]) {
        const shown = `${inspect(options, { depth: 6 })} ${JSON.stringify(options)} ${String(options)}`
        expect(shown).not.toContain("pw-secret")
        expect(shown).not.toContain("urlsecret")
      }
    }))

  it.effect("a malformed list is a ConfigError naming the variable", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(fromEnv({ REDIS_CLUSTER_NODES: "n1:notaport" }))
      expect(String(error)).toContain("REDIS_CLUSTER_NODES")
      expect(String(error)).toContain("n1:notaport")
    }))
})
