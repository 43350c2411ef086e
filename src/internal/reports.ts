/**
 * Where a store reports what goes wrong in the background (a failing Redis append, the
 * global seq falling back to memory): to every instance it serves. An instance
 * subscribes for its scope's lifetime (`subscribeErrors`), so a store shared by two
 * instances in one process tells both, and a store outliving an instance stops telling it.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"

export class Reports<E> {
  private readonly listeners = new Set<(error: E) => void>()

  /** Tells every subscribed instance. */
  readonly emit = (error: E): void => {
    for (const listener of Array.from(this.listeners)) listener(error)
  }

  /** Adds `listener` until the scope closes. */
  readonly subscribe = (listener: (error: E) => void): Effect.Effect<void, never, Scope.Scope> =>
    Effect.acquireRelease(
      Effect.sync(() => {
        const own = (error: E) => listener(error)
        this.listeners.add(own)
        return own
      }),
      (own) => Effect.sync(() => void this.listeners.delete(own))
    ).pipe(Effect.asVoid)
}
