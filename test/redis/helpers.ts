/**
 * Helpers of the Redis suites (not a test file).
 */
import * as Effect from "effect/Effect"
import type { TransportError } from "../../src/Errors.js"
import type { Handlers } from "../../src/Transport.js"
import { redisCli } from "../support/redisServer.js"

/** Handlers that record what they get, with the time each message arrived. */
export const collector = () => {
  const messages: Array<string> = []
  const arrivals: Array<number> = []
  const errors: Array<TransportError> = []
  const handlers: Handlers = {
    onMessage: (message) => {
      messages.push(message)
      arrivals.push(Date.now())
    },
    onError: (error) => {
      errors.push(error)
    }
  }
  return { messages, arrivals, errors, handlers }
}

/**
 * Polls `check` (every 20 ms) until it holds; fails with `what` after `timeoutMs`.
 * Returns the milliseconds it took.
 */
export const eventually = (what: string, check: () => boolean, timeoutMs = 5_000): Effect.Effect<number> =>
  Effect.gen(function*() {
    const start = Date.now()
    while (!check()) {
      if (Date.now() - start > timeoutMs) return yield* Effect.dieMessage(`timed out after ${timeoutMs} ms waiting for ${what}`)
      yield* Effect.sleep("20 millis")
    }
    return Date.now() - start
  })

/** The names of the clients connected to the Redis on `port` (`CLIENT LIST`). */
export const clientNames = async (port: number, password?: string): Promise<Array<string>> => {
  const out = await redisCli(port, ["client", "list"], password !== undefined ? { password } : {})
  return out.split("\n").map((line) => /(?:^| )name=(\S*)/.exec(line)?.[1] ?? "").filter((n) => n !== "")
}

/** How many clients named `<prefix>…` are connected to the Redis on `port`. */
export const countClients = (port: number, prefix: string, password?: string): Effect.Effect<number> =>
  Effect.promise(() => clientNames(port, password)).pipe(
    Effect.map((names) => names.filter((n) => n.startsWith(prefix)).length)
  )

/** Waits until exactly `n` clients named `<prefix>…` are connected (bounded). */
export const awaitClients = (port: number, prefix: string, n: number, timeoutMs = 5_000, password?: string) =>
  Effect.gen(function*() {
    const start = Date.now()
    let last = -1
    while (Date.now() - start <= timeoutMs) {
      last = yield* countClients(port, prefix, password)
      if (last === n) return Date.now() - start
      yield* Effect.sleep("50 millis")
    }
    return yield* Effect.dieMessage(`expected ${n} clients named ${prefix}* on ${port}, saw ${last} after ${timeoutMs} ms`)
  })

/** Open TCP sockets of this process. */
export const tcpSockets = (): number => process.getActiveResourcesInfo().filter((r) => r === "TCPSocketWrap").length

/** A name unique to this run, for channels, keys and connection names. */
export const unique = (prefix: string): string => `${prefix}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`

/** `INFO <section>` of the Redis on `port`, as a map. */
export const info = async (port: number, section: string): Promise<Map<string, string>> => {
  const out = await redisCli(port, ["info", section])
  const map = new Map<string, string>()
  for (const line of out.split(/\r?\n/)) {
    const i = line.indexOf(":")
    if (i > 0) map.set(line.slice(0, i), line.slice(i + 1).trim())
  }
  return map
}

/** Like {@link eventually}, with an effectful check (polled every 50 ms). */
export const eventuallyEffect = <E, R>(
  what: string,
  check: Effect.Effect<boolean, E, R>,
  timeoutMs = 5_000
): Effect.Effect<number, E, R> =>
  Effect.gen(function*() {
    const start = Date.now()
    while (!(yield* check)) {
      if (Date.now() - start > timeoutMs) return yield* Effect.dieMessage(`timed out after ${timeoutMs} ms waiting for ${what}`)
      yield* Effect.sleep("50 millis")
    }
    return Date.now() - start
  })
