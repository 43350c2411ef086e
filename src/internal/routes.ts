/**
 * Routed mode (`routing: "user"`): the per-user and per-room channels this instance
 * listens on. The hub calls `userUp` when it registers a user's first connection here,
 * `userDown` after the last one left (`roomUp` / `roomDown` for a room's first and last
 * member); each runs `RoutedChannels.add` / `remove` at once (the transport counts the
 * interests and batches the commands of one tick).
 *
 * A channel is "confirmed" once its `add` completed, or failed (the failure is reported;
 * the transport keeps retrying): a connection that needs it waits for that before its
 * replay and its 'connect' event (`whenReady`), see `Registration.attach`.
 */
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type { TransportError } from "../Errors.js"
import { roomChannel, type RoutedChannels, userChannel } from "../Transport.js"

interface Interest {
  confirmed: boolean
  waiters: Array<() => void> | undefined
}

/** Runs an effect now (synchronously up to its first asynchronous step) in the instance's background. */
export type ForkNow = (effect: Effect.Effect<void>) => void

export class Routes {
  private readonly interests = new Map<string, Interest>()

  constructor(
    private readonly routed: RoutedChannels,
    private readonly channel: string,
    private readonly forkNow: ForkNow,
    private readonly report: (error: TransportError) => void
  ) {}

  /** Channels this instance listens on (for tests and stats). */
  get size(): number {
    return this.interests.size
  }

  userChannel(userId: string): string {
    return userChannel(this.channel, userId)
  }

  roomChannel(room: string): string {
    return roomChannel(this.channel, room)
  }

  userUp(userId: string): void {
    this.up(userChannel(this.channel, userId))
  }

  userDown(userId: string): void {
    this.down(userChannel(this.channel, userId))
  }

  roomUp(room: string): void {
    this.up(roomChannel(this.channel, room))
  }

  roomDown(room: string): void {
    this.down(roomChannel(this.channel, room))
  }

  private up(channel: string): void {
    if (this.interests.has(channel)) return
    const interest: Interest = { confirmed: false, waiters: undefined }
    this.interests.set(channel, interest)
    const settle = () => {
      interest.confirmed = true
      const waiters = interest.waiters
      interest.waiters = undefined
      if (waiters !== undefined) for (const waiter of waiters) waiter()
    }
    this.forkNow(
      this.routed.add([channel]).pipe(
        Effect.matchCause({
          onFailure: (cause) => {
            // a failure is reported (the transport keeps retrying); an interruption is
            // the instance shutting down: its connections are being closed
            const failure = Cause.failureOption(cause)
            if (Option.isSome(failure)) this.report(failure.value)
            if (!Cause.isInterruptedOnly(cause)) settle()
          },
          onSuccess: settle
        })
      )
    )
  }

  private down(channel: string): void {
    const interest = this.interests.get(channel)
    if (interest === undefined) return
    this.interests.delete(channel)
    this.routed.remove([channel])
  }

  /**
   * Whether every one of `channels` is confirmed. When not, `then` runs once they all
   * are (a channel dropped meanwhile counts as confirmed: its waiters run when its own
   * `add` settles).
   */
  whenReady(channels: ReadonlyArray<string>, then: () => void): boolean {
    let pending = 0
    const one = () => {
      if (--pending === 0) then()
    }
    const waitOn: Array<Interest> = []
    for (const channel of channels) {
      const interest = this.interests.get(channel)
      if (interest !== undefined && !interest.confirmed) waitOn.push(interest)
    }
    if (waitOn.length === 0) return true
    pending = waitOn.length
    for (const interest of waitOn) (interest.waiters ??= []).push(one)
    return false
  }
}
