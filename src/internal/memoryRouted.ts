/**
 * `Transport.memory(bus, { routing: "user" })`: the routed channels of an in-process bus.
 */
import * as Effect from "effect/Effect"
import { TransportError } from "../Errors.js"
import type { MemoryBus, MemoryOptions, RoutedChannels } from "../Transport.js"

/**
 * The routed channels of an in-process bus: one bus listener per channel, counted per
 * interest; the messages of every routed channel go to the one `listen` receiver. With
 * `confirm`, a channel's listener goes on the bus only once confirmed, as a broker
 * delivers only after it acknowledged the subscribe.
 */
export const make = (bus: MemoryBus, confirm: MemoryOptions["confirm"]): RoutedChannels => {
  type Interest = { count: number; unsubscribe: (() => void) | undefined; pending: Promise<void> | undefined }
  const interests = new Map<string, Interest>()
  // (one receiver per transport; several instances given one built transport each get
  // the messages of every channel any of them added)
  const receivers = new Set<(channel: string, message: string) => void>()
  const listenOn = (channel: string, interest: Interest) => {
    interest.unsubscribe = bus.subscribe(channel, (message) => {
      for (const receiver of receivers) receiver(channel, message)
    })
  }
  return {
    add: (channels) =>
      Effect.suspend(() => {
        const fresh: Array<[string, Interest]> = []
        const waits: Array<Promise<void>> = []
        for (const channel of channels) {
          const existing = interests.get(channel)
          if (existing !== undefined) {
            existing.count++
            if (existing.pending !== undefined) waits.push(existing.pending)
            continue
          }
          const interest: Interest = { count: 1, unsubscribe: undefined, pending: undefined }
          interests.set(channel, interest)
          if (confirm === undefined) listenOn(channel, interest)
          else fresh.push([channel, interest])
        }
        if (fresh.length > 0) {
          let confirmed: Promise<void>
          try {
            confirmed = Promise.resolve(confirm!(fresh.map(([channel]) => channel)))
          } catch (error) {
            confirmed = Promise.reject(error)
          }
          const pending = confirmed.then(() => {
            for (const [channel, interest] of fresh) {
              // still wanted (not removed, nor removed and added again meanwhile)
              if (interests.get(channel) === interest && interest.unsubscribe === undefined) listenOn(channel, interest)
            }
          }).finally(() => {
            for (const [, interest] of fresh) if (interest.pending === pending) interest.pending = undefined
          })
          pending.catch(() => {})
          for (const [, interest] of fresh) interest.pending = pending
          waits.push(pending)
        }
        if (waits.length === 0) return Effect.void
        return Effect.asVoid(Effect.tryPromise({
          try: () => Promise.all(waits),
          catch: (cause) => new TransportError({ operation: "subscribe", cause })
        }))
      }),
    remove: (channels) => {
      for (const channel of channels) {
        const interest = interests.get(channel)
        if (interest === undefined) continue
        if (--interest.count > 0) continue
        interests.delete(channel)
        interest.unsubscribe?.()
      }
    },
    listen: (onMessage) =>
      Effect.acquireRelease(
        Effect.sync(() => {
          const receiver = (channel: string, message: string) => onMessage(channel, message)
          receivers.add(receiver)
          return receiver
        }),
        (receiver) => Effect.sync(() => receivers.delete(receiver))
      ).pipe(Effect.asVoid),
    publish: (channel, message) => Effect.sync(() => void bus.publish(channel, message))
  }
}
