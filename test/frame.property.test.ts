/**
 * Property test of the frame encoder (issue 12): for any data, event name and id —
 * unicode, CR, LF, CRLF, NUL, colons, BOMs, text that looks like SSE fields — a parser
 * that follows the WHATWG `EventSource` parsing rules (written here from the spec, bytes
 * in, UTF-8 decoded) reads back exactly one event per frame, with the data as the spec
 * gives it back (every CR, LF or CRLF a line break, lines joined with LF) and the event
 * name and id sanitised as `Frame.sanitizeField` says (CR, LF, NUL → space). Nothing in
 * a field can start another field or another event.
 *
 * Strings are sent as UTF-8: a lone surrogate (not encodable) arrives as U+FFFD, as with
 * any UTF-8 encoder (`TextEncoder`); the expected values are the well-formed strings.
 */
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import * as Frame from "../src/Frame.js"

interface Event {
  readonly type: string
  readonly data: string
  readonly lastEventId: string
}

/**
 * https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation
 * (one whole stream: UTF-8 decode, one leading BOM stripped, lines on CRLF / LF / CR).
 */
const parseStream = (bytes: Uint8Array): { events: Array<Event>; lastEventId: string; retry: number | undefined } => {
  let text = new TextDecoder("utf-8", { ignoreBOM: true }).decode(bytes)
  if (text.startsWith("\uFEFF")) text = text.slice(1)
  const events: Array<Event> = []
  let data = ""
  let type = ""
  let lastEventIdBuffer = ""
  let lastEventId = ""
  let retry: number | undefined
  // A line ends at CRLF, LF or CR; text after the last line ending is an incomplete line (ignored).
  const lines = text.split(/\r\n|\r|\n/)
  lines.pop()
  for (const line of lines) {
    if (line === "") {
      lastEventId = lastEventIdBuffer
      if (data === "") {
        type = ""
        continue
      }
      if (data.endsWith("\n")) data = data.slice(0, -1)
      events.push({ type: type === "" ? "message" : type, data, lastEventId })
      data = ""
      type = ""
      continue
    }
    if (line.startsWith(":")) continue
    const colon = line.indexOf(":")
    const field = colon === -1 ? line : line.slice(0, colon)
    let value = colon === -1 ? "" : line.slice(colon + 1)
    if (value.startsWith(" ")) value = value.slice(1)
    if (field === "event") type = value
    else if (field === "data") data += value + "\n"
    else if (field === "id") {
      if (!value.includes("\0")) lastEventIdBuffer = value
    } else if (field === "retry") {
      if (/^[0-9]+$/.test(value)) retry = Number(value)
    }
  }
  return { events, lastEventId, retry }
}

const wellFormed = (s: string): string =>
  s.replace(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, "\uFFFD")

/** Strings rich in what matters on the wire: line breaks, NUL, colons, spaces, BOMs, fake fields. */
const hostile = fc
  .array(
    fc.oneof(
      { weight: 3, arbitrary: fc.string({ unit: "binary" }) },
      {
        weight: 2,
        arbitrary: fc.constantFrom("\r", "\n", "\r\n", "\n\r", "\r\r", "\n\n", "\0", ":", " ", "\uFEFF", "data: x", "id: 9", "event: evil", "retry: 1", "\uD800", "\uDC00", "é", "😀")
      }
    ),
    { maxLength: 12 }
  )
  .map((parts) => parts.join(""))

const optional = fc.option(hostile, { nil: undefined })

const expectedData = (data: string) => wellFormed(data).split(/\r\n|\r|\n/).join("\n")

describe("Frame encoder (property)", () => {
  it("one frame reads back as exactly one event with the same data and sanitised fields", () => {
    fc.assert(
      fc.property(hostile, optional, optional, (data, event, id) => {
        const parsed = parseStream(Frame.message(data, { event, id }))
        expect(parsed.events).toEqual([{
          type: event ? wellFormed(Frame.sanitizeField(event)) : "message",
          data: expectedData(data),
          lastEventId: id ? wellFormed(Frame.sanitizeField(id)) : ""
        }])
        expect(parsed.retry).toBeUndefined()
      }),
      { numRuns: 2_000 }
    )
  })

  it("a sequence of frames reads back as the same sequence of events (no field crosses a frame)", () => {
    const message = fc.record({ data: hostile, event: optional, id: optional })
    fc.assert(
      fc.property(fc.array(message, { minLength: 1, maxLength: 8 }), (messages) => {
        const bytes = Buffer.concat(messages.map((m) => Frame.message(m.data, { event: m.event, id: m.id })))
        let lastEventId = ""
        const expected = messages.map((m) => {
          if (m.id) lastEventId = wellFormed(Frame.sanitizeField(m.id))
          return { type: m.event ? wellFormed(Frame.sanitizeField(m.event)) : "message", data: expectedData(m.data), lastEventId }
        })
        expect(parseStream(bytes).events).toEqual(expected)
      }),
      { numRuns: 500 }
    )
  })

  it("JSON data written as one line (singleLine) reads back as the same JSON", () => {
    fc.assert(
      fc.property(fc.jsonValue(), optional, (value, event) => {
        const json = JSON.stringify(value)
        const parsed = parseStream(Frame.message(json, { event }, true))
        expect(parsed.events).toHaveLength(1)
        expect(JSON.parse(parsed.events[0]!.data)).toEqual(JSON.parse(json))
      }),
      { numRuns: 500 }
    )
  })

  it("a comment (the heartbeat) with any text dispatches nothing and sets no id", () => {
    fc.assert(
      fc.property(hostile, (text) => {
        const parsed = parseStream(Buffer.concat([Frame.comment(text), Frame.ping(1), Frame.retry(3000)]))
        expect(parsed).toEqual({ events: [], lastEventId: "", retry: 3000 })
      }),
      { numRuns: 1_000 }
    )
  })
})
