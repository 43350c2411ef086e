/**
 * A receiver of routed messages for the Redis transport tests: collects what a
 * `RoutedChannels.listen` hands it, and the errors.
 */
import type { Effect, Scope } from "effect"
import type { TransportError } from "../../src/Errors.js"
import type { RoutedChannels } from "../../src/Transport.js"

export const receiver = () => {
  const got: Array<[string, string]> = []
  const errors: Array<TransportError> = []
  const onMessage = (channel: string, message: string) => void got.push([channel, message])
  const onError = (error: TransportError) => void errors.push(error)
  return {
    got,
    errors,
    /** The messages received on `channel`, in order. */
    of: (channel: string) => got.filter(([c]) => c === channel).map(([, m]) => m),
    onMessage,
    onError,
    listen: (routed: RoutedChannels): Effect.Effect<void, never, Scope.Scope> => routed.listen(onMessage, onError)
  }
}
