/**
 * The benchmark must not rot: run `bench/run.ts --quick` for every system that is
 * available here and check the JSON has every scenario A–H for each of them (the
 * routing-only cases, E.routed and H, for the systems that take `routing`), with a
 * positive number for every primary metric. A case may be "unavailable" only for the
 * routed mode missing from the build (or, outside CI, for a missing Redis tool). No
 * timing thresholds: this machine's speed drifts; the figures are for `npm run bench`.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { SseResponseParser } from "../bench/lib/parser.js"
import { REPO, runScript } from "./support/runScript.js"

const SCENARIOS = ["A", "B", "C", "D", "E", "F", "G", "H"]
const ROUTED_UNAVAILABLE = "routed mode not available in this build"

interface MetricDef {
  key: string
  primary?: boolean
}
interface Report {
  systems: Record<string, { available: boolean; routing: boolean; reason?: string }>
  skipped: Record<string, string>
  cases: Record<
    string,
    {
      def: { id: string; scenario: string; metrics: MetricDef[]; routingOnly?: boolean }
      results: Record<
        string,
        { median: Record<string, number | null>; ratioVsRaw: Record<string, number | null>; errors: string[]; unavailable?: string }
      >
    }
  >
}

const runBench = (args: ReadonlyArray<string>, timeoutMs: number) => runScript("bench/run.ts", args, timeoutMs)

class Collect extends SseResponseParser {
  heads: Array<[boolean, string]> = []
  frames: number[] = []
  ends = 0
  protected onHead(ok: boolean, status: string): void {
    this.heads.push([ok, status])
  }
  protected onFrame(t: number): void {
    this.frames.push(t)
  }
  protected onEnd(): void {
    this.ends++
  }
  protected wantT(): boolean {
    return true
  }
}

const chunk = (s: string): string => `${Buffer.byteLength(s).toString(16)}\r\n${s}\r\n`

describe("bench client parser", () => {
  const head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
  const body =
    chunk("retry: 2000\n\n") +
    chunk('event: tick\nid: 1\ndata: {"t":12.5,"n":1,"p":"x"}\n\n: ping\n\n') +
    chunk('data: {"t":7,"n":2}\r\n\r\ndata: multi\ndata: {"t":1}\n') +
    chunk("\n") +
    chunk("data: no-t\n\n") +
    "0\r\n\r\n"
  const all = Buffer.from(head + body)

  it("counts frames and reads timestamps however the bytes are split", () => {
    for (let cut = 1; cut < all.length; cut++) {
      const p = new Collect()
      p.feed(all.subarray(0, cut))
      p.feed(all.subarray(cut))
      expect(p.heads, `cut ${cut}`).toEqual([[true, ""]])
      expect(p.frames.length, `cut ${cut}`).toBe(4)
      expect(p.frames.slice(0, 2), `cut ${cut}`).toEqual([12.5, 7])
      expect(Number.isNaN(p.frames[2]) && Number.isNaN(p.frames[3]), `cut ${cut}`).toBe(true)
      expect(p.ends, `cut ${cut}`).toBe(1)
    }
    const bytewise = new Collect()
    for (let i = 0; i < all.length; i++) bytewise.feed(all.subarray(i, i + 1))
    expect(bytewise.frames.length).toBe(4)
  })

  it("reads a body without chunked coding and rejects a non-200 head", () => {
    const p = new Collect()
    p.feed(Buffer.from('HTTP/1.0 200 OK\r\n\r\ndata: {"t":3}\n\ndata: x\n\n'))
    expect(p.frames.length).toBe(2)
    const q = new Collect()
    q.feed(Buffer.from("HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n\r\n"))
    expect(q.heads).toEqual([[false, "HTTP/1.1 503 Service Unavailable"]])
  })
})

describe("bench --quick", () => {
  it("reports every scenario for every available system", async () => {
    const out = path.join(os.tmpdir(), `ssekify-bench-quick-${process.pid}.json`)
    // ~70 s on a quiet machine (H starts 5 servers per mode); much more when other suites share the two cores
    const r = await runBench(["--quick", `--out=${out}`], 450_000)
    const context = `exit ${String(r.code)}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr.slice(-4000)}`
    expect(fs.existsSync(out), context).toBe(true)
    const report = JSON.parse(fs.readFileSync(out, "utf8")) as Report
    fs.rmSync(out, { force: true })

    const systems = Object.entries(report.systems)
      .filter(([, s]) => s.available)
      .map(([name]) => name)
    expect(systems, context).toContain("raw")
    expect(systems, context).toContain("better-sse")
    if (fs.existsSync(path.join(REPO, "src", "index.ts"))) {
      expect(systems, `ssekify: ${report.systems["ssekify"]?.reason ?? ""}\n${context}`).toContain("ssekify")
    }

    for (const letter of SCENARIOS) {
      if (report.skipped[letter] !== undefined) {
        // only Redis (E, H) may be missing, and never under CI
        expect((letter === "E" || letter === "H") && process.env["CI"] !== "true", `scenario ${letter} skipped: ${report.skipped[letter]}`).toBe(true)
        process.stderr.write(`\n!!! bench scenario ${letter} SKIPPED: ${report.skipped[letter]} !!!\n\n`)
        continue
      }
      const cases = Object.values(report.cases).filter((c) => c.def.scenario === letter)
      expect(cases.length, `scenario ${letter} has no case\n${context}`).toBeGreaterThan(0)
      for (const c of cases) {
        for (const system of systems) {
          const res = c.results[system]
          if (c.def.routingOnly === true && report.systems[system]?.routing !== true) {
            expect(res, `${c.def.id} is for routing systems only, yet reports ${system}`).toBeUndefined()
            continue
          }
          expect(res, `${c.def.id} has no result for ${system}\n${context}`).toBeDefined()
          if (res === undefined) continue
          expect(res.errors, `${c.def.id} ${system}\n${context}`).toEqual([])
          if (res.unavailable !== undefined) {
            // no fake numbers: the build has no routed mode (or, outside CI, a Redis tool is missing)
            const ok = res.unavailable === ROUTED_UNAVAILABLE || process.env["CI"] !== "true"
            expect(ok, `${c.def.id} ${system} unavailable: ${res.unavailable}`).toBe(true)
            expect(Object.keys(res.median), `${c.def.id} ${system} is unavailable but has figures`).toEqual([])
            process.stderr.write(`\n!!! bench case ${c.def.id} (${system}) not measured: ${res.unavailable} !!!\n\n`)
            continue
          }
          for (const m of c.def.metrics.filter((x) => x.primary === true)) {
            const v = res.median[m.key]
            // RSS grows by pages: over the few connections of a quick run the allocator's
            // slack can absorb them whole (a slope of 0 B), so RSS need only be a number.
            const rss = m.key.startsWith("rss")
            const ok = typeof v === "number" && (rss ? Number.isFinite(v) && v >= 0 : v > 0)
            expect(ok, `${c.def.id} ${system} ${m.key} = ${String(v)}\n${context}`).toBe(true)
            // ratios against raw where raw runs the case too (not the routing-only cases)
            if (system !== "raw" && !rss && c.results["raw"] !== undefined) {
              const ratio = res.ratioVsRaw[m.key]
              expect(typeof ratio === "number" && ratio > 0, `${c.def.id} ${system} ratio ${m.key} = ${String(ratio)}`).toBe(true)
            }
          }
        }
      }
    }
    expect(r.code, context).toBe(0)
  }, 480_000)
})
