/**
 * Micro-benchmark (not part of `npm run bench`): the receive-side work per bus message.
 *
 * - single-channel envelope: JSON.parse + the `Envelope` schema (before) vs
 *   `Envelope.decode`'s hand-written check (after), then the frame made again as a
 *   receiver does (serialize `data`, encode the frame);
 * - routed format (`internal/wire.ts`): header checked, frame checked and taken as is.
 *
 * Run: `node --import tsx bench/envelope-decode.ts` (about 10 s). Prints ns per message.
 */
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"
import * as Envelope from "../src/Envelope.js"
import * as Frame from "../src/Frame.js"
import * as Wire from "../src/internal/wire.js"
import { userChannel } from "../src/Transport.js"

const bySchema = Schema.decodeUnknownEither(Envelope.Envelope, { onExcessProperty: "ignore" })
const schemaDecode = (raw: string) => bySchema(JSON.parse(raw))

const payloads = {
  small: { type: "notify", text: "hello", n: 42, timestamp: "2026-12-05T14:00:00.000Z" },
  "1 KB": { type: "feed", items: Array.from({ length: 12 }, (_, i) => ({ id: i, title: `item number ${i} of the feed`, score: i * 1.5, tags: ["a", "b"] })) }
}

let sink = 0
const time = (label: string, f: () => unknown, ms = 700): number => {
  // warm-up, then as many runs as fit in `ms`, best of 3
  for (let i = 0; i < 20_000; i++) f()
  let best = Infinity
  for (let round = 0; round < 3; round++) {
    let n = 0
    const start = process.hrtime.bigint()
    const end = start + BigInt(ms) * 1_000_000n / 3n
    let now = start
    while (now < end) {
      for (let i = 0; i < 1000; i++) if (f() !== undefined) sink++
      n += 1000
      now = process.hrtime.bigint()
    }
    best = Math.min(best, Number(now - start) / n)
  }
  console.log(`${label.padEnd(58)} ${best.toFixed(0).padStart(6)} ns/msg`)
  return best
}

for (const [name, data] of Object.entries(payloads)) {
  const env = Envelope.make({ type: "user", target: "alice", data, event: "notify", id: "1733400000000-1", at: 1733400000000, origin: "inst-1", n: 3 })
  const raw = Envelope.encode(env)
  console.log(`\n${name} payload (envelope ${raw.length} chars)`)
  const before = time("channel: JSON.parse + Schema decode (before)", () => Either.getOrThrow(schemaDecode(raw)))
  const after = time("channel: JSON.parse + hand-written check (after)", () => Either.getOrThrow(Envelope.decode(raw)))
  const frameOf = (e: Envelope.Envelope) => Frame.message(JSON.stringify(e.data), { id: e.id, event: e.event }, true)
  const beforeAll = time("channel: decode + frame again, Schema (before)", () => frameOf(Either.getOrThrow(schemaDecode(raw))))
  const afterAll = time("channel: decode + frame again, hand-written (after)", () => frameOf(Either.getOrThrow(Envelope.decode(raw))))
  const channel = userChannel("ssekify:bus", "alice")
  const frame = Frame.messageText(JSON.stringify(data), { id: env.id, event: env.event }, true)
  const routed = Wire.encode({ type: "user", target: "alice", id: env.id, event: env.event, at: env.at, n: 3, origin: "inst-1" }, frame, channel, undefined)
  const routedAll = time("routed: decode + frame bytes (no payload parse)", () => Buffer.from(Either.getOrThrow(Wire.decode(routed, "ssekify:bus", channel, undefined)).frame, "utf8"))
  console.log(`  decode only: ${(before / after).toFixed(2)}x faster; decode + frame: ${(beforeAll / afterAll).toFixed(2)}x; routed vs channel (after): ${(afterAll / routedAll).toFixed(2)}x`)
}
if (sink < 0) console.log(sink)
