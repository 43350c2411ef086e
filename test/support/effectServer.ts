/**
 * For `@effect/vitest` tests: a real `node:http` server (127.0.0.1, free port) in the
 * test's scope, whose requests are handed over one by one (`next()`) so a test can
 * register each response inside an Effect. Closed (sockets destroyed) with the scope.
 */
import * as Effect from "effect/Effect"
import type { IncomingMessage, ServerResponse } from "node:http"
import { startServer } from "./sse.js"

export const serverWith = Effect.acquireRelease(
  Effect.promise(async () => {
    const pending: Array<[IncomingMessage, ServerResponse]> = []
    const waiters: Array<() => void> = []
    const server = await startServer((req, res) => {
      pending.push([req, res])
      waiters.splice(0).forEach((w) => w())
    })
    const next = () =>
      new Promise<[IncomingMessage, ServerResponse]>((resolve) => {
        const take = () => resolve(pending.shift()!)
        if (pending.length > 0) take()
        else waiters.push(take)
      })
    return { server, next }
  }),
  ({ server }) => Effect.promise(() => server.close())
)

export type Server = Effect.Effect.Success<typeof serverWith>
