/**
 * The instance's events: listeners (each may say which events it takes, so frequent
 * events nobody takes cost nothing), emitting, reporting errors (counted in
 * `stats().errorCount`), and process warnings for what has nobody to report to.
 */
import { CallbackFailed, type SseKifyError } from "../Errors.js"
import type { SseKifyEvent, SseKifyEventMap } from "./domain.js"
import { Observe } from "./observe.js"

export type EventName = keyof SseKifyEventMap
type Listener = (event: SseKifyEvent) => void

export const textOf = (cause: unknown): string => {
  try {
    return cause instanceof Error ? cause.message : String(cause)
  } catch {
    // a thrown value whose conversion to text throws too: named by its type
    return typeof cause
  }
}

/**
 * A process warning (`process.emitWarning`, name `SsekifyWarning`, with the error's
 * `code`): what ssekify does with a failure it has nobody to report to.
 */
export const warn = (message: string, code: string): void => {
  if (typeof process !== "object" || typeof process.emitWarning !== "function") return
  process.emitWarning(message, { type: "SsekifyWarning", code })
}

export class Events {
  /** `'error'` events reported (`stats().errorCount`). */
  errorCount = 0
  /** Logs and spans (`observe.ts`): off until the layer installs them. */
  readonly observe = new Observe()
  private readonly listeners = new Set<{ readonly listener: Listener; readonly wants: ((type: EventName) => boolean) | undefined }>()
  private errorListenerWarned = false

  /**
   * Adds an event listener. `wants` (optional) says which events it takes, so that
   * frequent events nobody takes cost nothing (no payload is built).
   */
  subscribe(listener: Listener, wants?: (type: EventName) => boolean): () => void {
    const entry = { listener, wants }
    this.listeners.add(entry)
    return () => this.listeners.delete(entry)
  }

  /** How many listeners are subscribed (for white-box tests). */
  listenerCount(): number {
    return this.listeners.size
  }

  /** Whether a listener takes events of `type` (check before building a frequent payload). */
  wants(type: EventName): boolean {
    for (const entry of this.listeners) if (entry.wants === undefined || entry.wants(type)) return true
    return false
  }

  emit<K extends EventName>(type: K, payload: SseKifyEventMap[K]): void {
    if (this.listeners.size === 0) return
    const event = { type, payload } as SseKifyEvent
    for (const entry of this.listeners) {
      if (entry.wants !== undefined && !entry.wants(type)) continue
      try {
        entry.listener(event)
      } catch (cause) {
        // A listener's failure is not the sender's: the operation goes on and the failure
        // is reported; an 'error' listener's own failure as a process warning (once per
        // instance), since reporting it as an 'error' would call that listener again.
        if (type !== "error") this.report(new CallbackFailed({ callback: `'${type}' listener`, cause }))
        else if (!this.errorListenerWarned) {
          this.errorListenerWarned = true
          warn(`an 'error' listener threw: ${textOf(cause)}`, "CALLBACK_FAILED")
        }
      }
    }
  }

  /** Counts an error, logs it (when the layer installed a logger) and emits it as an `'error'` event. */
  report(error: SseKifyError): void {
    this.errorCount++
    this.observe.report(error)
    this.emit("error", error)
  }
}
