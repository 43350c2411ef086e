/**
 * Property-style tests: random operation sequences on the replay ring / LRU and on the
 * seq counters, checked against simple models (arrays and sorts, no cleverness).
 */
import { describe, expect, it } from "vitest"
import { MemoryReplay } from "../src/internal/replay.js"
import { SequencerState as SequencerImpl } from "../src/internal/sequencer.js"
import * as Option from "effect/Option"

/** mulberry32: a small seeded PRNG so failures reproduce. */
const rng = (seed: number) => () => {
  seed |= 0
  seed = (seed + 0x6d2b79f5) | 0
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}

interface ModelUser {
  frames: Array<{ id: string; frame: Uint8Array }>
  lastActive: number
  /** Order of the last touch (times can tie; recency cannot). */
  touched: number
  overflowed: boolean
}

/** The obvious implementation: arrays, and a sort to find the least recently active. */
class ReplayModel {
  users = new Map<string, ModelUser>()
  gone = new Map<string, "expired" | "evicted">()
  tick = 0
  constructor(readonly size: number, readonly ttl: number, readonly maxUsers: number) {}

  private expire(now: number) {
    if (this.ttl <= 0) return
    for (const [u, v] of Array.from(this.users)) {
      if (now - v.lastActive > this.ttl) {
        this.users.delete(u)
        this.gone.set(u, "expired")
      }
    }
  }

  record(user: string, id: string, frame: Uint8Array, now: number) {
    this.expire(now)
    let u = this.users.get(user)
    if (!u) {
      u = { frames: [], lastActive: now, touched: 0, overflowed: false }
      this.users.set(user, u)
      this.gone.delete(user)
    }
    u.frames.push({ id, frame })
    if (u.frames.length > this.size) {
      u.frames.shift()
      u.overflowed = true
    }
    u.lastActive = now
    u.touched = ++this.tick
    while (this.users.size > this.maxUsers) {
      const oldest = Array.from(this.users).sort((a, b) => a[1].touched - b[1].touched)[0]![0]
      this.users.delete(oldest)
      this.gone.set(oldest, "evicted")
    }
  }

  lookup(user: string, id: string, now: number) {
    this.expire(now)
    const u = this.users.get(user)
    if (!u) return { _tag: "Miss", reason: this.gone.get(user) ?? "unknown" }
    u.lastActive = now
    u.touched = ++this.tick
    let k = -1
    for (let i = u.frames.length - 1; i >= 0; i--) {
      if (u.frames[i]!.id === id) {
        k = i
        break
      }
    }
    if (k < 0) return { _tag: "Miss", reason: u.overflowed ? "evicted" : "unknown" }
    return { _tag: "Found", frames: u.frames.slice(k + 1).map((f) => f.frame), ids: u.frames.slice(k + 1).map((f) => f.id) }
  }

  clear(user?: string) {
    if (user === undefined) {
      this.users.clear()
      this.gone.clear()
    } else {
      this.users.delete(user)
      this.gone.delete(user)
    }
  }
}

describe("replay ring and LRU against a model", () => {
  for (const seed of [1, 2, 3, 4, 5, 6, 7, 8]) {
    it(`random operations agree (seed ${seed})`, () => {
      const random = rng(seed)
      const size = 1 + Math.floor(random() * 6)
      const maxUsers = 1 + Math.floor(random() * 5)
      const ttl = random() < 0.3 ? 0 : 50 + Math.floor(random() * 200)
      const real = new MemoryReplay({ size, ttlMs: ttl, maxUsers, recordOffline: false })
      const model = new ReplayModel(size, ttl, maxUsers)
      const users = ["a", "b", "c", "d", "e", "f", "g"]
      let now = 1_000
      let nextId = 0
      const ids: Array<string> = []
      for (let step = 0; step < 3_000; step++) {
        now += Math.floor(random() * 20)
        const user = users[Math.floor(random() * users.length)]!
        const r = random()
        if (r < 0.55) {
          const id = String(nextId++ % 40) // ids repeat: the last occurrence counts
          ids.push(id)
          const frame = Buffer.from(`frame-${step}`)
          real.record(user, id, frame, now)
          model.record(user, id, frame, now)
        } else if (r < 0.9) {
          const id = ids.length > 0 && random() < 0.85 ? ids[Math.floor(random() * ids.length)]! : "never"
          expect(real.lookup(user, id, now), `step ${step}`).toEqual(model.lookup(user, id, now))
        } else if (r < 0.93) {
          real.clear(user)
          model.clear(user)
        } else if (r < 0.94) {
          real.clear()
          model.clear()
        } else {
          // a sweep only frees memory: what lookups answer must not change
          real.sweep(now)
        }
        expect(real.users).toBeLessThanOrEqual(maxUsers)
      }
    })
  }
})

describe("seq counters against a model", () => {
  for (const seed of [11, 12, 13, 14]) {
    it(`random operations agree (seed ${seed})`, () => {
      const random = rng(seed)
      const ttlSeconds = 1 + Math.floor(random() * 3)
      const maxKeys = 1 + Math.floor(random() * 6)
      const startAt = random() < 0.5 ? 0 : 1
      let now = 0
      const real = new SequencerImpl({ startAt, ttlSeconds, maxKeys, keyPrefix: "" }, Option.none(), false, () => now, () => {})
      const model = new Map<string, { value: number; lastAt: number }>()
      for (let step = 0; step < 3_000; step++) {
        now += Math.floor(random() * 400)
        const key = "k" + Math.floor(random() * 8)
        const final = random() < 0.1
        let entry = model.get(key)
        if (entry && now - entry.lastAt > ttlSeconds * 1000) entry = undefined
        model.delete(key)
        const value = entry ? entry.value + 1 : startAt
        if (!final) {
          model.set(key, { value, lastAt: now })
          while (model.size > maxKeys) {
            const oldest = Array.from(model).sort((a, b) => a[1].lastAt - b[1].lastAt)[0]![0]
            model.delete(oldest)
          }
        }
        expect(real.nextLocal(key, final), `step ${step}`).toBe(value)
        if (random() < 0.05) real.sweep(now)
        expect(real.size).toBeLessThanOrEqual(maxKeys)
      }
    })
  }
})
