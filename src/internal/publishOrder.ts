/**
 * Bus publishes that must wait for something first (a message to one user with an id,
 * on a shared replay store: its record must be in the store before the message is on the
 * bus, see `ReplayBufferService.recorded`), and every publish after them: sent in call
 * order. While nothing waits, a publish is sent as it is, at no cost.
 *
 * A queued publish is started synchronously when its turn comes (`forkNow`), so the
 * transport's command is written before the next one's: the order of one publisher's
 * messages on Redis is the order of the calls. `forkNow` must run every effect it is given
 * (not the runtime of an instance that may close first: its caller would wait for ever).
 */
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"

interface Entry {
  ready: boolean
  readonly start: () => void
}

export class PublishOrder {
  /** The publishes waiting, oldest first; `undefined` while none waits. */
  private queue: Array<Entry> | undefined = undefined

  constructor(private readonly forkNow: (effect: Effect.Effect<void>) => void) {}

  /**
   * `send` after `before` (when given) and after every publish queued earlier. Queued at
   * the call (not when the effect runs): the call order is the order on the bus. The
   * result is `send`'s; `before` never fails.
   */
  sendAfter<E>(before: Effect.Effect<void> | undefined, send: Effect.Effect<void, E>): Effect.Effect<void, E> {
    if (before === undefined && this.queue === undefined) return send
    const queue = (this.queue ??= [])
    let result: Exit.Exit<void, E> | undefined
    let resume: ((effect: Effect.Effect<void, E>) => void) | undefined
    const entry: Entry = {
      ready: before === undefined,
      start: () =>
        this.forkNow(Effect.flatMap(Effect.exit(send), (exit) =>
          Effect.sync(() => {
            result = exit
            resume?.(exit)
          })))
    }
    queue.push(entry)
    if (before !== undefined) {
      this.forkNow(Effect.ensuring(before, Effect.sync(() => {
        entry.ready = true
        this.drain()
      })))
    } else {
      this.drain()
    }
    return Effect.async<void, E>((k) => {
      if (result !== undefined) return k(result)
      resume = k
    })
  }

  private drain(): void {
    const queue = this.queue
    if (queue === undefined) return
    while (queue.length > 0 && queue[0]!.ready) queue.shift()!.start()
    if (queue.length === 0 && this.queue === queue) this.queue = undefined
  }
}
