/** Aggregation (medians, per-repeat ratios against raw) and the stdout table. */
import type { ForeignReport } from "./lib/cpuwatch.js"
import { median } from "./lib/stats.js"
import type { Metrics } from "./harness.js"
import type { CaseDef, MetricDef, Unit } from "./scenarios.js"

export interface RunRecord {
  readonly caseId: string
  readonly system: string
  readonly repeat: number
  readonly metrics: Metrics
  readonly foreign: ForeignReport | undefined
  readonly notes: ReadonlyArray<string>
  readonly error?: string
  /** the case could not be measured here, and why (not an error) */
  readonly unavailable?: string
}

export interface SystemCaseResult {
  readonly runs: ReadonlyArray<RunRecord>
  /** median over the repeats that did not fail */
  readonly median: Metrics
  /** median over repeats of (this system's value / raw's value in the same repeat) */
  readonly ratioVsRaw: Metrics
  readonly errors: ReadonlyArray<string>
  /** repeats during which a foreign process used noticeable CPU */
  readonly noisyRuns: number
  /** set when no repeat could measure the case here: why */
  readonly unavailable?: string
}

export interface CaseReport {
  readonly def: CaseDef
  readonly results: Record<string, SystemCaseResult>
}

export function aggregate(
  defs: ReadonlyArray<CaseDef>,
  runs: ReadonlyArray<RunRecord>,
  systems: ReadonlyArray<string>
): Record<string, CaseReport> {
  const out: Record<string, CaseReport> = {}
  for (const def of defs) {
    const results: Record<string, SystemCaseResult> = {}
    const rawRuns = runs.filter((r) => r.caseId === def.id && r.system === "raw" && r.error === undefined && r.unavailable === undefined)
    for (const system of systems) {
      const mine = runs.filter((r) => r.caseId === def.id && r.system === system)
      if (mine.length === 0) continue
      const ok = mine.filter((r) => r.error === undefined && r.unavailable === undefined)
      const keys = new Set(ok.flatMap((r) => Object.keys(r.metrics)))
      const med: Metrics = {}
      for (const key of keys) med[key] = median(ok.map((r) => r.metrics[key] ?? Number.NaN))
      const ratio: Metrics = {}
      for (const m of def.metrics) {
        const rs: number[] = []
        for (const r of ok) {
          const base = rawRuns.find((x) => x.repeat === r.repeat)?.metrics[m.key]
          const v = r.metrics[m.key]
          if (base !== undefined && v !== undefined && Number.isFinite(base) && Number.isFinite(v) && base !== 0) {
            rs.push(v / base)
          }
        }
        if (rs.length > 0) ratio[m.key] = median(rs)
      }
      results[system] = {
        runs: mine,
        median: med,
        ratioVsRaw: ratio,
        errors: mine.flatMap((r) => (r.error === undefined ? [] : [`#${r.repeat}: ${r.error}`])),
        noisyRuns: ok.filter((r) => r.foreign?.flagged === true).length,
        ...(ok.length === 0 && mine.some((r) => r.unavailable !== undefined)
          ? { unavailable: mine.find((r) => r.unavailable !== undefined)?.unavailable as string }
          : {})
      }
    }
    out[def.id] = { def, results }
  }
  return out
}

export function fmt(v: number | undefined, unit: Unit): string {
  if (v === undefined || !Number.isFinite(v)) return "—"
  const sig = (x: number): string => String(Number(x.toPrecision(3)))
  switch (unit) {
    case "rate":
      return v >= 1e6 ? `${(v / 1e6).toFixed(2)}M/s` : v >= 1e3 ? `${(v / 1e3).toFixed(1)}k/s` : `${v.toFixed(0)}/s`
    case "bytes": {
      const a = Math.abs(v)
      return a >= 1048576 ? `${(v / 1048576).toFixed(1)} MB` : a >= 10240 ? `${(v / 1024).toFixed(1)} KB` : `${v.toFixed(0)} B`
    }
    case "us":
      return `${sig(v)} µs`
    case "ms":
      return v >= 100 ? `${v.toFixed(0)} ms` : `${sig(v)} ms`
    case "pct":
      return `${v.toFixed(v >= 99.95 || v < 10 ? 1 : 0)}%`
    case "count":
      return Number.isInteger(v) ? String(v) : v.toFixed(1)
    case "ratio":
      return v.toFixed(2)
  }
}

function cell(sys: string, r: SystemCaseResult, m: MetricDef): string {
  const v = fmt(r.median[m.key], m.unit)
  if (sys === "raw" || m.better === "info") return v
  const ratio = r.ratioVsRaw[m.key]
  return ratio === undefined || !Number.isFinite(ratio) ? v : `${v} ×${ratio.toFixed(2)}`
}

export function table(reports: Record<string, CaseReport>, systems: ReadonlyArray<string>): string {
  const lines: string[] = []
  for (const { def, results } of Object.values(reports)) {
    lines.push("", def.title)
    const header = ["system", ...def.metrics.map((m) => m.label)]
    const rows: string[][] = []
    for (const sys of systems) {
      const r = results[sys]
      if (r === undefined) continue
      const name = sys + (r.noisyRuns > 0 ? ` (!${r.noisyRuns})` : "")
      if (r.unavailable !== undefined) {
        rows.push([name, `n/a: ${r.unavailable}`])
        continue
      }
      if (Object.keys(r.median).length === 0) {
        rows.push([name, `failed: ${(r.errors[0] ?? "no result").split("\n")[0]?.slice(0, 100) ?? ""}`])
        continue
      }
      rows.push([name, ...def.metrics.map((m) => cell(sys, r, m))])
    }
    const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => (row.length > 2 || i < 1 ? (row[i] ?? "").length : 0))))
    const line = (row: ReadonlyArray<string>): string =>
      row.length === 2 && header.length > 2
        ? `  ${(row[0] ?? "").padEnd(widths[0] ?? 0)}  ${row[1] ?? ""}`
        : "  " + row.map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join("  ")
    lines.push(line(header))
    for (const row of rows) lines.push(line(row))
  }
  return lines.join("\n")
}
