/**
 * The `presence` and `connectionLimitScope` options, checked and resolved.
 */
import { InvalidInput } from "../Errors.js"
import type * as Presence from "../Presence.js"
import { either } from "./durations.js"

export const PRESENCE_DEFAULTS = { heartbeatMs: 10_000, ttlMs: 30_000 } as const

export interface ResolvedPresence {
  readonly heartbeatMs: number
  readonly ttlMs: number
  readonly keyPrefix: string | undefined
}

const fail = (field: string, reason: string): never => {
  throw new InvalidInput({ field, reason })
}

const describe = (value: unknown): string =>
  value === null ? "null" : typeof value === "string" ? `'${value.slice(0, 40)}'` : typeof value === "object" ? "an object" : String(value)

const positive = (field: string, value: unknown): number => {
  if (typeof value !== "number" || !Number.isFinite(value) || value <= 0) {
    return fail(field, `must be a finite number > 0, got ${describe(value)}`)
  }
  return Math.ceil(value)
}

/** Validates `presence` and `connectionLimitScope` (a cluster scope turns presence on). */
export const resolveOptions = (
  presence: unknown,
  scope: unknown
): { readonly presence: ResolvedPresence | undefined; readonly connectionLimitScope: Presence.ConnectionLimitScope } => {
  const connectionLimitScope = scope === undefined
    ? "instance"
    : scope === "instance" || scope === "cluster"
    ? scope
    : fail("connectionLimitScope", `must be 'instance' or 'cluster', got ${describe(scope)}`)
  if (presence === undefined || presence === false || presence === null) {
    return {
      presence: connectionLimitScope === "cluster" ? { ...PRESENCE_DEFAULTS, keyPrefix: undefined } : undefined,
      connectionLimitScope
    }
  }
  if (presence === true) return { presence: { ...PRESENCE_DEFAULTS, keyPrefix: undefined }, connectionLimitScope }
  if (typeof presence !== "object") return fail("presence", `must be a boolean or an object, got ${describe(presence)}`)
  const p = presence as Presence.PresenceOptions
  const heartbeatMs = Math.ceil(
    either("presence.heartbeat", p.heartbeat, "presence.heartbeatMs", p.heartbeatMs, positive, PRESENCE_DEFAULTS.heartbeatMs, 1)
  )
  const ttlMs = Math.ceil(
    either("presence.ttl", p.ttl, "presence.ttlMs", p.ttlMs, positive, Math.max(PRESENCE_DEFAULTS.ttlMs, 3 * heartbeatMs), 1)
  )
  if (ttlMs < 2 * heartbeatMs) {
    fail(p.ttl === undefined ? "presence.ttlMs" : "presence.ttl", `must be at least 2 × the heartbeat (${2 * heartbeatMs} ms), got ${ttlMs} ms`)
  }
  const keyPrefix = p.keyPrefix
  if (keyPrefix !== undefined && (typeof keyPrefix !== "string" || keyPrefix.length === 0)) {
    fail("presence.keyPrefix", `must be a non-empty string, got ${describe(keyPrefix)}`)
  }
  return { presence: { heartbeatMs, ttlMs, keyPrefix }, connectionLimitScope }
}
