/**
 * The fault and abuse suite must not rot: `soak/run.ts --quick` (smaller sizes, every
 * scenario) runs here on real sockets and real redis-server processes, and every check
 * it makes must pass. The figures themselves are for `npm run soak` (README,
 * "Reliability").
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { redisAvailable } from "./support/redisServer.js"
import { runScript } from "./support/runScript.js"


interface Report {
  readonly quick: boolean
  readonly results: ReadonlyArray<{
    readonly scenario: string
    readonly ok: boolean
    readonly error?: string
    readonly figures: Record<string, unknown>
    readonly checks: ReadonlyArray<{ readonly name: string; readonly ok: boolean; readonly detail: string }>
  }>
}

const run = (args: ReadonlyArray<string>, timeoutMs: number) => runScript("soak/run.ts", args, timeoutMs)

describe("soak --quick", () => {
  it("runs every scenario and every check passes", async () => {
    const out = path.join(os.tmpdir(), `ssekify-soak-quick-${process.pid}.json`)
    const r = await run(["--quick", `--out=${out}`], 150_000)
    const context = `exit ${String(r.code)}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr.slice(-4000)}`
    expect(fs.existsSync(out), context).toBe(true)
    const report = JSON.parse(fs.readFileSync(out, "utf8")) as Report
    fs.rmSync(out, { force: true })
    expect(report.quick).toBe(true)
    const names = report.results.map((x) => x.scenario)
    expect(names, context).toEqual([
      "stalled clients, dropPolicy 'oldest'",
      "stalled clients, dropPolicy 'newest'",
      "stalled clients, dropPolicy 'disconnect'",
      "clients that never read under a long flood, dropPolicy 'oldest'",
      "clients that never read under a long flood, dropPolicy 'newest'",
      "clients that never read under a long flood, dropPolicy 'disconnect'",
      "connect / disconnect cycles",
      "Redis SIGKILLed and restarted under traffic",
      "Sentinel failover under traffic",
      "hostile input",
      "shutdown with open connections"
    ])
    for (const result of report.results) {
      if (result.error?.startsWith("SKIPPED") === true) {
        // only the Redis scenarios may skip, and never where redis-server is installed
        expect(redisAvailable(), `${result.scenario}: ${result.error}`).toBe(false)
        continue
      }
      expect(result.error, `${result.scenario}\n${context}`).toBeUndefined()
      expect(result.checks.length, result.scenario).toBeGreaterThan(0)
      for (const check of result.checks) expect(check.ok, `${result.scenario}: ${check.name} ${check.detail}\n${context}`).toBe(true)
      expect(Object.keys(result.figures).length, result.scenario).toBeGreaterThan(0)
    }
    expect(r.code, context).toBe(0)
  }, 180_000)
})
