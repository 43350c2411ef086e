/**
 * `SseKify.connect`: a connection acquired in a `Scope` (the primary form in the Effect
 * API), on a real `node:http` server with a raw client. Closing the scope removes the
 * connection everywhere and ends the response; a client that leaves first is removed at
 * once, and the scope's release then does nothing more.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Layer, Scope } from "effect"
import { SseKify, Transport } from "../src/index.js"
import { serverWith } from "./support/effectServer.js"
import { connect, until } from "./support/sse.js"

const single = SseKify.layer({ shutdown: { announce: false, graceMs: 0 } }).pipe(Layer.provide(Transport.layerNone))

describe("SseKify.connect (a connection in a Scope)", () => {
  it.scoped("closing the scope removes the connection and the client sees the stream end", () =>
    Effect.gen(function*() {
      const sse = yield* SseKify.SseKify
      const s = yield* serverWith
      const pendingClient = connect(s.server.url + "/")
      const [, res] = yield* Effect.promise(() => s.next())
      const scope = yield* Scope.make()
      const handle = yield* SseKify.connect("alice", res, { rooms: ["news"] }).pipe(Scope.extend(scope))
      const client = yield* Effect.promise(() => pendingClient)
      expect(client.status).toBe(200)
      expect(yield* sse.getUserConnectionIds("alice")).toEqual([handle.connId])
      expect(yield* sse.sendToRoom("news", { n: 1 })).toBe(1)
      yield* Effect.promise(() => client.waitFor((c) => c.messages().length === 1, 5_000, "the first message"))

      yield* Scope.close(scope, Exit.void)
      yield* Effect.promise(() => client.ended())
      expect(yield* sse.isUserOnline("alice")).toBe(false)
      expect(yield* sse.sendToRoom("news", { n: 2 })).toBe(0)
      expect((yield* sse.stats).connections).toBe(0)
    }).pipe(Effect.provide(single)))

  it.scoped("a client that leaves first is removed at once; closing the scope afterwards does nothing more", () =>
    Effect.gen(function*() {
      const sse = yield* SseKify.SseKify
      const seen: Array<string> = []
      const unsubscribe = sse.unsafeSubscribe((event) => void seen.push(event.type), (type) => type === "disconnect" || type === "error")
      yield* Effect.addFinalizer(() => Effect.sync(unsubscribe))
      const s = yield* serverWith
      const pendingClient = connect(s.server.url + "/")
      const [, res] = yield* Effect.promise(() => s.next())
      const scope = yield* Scope.make()
      yield* SseKify.connect("bob", res).pipe(Scope.extend(scope))
      const client = yield* Effect.promise(() => pendingClient)

      client.close()
      yield* Effect.promise(() => until(() => seen.length > 0, 5_000, "the disconnect"))
      expect(seen).toEqual(["disconnect"])
      expect(yield* sse.isUserOnline("bob")).toBe(false)

      // the release runs on a connection that is already gone: no error, no second 'disconnect'
      yield* Scope.close(scope, Exit.void)
      expect(seen).toEqual(["disconnect"])
      expect((yield* sse.stats).errorCount).toBe(0)
      expect((yield* sse.stats).connections).toBe(0)
    }).pipe(Effect.provide(single)))

  it.scoped("a refused registration fails in the scope with the typed error and leaves nothing to release", () =>
    Effect.gen(function*() {
      const sse = yield* SseKify.SseKify
      const s = yield* serverWith
      const pendingClient = connect(s.server.url + "/")
      const [, res] = yield* Effect.promise(() => s.next())
      const exit = yield* Effect.exit(Effect.scoped(SseKify.connect("", res)))
      const client = yield* Effect.promise(() => pendingClient)
      expect(Exit.isFailure(exit) && exit.cause._tag === "Fail" ? exit.cause.error._tag : exit._tag).toBe("InvalidInput")
      expect(client.status).toBe(400)
      expect((yield* sse.stats).connections).toBe(0)
    }).pipe(Effect.provide(single)))
})
