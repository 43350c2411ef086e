/**
 * RedisTransport through Sentinel: a master, a replica and 3 sentinels; the master is
 * SIGKILLed and delivery must resume on the promoted replica.
 */
import { expect, it } from "@effect/vitest"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import { afterAll, beforeAll, describe } from "vitest"
import * as RedisTransport from "../../src/RedisTransport.js"
import * as Sequencer from "../../src/Sequencer.js"
import { Transport } from "../../src/Transport.js"
import { type RedisSentinel, redisAvailable, startSentinel, stopAll } from "../support/redisServer.js"
import { collector, eventually, unique } from "./helpers.js"

describe.skipIf(!redisAvailable())("RedisTransport (Sentinel)", () => {
  let set: RedisSentinel
  beforeAll(async () => {
    set = await startSentinel()
  })
  afterAll(stopAll)

  it.live("layerConfig with REDIS_SENTINELS / REDIS_SENTINEL_MASTER reaches the master", () =>
    Effect.gen(function*() {
      const channel = unique("sen-cfg")
      const provider = ConfigProvider.fromMap(
        new Map([
          ["REDIS_SENTINELS", set.sentinelAddresses.map((s) => `${s.host}:${s.port}`).join(" , ")],
          ["REDIS_SENTINEL_MASTER", set.name]
        ])
      )
      const got = collector()
      yield* Effect.gen(function*() {
        const t = yield* Transport
        yield* t.subscribe(channel, got.handlers)
        yield* t.publish(channel, "via sentinel")
        yield* eventually("the message", () => got.messages.length === 1)
        expect(yield* (yield* Sequencer.Store).incrExpire(unique("k"), 30)).toBe(1)
      }).pipe(
        Effect.scoped,
        Effect.provide(RedisTransport.layerConfig().pipe(Layer.provide(Layer.setConfigProvider(provider))))
      )
      expect(got.messages).toEqual(["via sentinel"])
    }))

  it.scopedLive("SIGKILL the master: after the failover delivery resumes within 10 s, by itself", () =>
    Effect.gen(function*() {
      const channel = unique("failover")
      const sentinel = { sentinels: set.sentinelAddresses, name: set.name }
      const a = yield* RedisTransport.make({ sentinel })
      const b = yield* RedisTransport.make({ sentinel })
      const atB = collector()
      yield* b.subscribe(channel, atB.handlers)
      const oldMaster = yield* Effect.promise(() => set.currentMasterPort())
      expect(oldMaster).toBe(set.master.port)

      const sentAt: Array<number> = []
      const ok: Array<boolean> = []
      let stop = false
      const loop = yield* Effect.gen(function*() {
        for (let i = 0; i < 2000 && !stop; i++) {
          sentAt.push(Date.now())
          ok.push(Exit.isSuccess(yield* Effect.exit(a.publish(channel, String(i)))))
          yield* Effect.sleep("50 millis")
        }
      }).pipe(Effect.forkScoped)

      yield* eventually("traffic before the kill", () => atB.messages.length >= 5)
      const killedAt = Date.now()
      yield* Effect.promise(() => set.master.kill())
      const firstAfterKill = sentAt.length
      yield* eventually(
        "a message published after the kill to arrive",
        () => atB.messages.some((m) => Number(m) >= firstAfterKill),
        10_000
      )
      const resumedAt = atB.arrivals[atB.messages.findIndex((m) => Number(m) >= firstAfterKill)]!
      stop = true
      yield* Fiber.join(loop)
      const newMaster = yield* Effect.promise(() => set.currentMasterPort())
      const failedPublishes = ok.filter((x) => !x).length
      console.log("[sentinel] failover:", JSON.stringify({
        resumeAfterKillMs: resumedAt - killedAt,
        failedPublishes,
        newMaster,
        oldMaster,
        subscriberErrors: atB.errors.map((e) => (e.cause as Error).message)
      }))
      expect(newMaster).toBe(set.replica.port)
      expect(resumedAt - killedAt).toBeLessThan(10_000)
      expect(atB.errors.length).toBeGreaterThan(0)
      // no message twice, none out of order
      const received = atB.messages.map(Number)
      for (let i = 1; i < received.length; i++) expect(received[i]!).toBeGreaterThan(received[i - 1]!)
      // the KV works on the new master
      const kv = Option.getOrThrow(a.kv)
      const key = unique("after-failover")
      expect(yield* kv.incrExpire(key, 30)).toBe(1)
      expect(yield* kv.incrExpire(key, 30)).toBe(2)
    }), 40_000)
})
