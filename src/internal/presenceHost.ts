/**
 * What presence and the instance offer each other: the cluster-wide cap as the
 * registration path calls it, and what presence needs of the instance.
 */
import type * as Effect from "effect/Effect"
import type { LimitExceeded, SseKifyError } from "../Errors.js"
import type * as Presence from "../Presence.js"
import type { ConnectionHandle, NodeResponse, SseKifyEvent } from "./domain.js"
import type { ResolvedPresence } from "./presenceOptions.js"

/**
 * The cluster-wide cap, as the registration path uses it once its local checks passed:
 * `now` for a Node response (a handle at once; `open` sets the SSE headers and attaches
 * once the cluster admits it, a refusal is a 429 on the response), `later` for an
 * endpoint that answers first and attaches with the same `connId` afterwards (or
 * `cancel`s).
 */
export interface ClusterAdmission {
  readonly now: (userId: string, res: NodeResponse, connId: string, open: () => ConnectionHandle) => ConnectionHandle
  readonly later: (userId: string, connId: string) => Effect.Effect<void, LimitExceeded>
  readonly cancel: (connId: string) => void
}

/** What presence needs of the instance (the engine implements it): no engine field is touched. */
export interface PresenceHost {
  readonly instanceId: string
  readonly accepting: boolean
  readonly options: {
    readonly channel: string
    readonly presence: ResolvedPresence | undefined
    readonly connectionLimitScope: Presence.ConnectionLimitScope
    readonly maxConnectionsPerUser: number
    readonly connectionLimitPolicy: "reject" | "closeOldest"
  }
  subscribe(listener: (event: SseKifyEvent) => void): () => void
  report(error: Error): void
  /**
   * Closes this instance's connection `connId` (this tick's frames are written first),
   * reporting `reason` first when given; false: no such connection.
   */
  closeConnection(connId: string, reason?: SseKifyError): boolean
  /** Installs (or, with `undefined`, removes) the cluster-wide admission hook. */
  setAdmission(admission: ClusterAdmission | undefined): void
}
