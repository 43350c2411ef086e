/**
 * The examples' pages in headless Chromium, with the browser's own EventSource: the
 * Express quick start page (the README's browser snippet: notify / broadcast / room
 * listeners) and the AI-chat page (its postAndListen loop: answer streamed, done and
 * error phases shown). Skips with one loud line without `chromium`; fails under CI=true.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { browserAvailable, launch } from "../support/browser.js"
import { ensureBuilt, startExample, stopExamples } from "./harness.js"

const available = browserAvailable()

/** The little DOM the functions passed to `waitForFunction` use (they run in the page). */
declare const document: { getElementById(id: string): { readonly textContent: string | null } | null }

describe.skipIf(!available)("example pages in Chromium", () => {
  let browser: Awaited<ReturnType<typeof launch>>

  beforeAll(async () => {
    ;[browser] = await Promise.all([launch(), ensureBuilt()])
  }, 180_000)

  afterAll(async () => {
    await browser?.close()
    await stopExamples()
  })

  it("Express page: connects, and the buttons' sends show up as notify, broadcast and room events", async () => {
    const example = await startExample("examples/express/index.cjs")
    const page = await browser.browser.newPage()
    try {
      await page.goto(`${example.url}/`)
      await page.click("#open")
      await page.waitForFunction(() => document.getElementById("state")!.textContent === "open", undefined, { timeout: 10_000 })
      // one at a time: each button's fetch is not awaited by the page, so two in flight may cross
      const labels = ["notify alice", "broadcast", "room global", "publish room global"]
      for (const [i, label] of labels.entries()) {
        await page.click(`button:text-is("${label}")`)
        await page.waitForFunction((n) => document.getElementById("log")!.textContent!.trim().split("\n").length === n, i + 1, {
          timeout: 10_000
        })
      }
      const lines = (await page.textContent("#log"))!.trim().split("\n")
      // the page logs `<event> <data>`; the buttons send { msg: <label>, at }
      expect(lines.map((l) => {
        const space = l.indexOf(" ")
        return [l.slice(0, space), JSON.parse(l.slice(space + 1)).msg]
      })).toEqual([
        ["notify", "notify alice"],
        ["broadcast", "broadcast"],
        ["room", "room global"],
        ["room", "publish room global"]
      ])
      // closing alice: the browser reconnects by itself after retry: 2000
      await page.click('button:text-is("close alice")')
      await page.waitForFunction(() => document.getElementById("state")!.textContent === "reconnecting", undefined, { timeout: 10_000 })
      await page.waitForFunction(() => document.getElementById("state")!.textContent === "open", undefined, { timeout: 10_000 })
    } finally {
      await page.close()
    }
  })

  it("AI-chat page: the answer streams in, then done; a failure shows the error phase", async () => {
    const example = await startExample("examples/express/ai-chat.cjs", { env: { CHAT_CHUNK_MS: "5" } })
    const page = await browser.browser.newPage()
    try {
      await page.goto(`${example.url}/`)
      await page.waitForFunction(() => document.getElementById("status")!.textContent!.startsWith("connected as alice"), undefined, {
        timeout: 10_000
      })
      await page.fill("#message", "What is SSE?")
      await page.click("#ask button")
      await page.waitForFunction(() => document.getElementById("answer")!.textContent!.includes("[done: "), undefined, { timeout: 10_000 })
      const parts = Array.from({ length: 10 }, (_, i) => `Part ${i + 1} of the answer to "What is SSE?". `).join("")
      expect(await page.textContent("#answer")).toBe(`${parts}\n\n[done: 10 chunks]`)

      await page.check("#fail")
      await page.click("#ask button")
      await page.waitForFunction(() => document.getElementById("answer")!.textContent!.includes("[error "), undefined, { timeout: 10_000 })
      expect(await page.textContent("#answer")).toBe(
        `Part 1 of the answer to "What is SSE?". Part 2 of the answer to "What is SSE?". \n\n[error AI_ERROR: the model went away (simulated)]`
      )
    } finally {
      await page.close()
    }
  })
})
