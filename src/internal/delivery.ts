/**
 * Delivery of one encoded frame on this instance: to a user's connections, to every
 * connection, to a room's; recorded for replay once (not per connection); a connection
 * whose replay already wrote the frame (`order <= conn.replayedTo`) skips it. One
 * synchronous pass: per message per connection only `writer.push`.
 */
import type { ReplayBufferService } from "../ReplayBuffer.js"
import type { Conn } from "./conn.js"
import type { Events } from "./events.js"
import type { Hub } from "./hub.js"
import type { Writer } from "./writer.js"

export class Delivery {
  private readonly writer: Writer

  constructor(
    private readonly hub: Hub,
    private readonly replay: ReplayBufferService,
    private readonly events: Events
  ) {
    this.writer = hub.writer
  }

  user(userId: string, frame: Uint8Array, id: string | undefined, published: boolean, order: number): number {
    const entry = this.hub.users.get(userId)
    if (entry === undefined) {
      // Not connected here: the replay buffer decides (memory: keep it with
      // `replayOffline` or remember it was missed; Redis: the publisher keeps it).
      if (id !== undefined && this.replay.enabled) this.replay.offline?.(userId, id, frame, published, order)
      return 0
    }
    const writer = this.writer
    let count = 0
    // `order <= conn.replayedTo`: the connection's replay is being fetched, or already
    // wrote this frame (see `Hub.holdOrSkip`); one compare for the others.
    if (Array.isArray(entry)) {
      for (let i = 0; i < entry.length; i++) {
        const conn = entry[i]!
        if (order <= conn.replayedTo ? writer.holdOrSkip(conn, frame, order) : writer.push(conn, frame)) count++
      }
    } else if (order <= entry.replayedTo ? writer.holdOrSkip(entry, frame, order) : writer.push(entry, frame)) count++
    if (id !== undefined && this.replay.enabled) this.replay.record(userId, id, frame, order)
    if (this.events.wants("message-sent")) this.events.emit("message-sent", { scope: "user", userId, count })
    return count
  }

  all(frame: Uint8Array, id: string | undefined, order: number): number {
    const writer = this.writer
    let count = 0
    for (const conn of this.hub.conns.values()) {
      if (order <= conn.replayedTo ? writer.holdOrSkip(conn, frame, order) : writer.push(conn, frame)) count++
    }
    if (id !== undefined && this.replay.enabled) this.replay.recordAll(this.hub.users.keys(), id, frame, order)
    if (this.events.wants("message-sent")) this.events.emit("message-sent", { scope: "all", count })
    return count
  }

  room(room: string, frame: Uint8Array, id: string | undefined, order: number): number {
    const members = this.hub.rooms.get(room)
    if (members === undefined) return 0
    const writer = this.writer
    let count = 0
    for (const conn of members) {
      if (order <= conn.replayedTo ? writer.holdOrSkip(conn, frame, order) : writer.push(conn, frame)) count++
    }
    if (id !== undefined && this.replay.enabled) this.replay.recordAll(userIdsOf(members), id, frame, order)
    if (this.events.wants("message-sent")) this.events.emit("message-sent", { scope: "room", room, count })
    return count
  }
}

function* userIdsOf(conns: Iterable<Conn>): Iterable<string> {
  for (const conn of conns) yield conn.userId
}
