/**
 * One SSE connection.
 *
 * On the Node path a connection is a record in the hub — it owns no fiber, stream or
 * timer — and its lifetime is the response's: it ends when the client goes, when it
 * is closed (`handle.close()`, `sse.close(userId)`), when backpressure disconnects it,
 * or at shutdown. {@link scoped} ties it to an Effect `Scope` instead: closing the
 * scope removes it everywhere and ends the response.
 *
 * @since 0.2.0
 */
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import type { InvalidInput, LimitExceeded, ShuttingDown } from "./Errors.js"
import type * as domain from "./internal/domain.js"
import { SseKify } from "./SseKify.js"

// Aliases, not `export type { … } from`: the bundled declarations of the `Connection`
// namespace turned those re-exports into `typeof` of types (TS2693 without skipLibCheck).

/**
 * What `registerConnection` returns (see `SseKify`).
 *
 * @since 0.2.0
 * @category models
 */
export type ConnectionHandle = domain.ConnectionHandle

/**
 * What to do when a connection's write queue is full.
 *
 * @since 0.2.0
 * @category models
 */
export type DropPolicy = domain.DropPolicy

/**
 * A Node response an SSE connection is made on (HTTP/1.1 or HTTP/2).
 *
 * @since 0.2.0
 * @category models
 */
export type NodeResponse = domain.NodeResponse

/**
 * Options of `registerConnection`.
 *
 * @since 0.2.0
 * @category models
 */
export type RegisterOptions = domain.RegisterOptions

/**
 * Registers a connection on a Node response for the lifetime of the current scope:
 * closing the scope closes the connection. The response ending first (the client
 * went away) removes it at once; the scope's finalizer then has nothing to do.
 *
 * @since 0.2.0
 * @category constructors
 */
export const scoped = (
  userId: string,
  res: NodeResponse,
  options?: RegisterOptions
): Effect.Effect<ConnectionHandle, InvalidInput | ShuttingDown | LimitExceeded, SseKify | Scope.Scope> =>
  Effect.flatMap(SseKify, (sse) => sse.connect(userId, res, options))
