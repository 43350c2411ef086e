/**
 * Replay on connect: what a reconnecting client missed after its `Last-Event-ID`,
 * written before any live frame (synchronously from a memory store; from a shared
 * store while the connection holds its live frames), with the optional gap event.
 */
import * as Effect from "effect/Effect"
import { LastEventIdTooLong } from "../Errors.js"
import * as Frame from "../Frame.js"
import type { Lookup, ReplayBufferService } from "../ReplayBuffer.js"
import type { Conn } from "./conn.js"
import type { Events } from "./events.js"
import type { Resolved } from "./options.js"
import type { Writer } from "./writer.js"

export class Reconnect {
  /** Frames written by replays (`stats().replayed`). */
  replayed = 0
  /** Reconnects whose `Last-Event-ID` was not found (`stats().replayMisses`). */
  replayMisses = 0

  constructor(
    private readonly options: Resolved,
    private readonly replay: ReplayBufferService,
    private readonly writer: Writer,
    private readonly events: Events,
    /** Runs an effect in the background (replay lookups that are not synchronous). */
    private readonly fork: (effect: Effect.Effect<void>) => void
  ) {}

  /** Writes what `conn` missed after `lastEventId`, before any live frame. */
  replayTo(conn: Conn, lastEventId: string): void {
    if (lastEventId.length > this.options.maxLastEventIdLength) {
      this.events.report(new LastEventIdTooLong({ length: lastEventId.length, limit: this.options.maxLastEventIdLength }))
      // (routed mode: frames held while the channel was confirmed go out now)
      if (conn.held !== undefined) this.writer.release(conn, [])
      return
    }
    if (!this.replay.enabled || lastEventId.length === 0) {
      if (conn.held !== undefined) this.writer.release(conn, [])
      return
    }
    const gapEvent = this.options.replayGapEvent
    const gap = (reason: string) => Frame.message(JSON.stringify({ lastEventId, reason }), { event: gapEvent! })
    const write = (frames: ReadonlyArray<Uint8Array>, lastOrder: number | undefined) => {
      if (conn.held === undefined) {
        this.writer.pushAll(conn, frames)
      } else {
        // A shared store (Redis) may already hold frames this instance has not received
        // yet (the publisher recorded them first): they arrive live after the lookup,
        // or arrived while it ran (held). Live frames at or below the newest order key
        // of the lookup are not written again.
        this.writer.release(conn, frames, lastOrder)
      }
    }
    const apply = (lookup: Lookup) => {
      if (lookup._tag === "Found") {
        this.replayed += lookup.frames.length
        if (lookup.missed === true) this.replayMisses++
        // Frames sent while the user had no connection were not kept: say so first.
        write(lookup.missed === true && gapEvent !== undefined ? [gap("offline"), ...lookup.frames] : lookup.frames, lookup.lastOrder)
        return
      }
      this.replayMisses++
      write(gapEvent === undefined ? [] : [gap(lookup.reason)], undefined)
    }
    const sync = this.replay.lookupSync
    if (sync !== undefined) {
      apply(sync(conn.userId, lastEventId))
      return
    }
    this.writer.hold(conn)
    this.fork(
      this.replay.lookup(conn.userId, lastEventId).pipe(
        Effect.matchEffect({
          onFailure: (error) =>
            Effect.sync(() => {
              this.events.report(error)
              this.writer.release(conn, [])
            }),
          onSuccess: (lookup) => Effect.sync(() => apply(lookup))
        })
      )
    )
  }
}
