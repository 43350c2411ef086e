/**
 * The replay window of a signed bus (`ReplayGuard`), property-based against a reference
 * model: a Set of every (stream, counter) accepted, the highest counter per stream, and
 * the age limit. Within its bounds the guard agrees with the model; past its stream
 * bound it refuses nothing the model accepts and lets a replay through only for a stream
 * its LRU forgot. Fast (no I/O); the end-to-end cases are in `hostile-bus.test.ts`.
 */
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { ReplayGuard, WINDOW } from "../src/internal/replayGuard.js"

const MAX_AGE = 60_000

/**
 * The reference: every (stream, counter) ever accepted, the highest counter accepted per
 * stream, and the age limit. A message is accepted when it is young enough, not seen,
 * and not below the bounded window of its stream.
 */
class Model {
  readonly seen = new Set<string>()
  readonly top = new Map<string, number>()
  admit(stream: string, counter: number, at: number, now: number): boolean {
    if (Math.abs(at - now) > MAX_AGE) return false
    if (this.seen.has(`${stream}/${counter}`)) return false
    const top = this.top.get(stream)
    if (top !== undefined && counter <= top - WINDOW) return false
    this.seen.add(`${stream}/${counter}`)
    if (top === undefined || counter > top) this.top.set(stream, counter)
    return true
  }
}

type Op = {
  readonly stream: number
  /** An absolute counter, or (`relative`) one this far from the highest the model accepted on the stream. */
  readonly counter: number
  readonly relative: boolean
  readonly dt: number
  readonly skew: number
  /** Re-send an earlier message instead: this many back (recent ones more often). */
  readonly replay: number | null
}

/** Mostly a new message; one in `1 + fresh` a replay of one of the last `back` (or of any earlier one). */
const replayOf = (back: number, fresh = 3): fc.Arbitrary<number | null> =>
  fc.oneof(
    { arbitrary: fc.constant(null), weight: fresh },
    { arbitrary: fc.nat(back), weight: 1 }
  )

const edges = (n: number): Array<number> => [-n - 1, -n, -n + 1, n - 1, n, n + 1]

const op = (streams: number): fc.Arbitrary<Op> =>
  fc.record({
    stream: fc.nat(streams - 1),
    counter: fc.oneof(
      fc.nat(40),
      fc.integer({ min: 0, max: 5 * WINDOW }),
      fc.constantFrom(1, 2, 3, -1, -2, 0, ...edges(WINDOW), ...edges(32), 31, 33, 63, 64, 65),
      fc.integer({ min: -WINDOW - 3, max: WINDOW + 3 })
    ),
    relative: fc.boolean(),
    dt: fc.oneof(fc.constant(0), fc.nat(1_000), fc.nat(70_000)),
    skew: fc.oneof(fc.constant(0), fc.constantFrom(...edges(MAX_AGE)), fc.integer({ min: -200_000, max: 200_000 })),
    replay: fc.oneof(replayOf(8), replayOf(1_000))
  })

type Msg = { readonly stream: string; readonly counter: number; readonly at: number }

/** The message an op stands for. */
const messageOf = (o: Op, done: ReadonlyArray<Msg>, model: Model, now: number): Msg => {
  if (o.replay !== null && done.length > 0) return done[done.length - 1 - (o.replay % done.length)]!
  const stream = `s${o.stream}`
  const counter = o.relative ? Math.max(0, (model.top.get(stream) ?? 0) + o.counter) : Math.abs(o.counter)
  return { stream, counter, at: now + o.skew }
}

/**
 * One stream, one instant: the top creeps forward while older counters arrive, down to
 * the window's edge and past it, so stale bits of counters one window apart are hit.
 */
const denseOp: fc.Arbitrary<Op> = fc.record({
  stream: fc.constant(0),
  counter: fc.oneof(
    fc.integer({ min: 1, max: 40 }),
    fc.integer({ min: -WINDOW - 2, max: 0 }),
    fc.integer({ min: -WINDOW - 2, max: -WINDOW + 40 }),
    fc.constantFrom(-WINDOW - 1, -WINDOW, -WINDOW + 1, WINDOW - 1, WINDOW, WINDOW + 1)
  ),
  relative: fc.constant(true),
  dt: fc.constant(0),
  skew: fc.constant(0),
  replay: replayOf(30)
})

/** Fresh messages of many publishers, each counter once (or a few ahead), and replays of recent ones. */
const freshOp = (streams: number): fc.Arbitrary<Op> =>
  fc.record({
    stream: fc.nat(streams - 1),
    counter: fc.integer({ min: 1, max: 3 }),
    relative: fc.constant(true),
    dt: fc.nat(100),
    skew: fc.constant(0),
    replay: replayOf(30)
  })

/** Runs the ops on a guard of `bound` streams and on the model; checks each step with `check`. */
const play = (
  ops: ReadonlyArray<Op>,
  bound: number,
  check: (m: Msg, ok: boolean, modelOk: boolean, now: number, model: Model, accepted: ReadonlyArray<Msg>) => void
): void => {
  const guard = new ReplayGuard(MAX_AGE, bound)
  const model = new Model()
  const accepted: Array<Msg> = []
  const done: Array<Msg> = []
  let now = 1_700_000_000_000
  for (const o of ops) {
    now += o.dt
    const m = messageOf(o, done, model, now)
    done.push(m)
    const ok = guard.admit(m.stream, m.counter, m.at, now) === undefined
    const modelOk = model.admit(m.stream, m.counter, m.at, now)
    check(m, ok, modelOk, now, model, accepted)
    if (ok) accepted.push(m)
    expect(guard.size).toBeLessThanOrEqual(bound)
  }
}

/**
 * Whether `stream` was pushed out of an LRU of `bound` streams after `accepted[from]`:
 * `bound` other streams were accepted in a row without it.
 */
const evictedAfter = (accepted: ReadonlyArray<Msg>, from: number, stream: string, bound: number): boolean => {
  let others = new Set<string>()
  for (let i = from + 1; i < accepted.length; i++) {
    if (accepted[i]!.stream === stream) others = new Set()
    else if (others.add(accepted[i]!.stream).size >= bound) return true
  }
  return false
}

/**
 * With more streams than the guard remembers: it never refuses what the model accepts,
 * and accepts what the model refuses only for a young message whose stream the LRU
 * forgot after the acceptance that makes the model refuse it (the same counter, or the
 * stream's highest).
 */
const evictionOnly = (bound: number) =>
(m: Msg, ok: boolean, modelOk: boolean, now: number, model: Model, accepted: ReadonlyArray<Msg>) => {
  if (!ok) expect(modelOk).toBe(false)
  if (ok && !modelOk) {
    // (a refusal leaves the model as it was)
    expect(Math.abs(m.at - now)).toBeLessThanOrEqual(MAX_AGE)
    const counter = model.seen.has(`${m.stream}/${m.counter}`) ? m.counter : model.top.get(m.stream)
    let from = accepted.length - 1
    while (from >= 0 && !(accepted[from]!.stream === m.stream && accepted[from]!.counter === counter)) from--
    expect(from).toBeGreaterThanOrEqual(0)
    expect(evictedAfter(accepted, from, m.stream, bound)).toBe(true)
  }
}

const agrees = (_m: Msg, ok: boolean, modelOk: boolean) => {
  expect(ok).toBe(modelOk)
}

describe("the replay window (ReplayGuard) against a reference model", () => {
  it("agrees with the model while the streams fit (mixed ages, counters, replays); never throws", () => {
    fc.assert(fc.property(fc.array(op(6), { maxLength: 300, size: "max" }), (ops) => play(ops, 6, agrees)), { numRuns: 300 })
  })

  it("agrees with the model on one stream with dense counters (window edges, reordering, moves)", () => {
    fc.assert(fc.property(fc.array(denseOp, { maxLength: 400, size: "max" }), (ops) => play(ops, 1, agrees)), { numRuns: 300 })
  })

  it("with more streams than it remembers: refuses nothing the model accepts, and replays pass only after an LRU eviction", () => {
    fc.assert(fc.property(fc.array(op(12), { maxLength: 300, size: "max" }), (ops) => play(ops, 4, evictionOnly(4))), { numRuns: 200 })
    fc.assert(fc.property(fc.array(freshOp(7), { maxLength: 300, size: "max" }), (ops) => play(ops, 4, evictionOnly(4))), { numRuns: 300 })
  })

  it("a legitimate stream (fresh, each counter once, reordered within the window) is accepted whole, whatever the number of publishers", () => {
    fc.assert(
      fc.property(
        fc.array(fc.nat(19), { minLength: 1, maxLength: 400, size: "max" }),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 40 })), { maxLength: 100, size: "max" }),
        (publishers, swaps) => {
          const next = new Map<number, number>()
          const messages = publishers.map((p) => {
            const c = (next.get(p) ?? 0) + 1
            next.set(p, c)
            return { stream: `p${p}`, counter: c }
          })
          // reorder: swap messages a short distance apart (well within the window)
          for (const [i, d] of swaps) {
            const x = i % messages.length
            const y = Math.min(messages.length - 1, x + d)
            ;[messages[x], messages[y]] = [messages[y]!, messages[x]!]
          }
          const guard = new ReplayGuard(MAX_AGE, 4)
          const now = 1_700_000_000_000
          for (const m of messages) expect(guard.admit(m.stream, m.counter, now, now)).toBeUndefined()
        }
      ),
      { numRuns: 300 }
    )
  })
})
