/**
 * The README's recipe for two instances in one process: one `Context.Tag` per instance,
 * each `Layer.effect(Tag, SseKify.SseKify)` on its own `SseKify.layer`, both on one
 * in-memory bus (`Transport.createMemoryBus`, the one name of the memory bus). A publish
 * on one reaches the other's clients, as two processes on Redis would. Real node:http
 * sockets and a raw client.
 */
import { describe, expect, it } from "@effect/vitest"
import { Context, Effect, Layer } from "effect"
import { SseKify, Transport } from "../src/index.js"
import { serverWith } from "./support/effectServer.js"
import { connect } from "./support/sse.js"

// --- the recipe, as in the README ---
class Front extends Context.Tag("app/Front")<Front, SseKify.SseKifyService>() {}
class Back extends Context.Tag("app/Back")<Back, SseKify.SseKifyService>() {}

function instance<I>(tag: Context.Tag<I, SseKify.SseKifyService>, options: SseKify.LayerOptions, bus: Transport.MemoryBus) {
  return Layer.effect(tag, SseKify.SseKify).pipe(
    Layer.provide(SseKify.layer(options)),
    Layer.provide(Transport.layerMemory(bus))
  )
}
// ---

const quiet = { keepAlive: 0, shutdown: { announce: false, grace: 0 } } as const

describe("two instances in one process", () => {
  it.scopedLive("each tag is its own instance; a publish on one reaches a client of the other", () =>
    Effect.gen(function*() {
      const bus = Transport.createMemoryBus()
      const ctx = yield* Layer.build(
        Layer.merge(instance(Front, { ...quiet, instanceId: "front" }, bus), instance(Back, { ...quiet, instanceId: "back" }, bus))
      )
      const front = Context.get(ctx, Front)
      const back = Context.get(ctx, Back)
      expect([front.instanceId, back.instanceId]).toEqual(["front", "back"])
      yield* Effect.all([front.ready, back.ready])

      const s = yield* serverWith
      const pending = connect(s.server.url + "/")
      const [, res] = yield* Effect.promise(() => s.next())
      yield* back.connect("alice", res)
      const client = yield* Effect.promise(() => pending)
      yield* Effect.addFinalizer(() => Effect.sync(() => client.close()))

      // front has no connection: its local delivery reaches nobody, the bus reaches back's
      expect(yield* front.sendToUser("alice", { local: true })).toBe(0)
      yield* front.publish({ n: 1 }, "alice", { event: "notify" })
      yield* Effect.promise(() => client.waitFor((c) => c.messages().length === 1, 5_000, "the frame via the bus"))
      expect(client.messages().map((f) => [f.event, JSON.parse(f.data).n])).toEqual([["notify", 1]])
      expect((yield* front.stats).connections).toBe(0)
      expect((yield* back.stats).connections).toBe(1)
    }))

  it.scopedLive("two builds of the same recipe on different buses do not talk", () =>
    Effect.gen(function*() {
      const a = Context.get(yield* Layer.build(instance(Front, quiet, Transport.createMemoryBus())), Front)
      const b = Context.get(yield* Layer.build(instance(Back, quiet, Transport.createMemoryBus())), Back)
      const s = yield* serverWith
      const pending = connect(s.server.url + "/")
      const [, res] = yield* Effect.promise(() => s.next())
      yield* b.connect("alice", res)
      const client = yield* Effect.promise(() => pending)
      yield* Effect.addFinalizer(() => Effect.sync(() => client.close()))
      yield* a.publish({ n: 1 }, "alice")
      yield* b.publish({ n: 2 }, "alice")
      yield* Effect.promise(() => client.waitFor((c) => c.messages().length >= 1, 5_000, "b's own frame"))
      expect(client.messages().map((f) => JSON.parse(f.data).n)).toEqual([2])
    }))
})
