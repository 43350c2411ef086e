/**
 * The single-channel envelope's hand-written check (`Envelope.decode`) accepts exactly
 * what the `Envelope` schema accepts, and gives the same value (same fields, same key
 * order, a numeric id as a string): property-tested against the schema itself on JSON
 * texts built from the envelope's keys and values of every JSON kind (and the numbers
 * JSON.stringify never writes: -0, 1e400, 2^53).
 */
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import * as Envelope from "../src/Envelope.js"

const bySchema = Schema.decodeUnknownEither(Envelope.Envelope, { onExcessProperty: "ignore" })

const KEYS = ["type", "target", "data", "event", "id", "at", "origin", "n", "b", "c", "sig", "extra", "__proto__"] as const

/** JSON value texts, the envelope's own kinds more often. */
const value = fc.oneof(
  fc.constantFrom('"all"', '"user"', '"room"', '"alice"', '""', "null", "true", "0", "-0", "1", "-1", "1.5", "1e400", "-1e400", "9007199254740992", "9007199254740991", "1023", "[]", "{}", '"1"'),
  fc.jsonValue({ maxDepth: 2 }).map((v) => JSON.stringify(v)),
  fc.integer().map(String),
  fc.double({ noNaN: true, noDefaultInfinity: true }).map((d) => JSON.stringify(d))
)

const object = fc.array(fc.tuple(fc.constantFrom(...KEYS), value), { maxLength: 12 }).map((entries) =>
  "{" + entries.map(([k, v]) => JSON.stringify(k) + ":" + v).join(",") + "}"
)

/** Mostly valid envelopes with one field changed. */
const nearlyValid = fc.tuple(
  fc.constantFrom('"all"', '"user"', '"room"'),
  fc.subarray(["target", "event", "id", "origin", "n", "b", "c", "sig"] as const),
  fc.option(fc.tuple(fc.constantFrom(...KEYS), value), { nil: undefined })
).map(([type, optional, change]) => {
  const fields: Record<string, string> = { type, data: '{"x":1}', at: "1733400000000", target: '"alice"' }
  for (const k of optional) fields[k] = k === "n" || k === "c" ? "5" : k === "id" ? "7" : '"v"'
  if (change !== undefined) fields[change[0]] = change[1]
  return "{" + Object.entries(fields).map(([k, v]) => JSON.stringify(k) + ":" + v).join(",") + "}"
})

const same = (raw: string) => {
  const fast = Envelope.decode(raw)
  let json: unknown
  try {
    json = JSON.parse(raw)
  } catch {
    expect(Either.isLeft(fast)).toBe(true)
    return
  }
  const reference = bySchema(json)
  expect(Either.isRight(fast)).toBe(Either.isRight(reference))
  if (Either.isRight(fast) && Either.isRight(reference)) {
    expect(fast.right).toStrictEqual(reference.right)
    expect(Object.keys(fast.right)).toEqual(Object.keys(reference.right))
    // (-0 and 0 alike for toStrictEqual: compared by Object.is; objects were parsed twice)
    for (const k of Object.keys(reference.right)) {
      const v = (reference.right as Record<string, unknown>)[k]
      if (typeof v !== "object" || v === null) expect(Object.is((fast.right as Record<string, unknown>)[k], (reference.right as Record<string, unknown>)[k])).toBe(true)
    }
  }
}

describe("Envelope.decode's hand-written check", () => {
  it("accepts exactly what the Envelope schema accepts, with the same value", () => {
    fc.assert(fc.property(fc.oneof(object, nearlyValid, value), same), { numRuns: 5000 })
  })

  it("edges", () => {
    for (
      const raw of [
        '{"type":"all","data":null,"at":0}',
        '{"type":"all","at":0}',
        '{"type":"user","data":1,"at":0}',
        '{"type":"user","target":"","data":1,"at":0}',
        '{"type":"all","data":1,"at":-0,"c":-0,"n":-0}',
        '{"type":"all","data":1,"at":1e400}',
        '{"type":"all","data":1,"at":1,"id":1e21}',
        '{"type":"all","data":1,"at":1,"n":1.5}',
        '{"type":"all","data":1,"at":1,"c":-1}',
        '{"type":"all","data":1,"at":"1"}',
        '[{"type":"all","data":1,"at":1}]',
        '{"type":"all","data":1,"at":1,"__proto__":{"x":1}}'
      ]
    ) same(raw)
  })
})
