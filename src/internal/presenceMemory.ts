/**
 * The in-memory presence store: the same rules as the Redis one (`internal/redis/
 * presence.ts`) for instances that share one process (tests, or several `SseKify`
 * layers in one app). Per key, each member has a score: a score ≥ 0 is the time
 * its entry expires (live while above `now`), a negative one marks a member evicted
 * under `closeOldest` at time `-score - 1` (its instance closes it at its next beat); marks
 * older than two TTLs are forgotten, as Redis forgets them.
 *
 * Plain TypeScript: `now` is passed in (the layer reads Effect's `Clock`, so a
 * `TestClock` drives expiry).
 */
import type { Admission } from "../Presence.js"

type Members = Map<string, number>

/** One process's presence keys. */
export class MemoryPresence {
  private readonly keys = new Map<string, { members: Members; ttlMs: number }>()

  constructor(private readonly now: () => number) {}

  /** The members of `key` after dropping expired entries and old eviction marks. */
  private live(key: string, ttlMs: number, now: number): Members | undefined {
    const entry = this.keys.get(key)
    if (entry === undefined) return undefined
    entry.ttlMs = Math.max(entry.ttlMs, ttlMs)
    for (const [member, score] of entry.members) {
      if (score >= 0 ? score <= now : -score - 1 < now - 2 * entry.ttlMs) entry.members.delete(member)
    }
    if (entry.members.size === 0) {
      this.keys.delete(key)
      return undefined
    }
    return entry.members
  }

  private members(key: string, ttlMs: number): Members {
    let entry = this.keys.get(key)
    if (entry === undefined) this.keys.set(key, entry = { members: new Map(), ttlMs })
    return entry.members
  }

  private static count(members: Members | undefined, now: number): number {
    if (members === undefined) return 0
    let n = 0
    for (const score of members.values()) if (score > now) n++
    return n
  }

  admit(key: string, member: string, ttlMs: number, max: number, closeOldest: boolean): Admission {
    const now = this.now()
    const current = this.live(key, ttlMs, now)
    let live = MemoryPresence.count(current, now)
    const evicted: Array<string> = []
    if (max > 0 && live >= max) {
      if (!closeOldest) return { admitted: false, count: live, evicted }
      // the oldest members first: member names begin with their zero-padded start time
      const members = Array.from(current!.entries()).filter(([, score]) => score > now).map(([name]) => name).sort()
      const excess = live - max + 1
      for (let i = 0; i < excess; i++) {
        current!.set(members[i]!, -now - 1)
        evicted.push(members[i]!)
      }
      live -= excess
    }
    this.members(key, ttlMs).set(member, now + ttlMs)
    return { admitted: true, count: live + 1, evicted }
  }

  beat(entries: ReadonlyArray<readonly [key: string, members: ReadonlyArray<string>]>, ttlMs: number): Array<string> {
    const now = this.now()
    const evicted: Array<string> = []
    for (const [key, names] of entries) {
      const current = this.live(key, ttlMs, now)
      for (const name of names) {
        const score = current?.get(name)
        if (score !== undefined && score < 0) {
          current!.delete(name)
          evicted.push(name)
        } else {
          this.members(key, ttlMs).set(name, now + ttlMs)
        }
      }
    }
    return evicted
  }

  remove(entries: ReadonlyArray<readonly [key: string, members: ReadonlyArray<string>]>): void {
    for (const [key, names] of entries) {
      const entry = this.keys.get(key)
      if (entry === undefined) continue
      for (const name of names) entry.members.delete(name)
      if (entry.members.size === 0) this.keys.delete(key)
    }
  }

  count(key: string): number {
    const now = this.now()
    return MemoryPresence.count(this.live(key, 0, now), now)
  }
}
