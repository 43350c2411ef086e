/**
 * `npm run demo` in headless Chromium (Debian `chromium`, driven by playwright-core):
 * two tabs (alice, bob); bob sends to alice, her room and everyone, then a burst that
 * overflows her queue; alice drops her connection with the page's button, bob sends
 * to her while she is away, the browser reconnects by itself with Last-Event-ID and
 * alice's page shows the replayed frames, marked, with the count the server reports.
 * Screenshots of both tabs are saved under the test's temporary folder.
 */
import { type ChildProcess, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import type { Page } from "playwright-core"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { browserAvailable, launch } from "../support/browser.js"
import { freePort } from "../support/redisServer.js"
import { until } from "../support/sse.js"

/** The page's DOM, as far as the functions evaluated in it use it (tsconfig has no DOM lib). */
interface DomNode {
  readonly textContent: string | null
  readonly hidden: boolean
  readonly dataset: Record<string, string | undefined>
}
declare const document: {
  getElementById(id: string): DomNode | null
  querySelector(selector: string): DomNode | null
  querySelectorAll(selector: string): ArrayLike<DomNode> & Iterable<DomNode>
}

const available = browserAvailable()
const root = path.resolve(__dirname, "..", "..")

const texts = (page: Page, selector: string) =>
  page.$$eval(selector, (els) => els.map((e) => (e.textContent ?? "").trim()))
const statusIs = (page: Page, text: string) =>
  page.waitForFunction((t) => document.getElementById("status")!.textContent === t, text, { timeout: 15_000 })
/** Waits until the newest line of `#sent` is the answer to the click that preceded it. */
const lastSent = async (page: Page, count: number) => {
  await page.waitForFunction((n) => document.querySelectorAll("#sent li").length === n, count, { timeout: 10_000 })
  return (await page.textContent("#sent li:first-child .text"))!
}

describe.skipIf(!available)("npm run demo in Chromium", () => {
  let child: ChildProcess
  let output = ""
  let url = ""
  let browser: Awaited<ReturnType<typeof launch>>
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ssekify-demo-"))

  beforeAll(async () => {
    const port = await freePort()
    child = spawn(process.execPath, ["--import", "tsx", "examples/demo/server.ts"], {
      cwd: root,
      env: { ...process.env, PORT: String(port), HOST: "127.0.0.1" },
      stdio: ["ignore", "pipe", "pipe"]
    })
    child.stdout!.on("data", (d) => (output += d))
    child.stderr!.on("data", (d) => (output += d))
    await until(() => output.includes("listening on"), 20_000, "the demo's listening line")
    url = `http://127.0.0.1:${port}`
    browser = await launch()
  }, 60_000)

  afterAll(async () => {
    await browser?.close()
    if (child !== undefined && child.exitCode === null) {
      const exited = new Promise((r) => child.once("exit", r))
      child.kill("SIGTERM")
      await exited
    }
  })

  it("two tabs: user, room, everyone, a burst that drops, then drop + reconnect replays what was sent meanwhile", async () => {
    const context = await browser.browser.newContext({ viewport: { width: 1280, height: 900 } })
    try {
      const alice = await context.newPage()
      const bob = await context.newPage()
      await alice.goto(`${url}/?user=alice&room=lobby`)
      await bob.goto(`${url}/?user=bob&room=support`)
      await statusIs(alice, "connected")
      await statusIs(bob, "connected")
      await alice.waitForFunction(() => document.querySelectorAll("#who tbody tr").length === 2, undefined, { timeout: 10_000 })
      expect(await texts(alice, "#who tbody td.user")).toEqual(["alice", "bob"])

      // bob sends to alice, to her room, to everyone
      let sent = 0
      const sendFromBob = async (text: string, button: string, target?: { field: string; value: string }) => {
        await bob.fill("#text", text)
        if (target) await bob.fill(target.field, target.value)
        await bob.click(button)
        return lastSent(bob, ++sent)
      }
      expect(await sendFromBob("hello alice", "#sendUser", { field: "#toUser", value: "alice" })).toMatch(/^alice #\d+ → delivered to 1 connection$/)
      expect(await sendFromBob("hello lobby", "#sendRoom", { field: "#toRoom", value: "lobby" })).toMatch(/^lobby #\d+ → delivered to 1 connection$/)
      expect(await sendFromBob("hello all", "#sendAll")).toMatch(/^everyone #\d+ → delivered to 2 connections$/)
      await alice.waitForFunction(() => document.querySelectorAll("#log .entry.ev-broadcast").length === 1, undefined, { timeout: 10_000 })
      expect(await texts(alice, "#log .entry:not(.ev-presence):not(.note) .text")).toEqual([
        "hello all from bob",
        "hello lobby from bob",
        "hello alice from bob"
      ])
      // the sender's results are not in the received log
      expect(await texts(alice, "#log .entry .text")).not.toContain(expect.stringContaining("delivered to"))

      // a burst of 500 frames overflows alice's queue of 32: the page shows what arrived and the drops
      const burst = await sendFromBob("", "#burst")
      expect(burst).toMatch(/^alice 500 frames #\d+…#\d+ → 1 connection, queue of 32 frames$/)
      const lastBurstId = burst.match(/…#(\d+)/)![1]!
      // dropPolicy 'oldest' keeps the newest: the last frame arrives
      await alice.waitForFunction((id) => document.getElementById("meLast")!.textContent === `#${id}`, lastBurstId, { timeout: 10_000 })
      await alice.waitForFunction(() => document.querySelector("#log .entry.drop") !== null, undefined, { timeout: 10_000 })
      const received = Number((await alice.textContent("#log .entry.ev-burst .text"))!.match(/received (\d+) of 500/)![1])
      const dropped = Number((await alice.textContent("#log .entry.drop .text"))!.match(/dropped (\d+) frame/)![1])
      expect(received).toBeGreaterThan(0)
      expect(dropped).toBeGreaterThan(0)
      expect(received + dropped).toBe(500)

      // alice drops her connection; bob sends to her while she is away
      await alice.click("#drop")
      await statusIs(alice, "reconnecting…")
      expect(await sendFromBob("while you were away (1)", "#sendUser", { field: "#toUser", value: "alice" })).toMatch(
        /^alice #\d+ → delivered to 0 connections: alice is away, kept for replay$/
      )
      expect(await sendFromBob("while you were away (2)", "#sendUser")).toMatch(/delivered to 0 connections: alice is away/)

      // the browser reconnects by itself with Last-Event-ID: both frames are replayed and marked
      await statusIs(alice, "connected")
      await alice.waitForFunction(() => !document.getElementById("notice")!.hidden, undefined, { timeout: 10_000 })
      expect(await alice.textContent("#notice")).toBe(`Replayed 2 frames sent while this tab was away (after #${lastBurstId}), marked below.`)
      // the server's count and the page's own count of frames before the server's hello agree
      expect(await alice.$eval("#notice", (e) => [(e as unknown as DomNode).dataset.replayed, (e as unknown as DomNode).dataset.counted])).toEqual(["2", "2"])
      expect(await texts(alice, "#log .entry.replayed .text")).toEqual([
        "while you were away (2) from bob",
        "while you were away (1) from bob"
      ])
      expect(await texts(alice, "#log .entry.gap")).toEqual([])
      await alice.waitForFunction(
        () => Array.from(document.querySelectorAll("#who tr.mine td.num")).map((td) => td.textContent)[0] === "2",
        undefined,
        { timeout: 10_000 }
      )

      const shot = path.join(dir, "demo-alice.png")
      await alice.screenshot({ path: shot, fullPage: true })
      await bob.screenshot({ path: path.join(dir, "demo-bob.png"), fullPage: true })
      expect(fs.statSync(shot).size).toBeGreaterThan(10_000)
      console.log(`demo screenshots: ${dir}`)
    } finally {
      await context.close()
    }
  }, 60_000)
})
