/**
 * RedisTransport when Redis goes away: SIGKILL under traffic and restart on the same
 * port, Redis down at start, closing while Redis is down.
 */
import { expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Scope from "effect/Scope"
import { afterAll, describe } from "vitest"
import { TransportError } from "../../src/Errors.js"
import * as RedisTransport from "../../src/RedisTransport.js"
import { freePort, redisAvailable, startRedis, stopAll } from "../support/redisServer.js"
import { awaitClients, collector, countClients, eventually, tcpSockets, unique } from "./helpers.js"

interface Attempt {
  readonly index: number
  readonly startedAt: number
  readonly ms: number
  readonly error: TransportError | undefined
}

describe.skipIf(!redisAvailable())("RedisTransport when Redis fails", () => {
  afterAll(stopAll)

  it.scopedLive("SIGKILL under a publish loop, restart on the same port: no crash, errors reported, publish fails fast, delivery resumes", () =>
    Effect.gen(function*() {
      const server = yield* Effect.promise(() => startRedis())
      const channel = unique("kill")
      const a = yield* RedisTransport.make({ url: server.url })
      const b = yield* RedisTransport.make({ url: server.url })
      const atB = collector()
      yield* b.subscribe(channel, atB.handlers)

      // the publish loop: one publish every 25 ms, at most 2000, until stopped
      const attempts: Array<Attempt> = []
      let stop = false
      const loop = yield* Effect.gen(function*() {
        for (let index = 0; index < 2000 && !stop; index++) {
          const startedAt = Date.now()
          const exit = yield* Effect.exit(a.publish(channel, String(index)))
          attempts.push({
            index,
            startedAt,
            ms: Date.now() - startedAt,
            error: Exit.isFailure(exit) ? (exit.cause._tag === "Fail" ? exit.cause.error : undefined) : undefined
          })
          if (Exit.isFailure(exit) && exit.cause._tag !== "Fail") return yield* Effect.dieMessage("publish died")
          yield* Effect.sleep("25 millis")
        }
      }).pipe(Effect.forkScoped)

      yield* eventually("traffic before the kill", () => atB.messages.length >= 10)
      const killedAt = Date.now()
      yield* Effect.promise(() => server.kill())
      const failedAfterKill = () => attempts.filter((x) => x.startedAt >= killedAt && x.error !== undefined)
      yield* eventually("3 failed publishes while Redis is down", () => failedAfterKill().length >= 3, 8_000)
      yield* eventually("the subscriber's onError to hear of it", () => atB.errors.length >= 1, 3_000)

      const restartedAt = Date.now()
      yield* Effect.promise(() => server.restart())
      const firstAfterRestart = attempts.length
      yield* eventually(
        "a message published after the restart to arrive",
        () => atB.messages.some((m) => Number(m) >= firstAfterRestart),
        5_000
      )
      const resumedAt = atB.arrivals[atB.messages.findIndex((m) => Number(m) >= firstAfterRestart)]!
      stop = true
      yield* Fiber.join(loop)

      const failed = attempts.filter((x) => x.error !== undefined)
      const firstFailure = failed[0]!
      const report = {
        publishesTotal: attempts.length,
        publishesFailed: failed.length,
        firstFailureAfterKillMs: firstFailure.startedAt + firstFailure.ms - killedAt,
        slowestFailedPublishMs: Math.max(...failed.map((x) => x.ms)),
        resumeAfterRestartMs: resumedAt - restartedAt,
        subscriberErrors: atB.errors.map((e) => (e.cause as Error).message)
      }
      console.log("[faults] SIGKILL/restart:", JSON.stringify(report))

      // every failure is a typed TransportError of the publish, and each came fast
      for (const x of failed) {
        expect(x.error).toBeInstanceOf(TransportError)
        expect(x.error!.operation).toBe("publish")
      }
      expect(report.firstFailureAfterKillMs).toBeLessThan(1_500)
      expect(report.slowestFailedPublishMs).toBeLessThan(1_500)
      // the loop went on after the failures: publishes succeeded again
      expect(attempts.filter((x) => x.startedAt > restartedAt && x.error === undefined).length).toBeGreaterThan(0)
      expect(report.resumeAfterRestartMs).toBeLessThan(5_000)
      // the subscriber was told, once per distinct error (not once per reconnect attempt)
      for (const e of atB.errors) {
        expect(e).toBeInstanceOf(TransportError)
        expect(e.operation).toBe("subscriber")
      }
      expect(new Set(report.subscriberErrors).size).toBe(report.subscriberErrors.length)
      // nothing was delivered twice, nothing out of order, and no failed publish arrived late
      const received = atB.messages.map(Number)
      for (let i = 1; i < received.length; i++) expect(received[i]!).toBeGreaterThan(received[i - 1]!)
      const failedIndexes = new Set(failed.map((x) => x.index))
      expect(received.filter((i) => failedIndexes.has(i))).toEqual([])
      yield* Effect.promise(() => server.stop())
    }), 30_000)

  it.scopedLive("Redis down at start: the layer builds, publish fails within a second, delivery starts when Redis comes", () =>
    Effect.gen(function*() {
      const port = yield* Effect.promise(() => freePort())
      const url = `redis://127.0.0.1:${port}`
      const channel = unique("late")
      const builtIn = Date.now()
      const a = yield* RedisTransport.make({ url })
      const b = yield* RedisTransport.make({ url })
      expect(Date.now() - builtIn).toBeLessThan(500)
      const atB = collector()
      const subscribeStarted = Date.now()
      yield* b.subscribe(channel, atB.handlers)
      const subscribeMs = Date.now() - subscribeStarted
      // subscribe returned after its bounded wait, and said why
      expect(subscribeMs).toBeGreaterThanOrEqual(1_900)
      expect(subscribeMs).toBeLessThan(3_000)
      expect(atB.errors.some((e) => e.operation === "subscribe")).toBe(true)

      const started = Date.now()
      const error = yield* Effect.flip(a.publish(channel, "too early"))
      const failMs = Date.now() - started
      expect(error).toBeInstanceOf(TransportError)
      expect(error.operation).toBe("publish")
      expect(failMs).toBeLessThan(1_500)

      const server = yield* Effect.promise(() => startRedis({ port }))
      const upAt = Date.now()
      // Pub/Sub keeps nothing: a message published before b's queued SUBSCRIBE ran is lost
      // (the publisher may reconnect first). So publish every 50 ms, as traffic would,
      // until messages arrive (bounded), and check what arrives.
      const outcomes: Array<boolean> = []
      for (let i = 0; i < 100 && atB.messages.length === 0 && Date.now() - upAt < 5_000; i++) {
        outcomes.push(Exit.isSuccess(yield* Effect.exit(a.publish(channel, String(i)))))
        yield* Effect.sleep("50 millis")
      }
      yield* eventually("a message after Redis came up", () => atB.messages.length >= 1, 1_000)
      const deliveredAfterUpMs = atB.arrivals[0]! - upAt
      console.log("[faults] down at start:", JSON.stringify({ subscribeMs, publishFailMs: failMs, deliveredAfterUpMs, publishes: outcomes.length }))
      expect(deliveredAfterUpMs).toBeLessThan(5_000)
      // what arrived was published successfully (a failed publish never arrives late)
      for (const m of atB.messages) expect(outcomes[Number(m)]).toBe(true)
      yield* Effect.promise(() => server.stop())
    }), 30_000)

  it.live("closing while Redis is down: quick, no socket left, no reconnect afterwards", () =>
    Effect.gen(function*() {
      const server = yield* Effect.promise(() => startRedis())
      const name = unique("down-close")
      const before = tcpSockets()
      const scope = yield* Scope.make()
      const t = yield* RedisTransport.make({ url: server.url, connectionName: name }).pipe(Scope.extend(scope))
      yield* t.subscribe(unique("c"), collector().handlers).pipe(Scope.extend(scope))
      yield* awaitClients(server.port, `${name}:`, 3)
      yield* Effect.promise(() => server.kill())
      const closing = Date.now()
      yield* Scope.close(scope, Exit.void)
      const closeMs = Date.now() - closing
      expect(closeMs).toBeLessThan(1_500)
      expect(tcpSockets()).toBe(before)
      // Redis back: for longer than the longest reconnect delay (1 s), nobody connects
      yield* Effect.promise(() => server.restart())
      const watchUntil = Date.now() + 1_500
      while (Date.now() < watchUntil) {
        expect(yield* countClients(server.port, `${name}:`)).toBe(0)
        yield* Effect.sleep("100 millis")
      }
      yield* Effect.promise(() => server.stop())
    }), 30_000)
})
