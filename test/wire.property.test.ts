/**
 * Property tests of the routed wire format (`src/internal/wire.ts`):
 *
 * - encode → decode gives back every header field and the frame byte for byte, signed
 *   or not, and `dataBytes` is the payload's UTF-8 size as the frame carries it;
 * - any change to a signed message (one character replaced, inserted or removed, cut
 *   short, or the same message on another channel) is refused;
 * - whatever a decoder accepts is exactly one SSE event with the header's id and event
 *   (an unsigned forger cannot inject a second event, a `retry:` or a comment);
 * - any string (random, or a routed prefix with random text) never throws.
 */
import * as Either from "effect/Either"
import * as Redacted from "effect/Redacted"
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import * as Frame from "../src/Frame.js"
import { checkFrame, decode, encode, type Fields, overLimit } from "../src/internal/wire.js"
import { roomChannel, userChannel } from "../src/Transport.js"
import { parseFrames } from "./support/sse.js"

const CHANNEL = "ssekify:bus"
const SECRET = Redacted.make("a-secret-of-sixteen-chars")

/** Text with the characters that matter to SSE and JSON, and some unicode. */
const text = (maxLength = 30) =>
  fc.string({
    unit: fc.oneof(
      { arbitrary: fc.constantFrom("\n", "\r", "\r\n", ":", " ", "{", "}", "\"", "\\", "\0", "data: ", "id: ", "é", "😀"), weight: 1 },
      { arbitrary: fc.string({ maxLength: 1, unit: "grapheme" }), weight: 3 }
    ),
    maxLength
  })

const nonEmpty = (maxLength = 20) => text(maxLength).filter((s) => s.length > 0)

const fields: fc.Arbitrary<Fields> = fc.oneof(
  fc.constant<"all">("all").map((type) => ({ type, target: undefined })),
  fc.tuple(fc.constantFrom<"user" | "room">("user", "room"), nonEmpty())
    .map(([type, target]) => ({ type, target }))
).chain((head) =>
  fc.record({
    id: fc.option(nonEmpty(), { nil: undefined }),
    event: fc.option(nonEmpty(), { nil: undefined }),
    at: fc.nat({ max: 2 ** 45 }),
    n: fc.nat(1023),
    origin: nonEmpty(),
    b: fc.option(fc.string({ minLength: 1, maxLength: 12 }), { nil: undefined }),
    c: fc.option(fc.nat(), { nil: undefined })
  }).map((rest) => ({
    ...head,
    ...rest,
    // b and c travel together (a signed bus), or not at all
    b: rest.b === undefined || rest.c === undefined ? undefined : rest.b,
    c: rest.b === undefined || rest.c === undefined ? undefined : rest.c
  }))
)

const channelFor = (f: Fields) =>
  f.type === "all" ? CHANNEL : f.type === "user" ? userChannel(CHANNEL, f.target!) : roomChannel(CHANNEL, f.target!)

const frameFor = (f: Fields, data: string) => Frame.messageText(data, { id: f.id, event: f.event })

describe("the routed wire format", () => {
  it("encode → decode round-trips every field and the frame, signed and unsigned", () => {
    fc.assert(
      fc.property(fields, text(60), fc.boolean(), (f, data, signed) => {
        const channel = channelFor(f)
        const frame = frameFor(f, data)
        const raw = encode(f, frame, channel, signed ? SECRET : undefined)
        // a limit of 1 byte: the size is measured in bytes whenever it is not 0
        const decoded = decode(raw, CHANNEL, channel, signed ? SECRET : undefined, 1)
        if (Either.isLeft(decoded)) throw new Error(decoded.left.reason)
        const m = decoded.right
        expect(m).toEqual({
          type: f.type,
          target: f.target,
          id: f.id,
          event: f.event,
          at: f.at,
          n: f.n,
          origin: f.origin,
          b: f.b,
          c: f.c,
          frame,
          dataBytes: Buffer.byteLength(data.split(/\r\n|\r|\n/).join("\n"), "utf8")
        })
      }),
      { numRuns: 500 }
    )
  })

  it("any change to a signed message is refused, as is the message on another channel", () => {
    fc.assert(
      fc.property(
        fields,
        text(20),
        fc.nat(),
        fc.constantFrom("replace", "insert", "remove", "cut"),
        fc.string({ minLength: 1, maxLength: 1 }),
        (f, data, where, how, char) => {
          const channel = channelFor(f)
          const raw = encode(f, frameFor(f, data), channel, SECRET)
          const i = where % raw.length
          const changed = how === "replace"
            ? raw.slice(0, i) + char + raw.slice(i + 1)
            : how === "insert"
            ? raw.slice(0, i) + char + raw.slice(i)
            : how === "remove"
            ? raw.slice(0, i) + raw.slice(i + 1)
            : raw.slice(0, i)
          fc.pre(changed !== raw)
          expect(Either.isLeft(decode(changed, CHANNEL, channel, SECRET))).toBe(true)
          // the same message, arrived on another channel
          expect(Either.isLeft(decode(raw, CHANNEL, channel + "x", SECRET))).toBe(true)
          // an unsigned message on a signed bus, a signed one on an unsigned bus
          expect(Either.isLeft(decode(encode(f, frameFor(f, data), channel, undefined), CHANNEL, channel, SECRET))).toBe(true)
          expect(Either.isLeft(decode(raw, CHANNEL, channel, undefined))).toBe(true)
        }
      ),
      { numRuns: 1000 }
    )
  })

  it("what is accepted is exactly one SSE event with the header's id and event: no second event, retry or comment", () => {
    // frames built from SSE-looking pieces, most of them malformed
    const piece = fc.constantFrom("data: ", "data:", "id: ", "event: ", "retry: 5", ": c", "x", "1", "\n", "\n\n", "\r", " ")
    const forged = fc.array(piece, { maxLength: 12 }).map((parts) => parts.join(""))
    fc.assert(
      fc.property(fields, fc.oneof(forged, fc.tuple(text(10)).map(([d]) => "data: " + d + "\n\n")), fc.boolean(), (f, frame, withPrefix) => {
        const full = withPrefix ? frameFor(f, "").slice(0, -"data: \n\n".length) + frame : frame
        const checked = checkFrame(full, f.id, f.event, 1)
        const decoded = decode(encode(f, full, channelFor(f), undefined), CHANNEL, channelFor(f), undefined)
        expect(typeof checked === "number").toBe(Either.isRight(decoded))
        if (typeof checked !== "number") return
        const events = parseFrames(full + "id: after\ndata: next\n\n")
        expect(events).toHaveLength(2)
        expect(events[0]!.id).toBe(f.id === undefined ? undefined : Frame.sanitizeField(f.id))
        expect(events[0]!.event).toBe(f.event === undefined ? undefined : Frame.sanitizeField(f.event))
        expect(events[0]!.retry).toBeUndefined()
        expect(events[0]!.comments).toEqual([])
        expect(events[1]).toMatchObject({ id: "after", data: "next" })
        expect(checked).toBe(Buffer.byteLength(events[0]!.data, "utf8"))
      }),
      { numRuns: 1000 }
    )
  })

  it("a random string never throws, with or without a routed prefix", () => {
    const any = fc.oneof(
      fc.string({ maxLength: 80 }),
      fc.tuple(fc.constantFrom("R1U", "R1S", "R1S" + "0".repeat(64), "R1U[", "{"), fc.string({ maxLength: 60 })).map(([a, b]) => a + b),
      fc.tuple(fields, fc.string({ maxLength: 40 })).map(([f, tail]) => encode(f, "", channelFor(f), undefined).split("\n")[0] + "\n" + tail),
      fc.json().map((j) => "R1U" + j + "\ndata: x\n\n")
    )
    fc.assert(
      fc.property(any, fc.boolean(), (raw, signed) => {
        const decoded = decode(raw, CHANNEL, CHANNEL, signed ? SECRET : undefined)
        expect(Either.isLeft(decoded) || Either.isRight(decoded)).toBe(true)
      }),
      { numRuns: 2000 }
    )
  })

  it("edges: empty data, a payload at the size limit, a lone CR, a header of the wrong shape", () => {
    const f: Fields = { type: "user", target: "alice", id: "1", event: undefined, at: 1, n: 0, origin: "o" }
    const ch = userChannel(CHANNEL, "alice")
    const ok = (frame: string) => decode(encode(f, frame, ch, undefined), CHANNEL, ch, undefined, 1)
    expect(Either.getOrThrow(ok("id: 1\ndata: \n\n")).dataBytes).toBe(0)
    expect(Either.getOrThrow(ok("id: 1\ndata: é\ndata: a\n\n")).dataBytes).toBe(4)
    // without a limit (or far from it), UTF-16 units
    expect(Either.getOrThrow(decode(encode(f, "id: 1\ndata: é\ndata: a\n\n", ch, undefined), CHANNEL, ch, undefined)).dataBytes).toBe(3)
    expect(Either.isLeft(ok("id: 1\ndata: a\rb\n\n"))).toBe(true)
    expect(Either.isLeft(ok("id: 1\n\n"))).toBe(true)
    expect(Either.isLeft(ok("id: 2\ndata: a\n\n"))).toBe(true)
    expect(Either.isLeft(ok("data: a\n\n"))).toBe(true)
    // the payload limit at and one past: "éé" is 4 bytes (2 UTF-16 units)
    const limits = (maxPayloadBytes: number) => ({ maxUserIdLength: 64, maxRoomNameLength: 64, maxEventNameLength: 64, maxIdLength: 64, maxPayloadBytes })
    const sized = (max: number) => overLimit(Either.getOrThrow(decode(encode(f, "id: 1\ndata: éé\n\n", ch, undefined), CHANNEL, ch, undefined, max)), limits(max))
    expect(sized(4)).toBeUndefined()
    expect(sized(3)).toContain("maxPayloadBytes (4 > 3)")
    expect(sized(6)).toBeUndefined()
    expect(sized(0)).toBeUndefined()
    for (const header of ['["user","alice",null,null,1,0]', '["user","",null,null,1,0,"o"]', '["all","x",null,null,1,0,"o"]', '["user","alice",null,null,1,1024,"o"]', '["user","alice","",null,1,0,"o"]', '["user","alice",null,null,1.5,0,"o"]', '{"type":"all"}']) {
      expect(Either.isLeft(decode("R1U" + header + "\ndata: a\n\n", CHANNEL, ch, undefined))).toBe(true)
    }
  })
})
