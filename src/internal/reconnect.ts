/**
 * Replay on connect: what a reconnecting client missed after its `Last-Event-ID`,
 * written before any live frame (synchronously from a memory store; from a shared
 * store while the connection holds its live frames), with the optional gap event.
 */
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Tracer from "effect/Tracer"
import { LastEventIdTooLong } from "../Errors.js"
import * as Frame from "../Frame.js"
import type { Lookup, ReplayBufferService } from "../ReplayBuffer.js"
import type { Conn } from "./conn.js"
import type { Events } from "./events.js"
import { type Ambient, Attr, SpanName } from "./observe.js"
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

  /**
   * Writes what `conn` missed after `lastEventId`, before any live frame: in a span
   * when spans are on (ended when a lookup in a shared store completes), its reports
   * logged with the connection's user and id.
   */
  replayTo(conn: Conn, lastEventId: string): void {
    const observe = this.events.observe
    const outer = observe.current?.span
    const span = observe.start(SpanName.replay, {
      [Attr.userId]: conn.userId,
      [Attr.connId]: conn.id,
      [Attr.lastEventIdLength]: lastEventId.length
    })
    const ambient = { span: span ?? outer, userId: conn.userId, connId: conn.id }
    let async = false
    try {
      async = observe.within(ambient, () => this.replayIn(conn, lastEventId, span, ambient))
    } finally {
      if (span !== undefined && !async) observe.end(span)
    }
  }

  /** The replay; true when a lookup runs in the background (it ends `span`). */
  private replayIn(conn: Conn, lastEventId: string, span: Tracer.Span | undefined, ambient: Ambient): boolean {
    if (lastEventId.length > this.options.maxLastEventIdLength) {
      this.events.report(new LastEventIdTooLong({ length: lastEventId.length, limit: this.options.maxLastEventIdLength }))
      // (routed mode: frames held while the channel was confirmed go out now)
      if (conn.held !== undefined) this.writer.release(conn, [])
      return false
    }
    if (!this.replay.enabled || lastEventId.length === 0) {
      if (conn.held !== undefined) this.writer.release(conn, [])
      return false
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
      span?.attribute(Attr.replayed, lookup._tag === "Found" ? lookup.frames.length : 0)
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
      return false
    }
    this.writer.hold(conn)
    const observe = this.events.observe
    this.fork(
      this.replay.lookup(conn.userId, lastEventId).pipe(
        Effect.matchEffect({
          onFailure: (error) =>
            Effect.sync(() => {
              observe.within(ambient, () => this.events.report(error))
              this.writer.release(conn, [])
              if (span !== undefined) observe.end(span, Exit.fail(error))
            }),
          onSuccess: (lookup) =>
            Effect.sync(() => {
              observe.within(ambient, () => apply(lookup))
              if (span !== undefined) observe.end(span)
            })
        })
      )
    )
    return true
  }
}
