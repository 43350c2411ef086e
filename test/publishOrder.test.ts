/**
 * `PublishOrder` (internal): publishes that wait for something (their record in a shared
 * replay store) and every publish after them go out in call order; a failed send is its
 * caller's failure only; with nothing waiting a publish is sent as it is.
 */
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import { describe, expect, it } from "vitest"
import { PublishOrder } from "../src/internal/publishOrder.js"

const forkNow = (effect: Effect.Effect<void>) => void Effect.runFork(effect, { immediate: true })

/** Lets the scheduler run (a resumed fiber runs on a later tick): `n` macrotasks. */
const ticks = async (n = 20) => {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r))
}

describe("PublishOrder", () => {
  it("nothing waiting: the send itself, started when run", async () => {
    const order = new PublishOrder(forkNow)
    const sent: Array<number> = []
    const send = Effect.sync(() => void sent.push(1))
    const effect = order.sendAfter(undefined, send)
    expect(effect).toBe(send)
    expect(sent).toEqual([])
    await Effect.runPromise(effect)
    expect(sent).toEqual([1])
  })

  it("sends keep the call order behind waits that end in any order; each caller gets its own result", async () => {
    const order = new PublishOrder(forkNow)
    const sent: Array<string> = []
    const send = (name: string, fail = false) =>
      Effect.suspend(() => {
        sent.push(name)
        return fail ? Effect.fail(`failed ${name}`) : Effect.void
      })
    const first = Effect.runSync(Deferred.make<void>())
    const third = Effect.runSync(Deferred.make<void>())
    const results = [
      order.sendAfter(Deferred.await(first), send("1")),
      order.sendAfter(undefined, send("2", true)),
      order.sendAfter(Deferred.await(third), send("3")),
      order.sendAfter(undefined, send("4"))
    ].map((e) => Effect.runFork(Effect.exit(e)))
    // queued at the call: nothing went out yet
    expect(sent).toEqual([])
    Effect.runSync(Deferred.succeed(third, undefined))
    await ticks()
    expect(sent).toEqual([])
    Effect.runSync(Deferred.succeed(first, undefined))
    await ticks()
    expect(sent).toEqual(["1", "2", "3", "4"])
    const exits = await Promise.all(results.map((f) => Effect.runPromise(Fiber.join(f))))
    expect(exits.map(Exit.isSuccess)).toEqual([true, false, true, true])
    expect(exits[1]).toEqual(Exit.fail("failed 2"))
    // the queue is empty again: a send goes as it is
    const direct = Effect.void
    expect(order.sendAfter(undefined, direct)).toBe(direct)
  })

  it("a wait that is interrupted or dies still lets the queue go on", async () => {
    const order = new PublishOrder(forkNow)
    const sent: Array<string> = []
    const send = (name: string) => Effect.sync(() => void sent.push(name))
    const a = order.sendAfter(Effect.interrupt, send("a"))
    const b = order.sendAfter(Effect.die("boom"), send("b"))
    const c = order.sendAfter(undefined, send("c"))
    await Effect.runPromise(Effect.all([a, b, c]))
    expect(sent).toEqual(["a", "b", "c"])
  })

  it("a send that completes before its caller runs the effect: the result is kept", async () => {
    const order = new PublishOrder(forkNow)
    const effect = order.sendAfter(Effect.void, Effect.fail("late"))
    expect(await Effect.runPromise(Effect.exit(effect))).toEqual(Exit.fail("late"))
  })
})
