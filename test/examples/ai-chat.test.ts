/**
 * The AI-chat example (examples/express/ai-chat.cjs) keeps its promise that "a reconnecting
 * page gets what it missed": the SSE stream dies mid-answer (the client's socket is
 * destroyed), the answer goes on being published to a user with no connection, and a
 * reconnect with `Last-Event-ID` gets every chunk exactly once, in order, with no gap.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { connect, type RawClient } from "../support/sse.js"
import { ensureBuilt, opened, type RunningExample, startExample, stopExamples } from "./harness.js"

beforeAll(ensureBuilt, 180_000)
afterAll(stopExamples)

const CHUNKS = 10
const question = "Tell me about SSE"
const parts = Array.from({ length: CHUNKS }, (_, i) => `Part ${i + 1} of the answer to "${question}". `)

interface Chunk {
  readonly id: string | undefined
  readonly requestId: string
  readonly phase: string
  readonly seq: number
  readonly content: string
}

const notify = (c: RawClient): Array<Chunk> =>
  c.messages().filter((m) => m.event === "notify").map((m) => {
    const d = JSON.parse(m.data)
    return { id: m.id, requestId: d.requestId, phase: d.phase, seq: d.seq, content: d.payload?.content }
  })
const gaps = (c: RawClient) => c.messages().filter((m) => m.event === "gap").map((m) => JSON.parse(m.data))

const ask = async (example: RunningExample, requestId: string) => {
  const res = await fetch(`${example.url}/api/chat`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-user-id": "alice" },
    body: JSON.stringify({ requestId, message: question })
  })
  expect([res.status, await res.json()]).toEqual([200, { requestId, status: "processing" }])
}

/** Every frame of the answer exactly once, in order: progress 0..9, then done (seq 10). */
const expectWholeAnswer = (frames: ReadonlyArray<Chunk>, requestId: string) => {
  expect(frames.map((f) => [f.requestId, f.phase, f.seq])).toEqual([
    ...parts.map((_, i) => [requestId, "progress", i]),
    [requestId, "done", CHUNKS]
  ])
  expect(frames.slice(0, CHUNKS).map((f) => f.content)).toEqual(parts)
  expect(frames[CHUNKS]!.content).toBe(parts.join(""))
  expect(new Set(frames.map((f) => f.id)).size).toBe(frames.length)
}

describe("AI chat: a reconnect mid-answer loses nothing", () => {
  it("the stream dies after 3 chunks, the answer finishes meanwhile, Last-Event-ID replays the other 8 frames", async () => {
    const example = await startExample("examples/express/ai-chat.cjs", { env: { CHAT_CHUNK_MS: "40", SSE_KEEPALIVE_MS: "0" } })
    const url = `${example.url}/sse?userId=alice`
    const first = await connect(url)
    await opened(first)
    await ask(example, "req-drop")
    await first.waitFor((c) => notify(c).length >= 3, 10_000, "three chunks")
    // a real socket destroy, mid-answer
    first.close()
    const before = notify(first)
    expect(before.length).toBeLessThan(CHUNKS)
    // the rest of the answer is published while alice has no connection
    await example.waitForOutput(/\[chat\] alice req-drop: done after 10 chunks/, 10_000)
    const back = await connect(url, { headers: { "last-event-id": before.at(-1)!.id! } })
    await back.waitFor((c) => notify(c).some((f) => f.phase === "done"), 10_000, "the replayed done frame")
    expectWholeAnswer([...before, ...notify(back)], "req-drop")
    expect(gaps(back)).toEqual([])

    // an id the server never gave (a restart, say) is announced to the page, not ignored
    const lost = await connect(url, { headers: { "last-event-id": "not-an-id" } })
    await lost.waitFor((c) => gaps(c).length === 1, 5_000, "the gap event")
    expect(gaps(lost)).toEqual([{ lastEventId: "not-an-id", reason: "unknown" }])
    expect(notify(lost)).toEqual([])
    back.close()
    lost.close()
    expect(await example.stop()).toEqual({ code: 0, signal: null })
  })

  it("the stream dies after 2 chunks and reconnects while the answer still streams: replayed, then live, each once", async () => {
    const example = await startExample("examples/express/ai-chat.cjs", { env: { CHAT_CHUNK_MS: "120", SSE_KEEPALIVE_MS: "0" } })
    const url = `${example.url}/sse?userId=alice`
    const first = await connect(url)
    await opened(first)
    await ask(example, "req-live")
    await first.waitFor((c) => notify(c).length >= 2, 10_000, "two chunks")
    first.close()
    const before = notify(first)
    const back = await connect(url, { headers: { "last-event-id": before.at(-1)!.id! } })
    await back.waitFor((c) => notify(c).some((f) => f.phase === "done"), 10_000, "the done frame")
    expectWholeAnswer([...before, ...notify(back)], "req-live")
    expect(gaps(back)).toEqual([])
    back.close()
    expect(await example.stop()).toEqual({ code: 0, signal: null })
  })
})
