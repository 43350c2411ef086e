/**
 * ssekify benchmark driver.
 *
 *   npm run bench                      # every scenario, 3 repeats (~20–30 min)
 *   npm run bench:quick                # small version of every scenario, 1 repeat (< 1 min)
 *   node --import tsx bench/run.ts --only=A,B --systems=raw,ssekify --repeats=5
 *
 * Options: --quick, --only=<letters or names, e.g. H or fleet>, --systems=<names>, --repeats=<n>,
 *          --out=<file.json>, --recent-buffer=<n> (ssekify recentBufferSize; default: the library's),
 *          --same-bytes (ssekify without its default `timestamp` auto field: every system
 *          sends the same frames),
 *          --no-pin (do not use taskset), --no-preload / --preload (servers load every system
 *          of the run for an equal RSS baseline; default on, off with --quick),
 *          --quiet-wait=<s> (before each run, wait up to s seconds for other processes to
 *          go quiet; default 10, quick 0), --cpu-prof (servers write V8 CPU profiles to
 *          bench/results/profiles/; summarise one with bench/profile.ts), --help
 *
 * One server process per system and repeat (pinned to core 0, --expose-gc), client
 * processes pinned to core 1, the driver itself on core 1. Systems are interleaved
 * within each repeat; ratios are taken against the raw run of the same repeat.
 * Prints a table on stdout, progress on stderr, and writes bench/results/<time>.json.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { CLIENT_CORE, CONNS_PER_CLIENT, ClientPool, TSX_ENTRY, type ChildEntry } from "./harness.js"
import { BENCH_DIR, hardFdLimit, haveTaskset, installCleanup, onExit, pinSelf, stopAll } from "./lib/procs.js"
import { aggregate, fmt, table, type RunRecord } from "./report.js"
import { FULL, QUICK, SCENARIOS, type CaseDef, type Ctx, type Params } from "./scenarios.js"
import { loadSystem, SYSTEM_NAMES } from "./systems/index.js"
import { foreign, snapshot } from "./lib/cpuwatch.js"
import { sleep } from "./lib/stats.js"
import { removeSnapshot } from "./systems/build.js"
import type { SystemDef } from "./systems/types.js"

interface Args {
  quick: boolean
  only: string[] | undefined
  systems: string[] | undefined
  repeats: number | undefined
  out: string | undefined
  recentBuffer: number | undefined
  sameBytes: boolean
  pin: boolean
  /** undefined = default: on in full runs, off with --quick (it costs ~0.3 s per server start) */
  equalBaseline: boolean | undefined
  quietWait: number | undefined
  cpuProf: boolean
  help: boolean
}

class UsageError extends Error {}

function parseArgs(argv: ReadonlyArray<string>): Args {
  const a: Args = {
    quick: false,
    only: undefined,
    systems: undefined,
    repeats: undefined,
    out: undefined,
    recentBuffer: undefined,
    sameBytes: false,
    pin: true,
    equalBaseline: undefined,
    quietWait: undefined,
    cpuProf: false,
    help: false
  }
  const list = (v: string): string[] => v.split(",").map((s) => s.trim()).filter((s) => s !== "")
  for (const arg of argv) {
    const [key, value = ""] = arg.split(/=(.*)/s, 2) as [string, string | undefined]
    switch (key) {
      case "--quick":
        a.quick = true
        break
      case "--only":
        a.only = list(value).map((s) => s.toUpperCase())
        break
      case "--systems":
        a.systems = list(value)
        break
      case "--repeats":
        a.repeats = Number(value)
        break
      case "--out":
        a.out = value
        break
      case "--recent-buffer":
        a.recentBuffer = Number(value)
        break
      case "--same-bytes":
        a.sameBytes = true
        break
      case "--no-pin":
        a.pin = false
        break
      case "--quiet-wait":
        a.quietWait = Number(value)
        break
      case "--cpu-prof":
        a.cpuProf = true
        break
      case "--no-preload":
        a.equalBaseline = false
        break
      case "--preload":
        a.equalBaseline = true
        break
      case "--help":
      case "-h":
        a.help = true
        break
      default:
        throw new UsageError(`unknown option ${arg} (see --help)`)
    }
  }
  if (a.repeats !== undefined && !(Number.isInteger(a.repeats) && a.repeats >= 1 && a.repeats <= 20)) {
    throw new UsageError("--repeats must be an integer from 1 to 20")
  }
  return a
}

const log = (s: string): void => {
  process.stderr.write(s + "\n")
}

/** Wait (bounded) until processes that are not ours use < 10 % of a core; why not, if it gives up. */
async function waitQuiet(maxSeconds: number): Promise<string | undefined> {
  if (maxSeconds <= 0) return undefined
  const deadline = Date.now() + maxSeconds * 1000
  for (;;) {
    const a = snapshot()
    await sleep(500)
    const f = foreign(a, snapshot())
    if (f.foreignMs + f.stealMs <= 0.1 * f.wallMs) return undefined
    if (Date.now() > deadline) {
      return `others still used ${f.foreignMs + f.stealMs} ms of CPU per ${f.wallMs} ms (${f.top.map((t) => t.comm).join(", ")})`
    }
  }
}

/**
 * Bundle server.ts and client.ts (esbuild, packages left external) so children
 * start as plain `node` — faster than tsx, and no loader thread in the measured
 * server. Falls back to `--import tsx` when esbuild is not there.
 */
async function prepareEntry(preload: ReadonlyArray<string>, serverArgs: ReadonlyArray<string>): Promise<ChildEntry> {
  try {
    const esbuild = await import("esbuild")
    // per run: a concurrent run (e.g. the quick test) must not rewrite our children's code
    const outdir = path.join(BENCH_DIR, ".build", `run-${process.pid}`)
    onExit(() => fs.rmSync(outdir, { recursive: true, force: true }))
    await esbuild.build({
      entryPoints: { server: TSX_ENTRY.server, client: TSX_ENTRY.client },
      outdir,
      outExtension: { ".js": ".mjs" },
      bundle: true,
      platform: "node",
      format: "esm",
      target: "node20",
      packages: "external",
      logLevel: "warning"
    })
    return {
      server: path.join(outdir, "server.mjs"),
      client: path.join(outdir, "client.mjs"),
      preload,
      serverArgs,
      nodeArgs: (extra) => [...extra]
    }
  } catch (e) {
    log(`bench: esbuild bundle failed (${e instanceof Error ? e.message : String(e)}); children run through tsx`)
    return { ...TSX_ENTRY, preload, serverArgs }
  }
}

function maxConnections(p: Params, letters: ReadonlyArray<string>): number {
  const per: Record<string, number> = {
    A: p.A.conns,
    B: p.B.conns,
    C: p.C.conns,
    D: Math.max(...p.D.sizes),
    E: p.E.conns,
    F: Math.max(p.F.conns, p.F.big.conns),
    G: p.G.conns,
    // H.local: every user of the fleet on one instance
    H: p.H.instances * p.H.usersPerInstance
  }
  return Math.max(1, ...letters.map((l) => per[l] ?? 0))
}

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2))
  if (args.help) {
    process.stdout.write(fs.readFileSync(new URL(import.meta.url), "utf8").split("*/")[0] + "*/\n")
    return 0
  }
  installCleanup()
  const started = new Date()
  const warnings: string[] = []

  const pin = args.pin && haveTaskset() && os.cpus().length >= 2
  if (pin) pinSelf(CLIENT_CORE)
  else warnings.push("not pinned (taskset missing, --no-pin, or fewer than 2 cores): server and clients share cores")

  const base = args.quick ? QUICK : FULL
  const p: Params = { ...base, repeats: args.repeats ?? base.repeats }

  const scenarios = SCENARIOS.filter(
    (s) => args.only === undefined || args.only.includes(s.letter) || args.only.includes(s.title.toUpperCase())
  )
  if (scenarios.length === 0) throw new Error(`--only matches no scenario (have ${SCENARIOS.map((s) => s.letter).join(",")})`)

  // systems
  const requested = args.systems ?? [...SYSTEM_NAMES]
  const systemInfo: Record<string, { available: boolean; description: string; routing: boolean; reason?: string }> = {}
  const active: string[] = []
  const defs: Record<string, SystemDef> = {}
  for (const name of requested) {
    const def = await loadSystem(name)
    defs[name] = def
    const av = await def.available()
    if (av.ok) {
      active.push(name)
      systemInfo[name] = { available: true, description: def.description, routing: def.routing === true }
    } else {
      systemInfo[name] = { available: false, description: def.description, routing: def.routing === true, reason: av.reason }
      const w = `system ${name} skipped: ${av.reason}`
      warnings.push(w)
      log(`bench: ${w}`)
    }
  }
  active.sort((x, y) => (x === "raw" ? -1 : y === "raw" ? 1 : 0))
  if (!active.includes("raw")) warnings.push("raw is not among the systems: no ratios")
  if (active.length === 0) throw new Error("no system available")

  // file descriptors
  const maxConns = maxConnections(p, scenarios.map((s) => s.letter))
  const hard = hardFdLimit()
  if (hard < maxConns + 256) {
    throw new Error(`the hard fd limit (ulimit -Hn = ${hard}) is too low for ${maxConns} connections in one server process`)
  }
  const clientProcs = Math.ceil(maxConns / CONNS_PER_CLIENT)

  const mode = args.quick ? "quick" : "full"
  log(
    `bench: ${mode}, ${p.repeats} repeat(s), scenarios ${scenarios.map((s) => s.letter).join("")}, ` +
      `systems ${active.join(", ")}, ${clientProcs} client process(es)${pin ? ", server on core 0, clients on core 1" : ""}`
  )

  const profDir = path.join(BENCH_DIR, "results", "profiles", started.toISOString().replace(/[:.]/g, "-"))
  const entry = await prepareEntry(
    (args.equalBaseline ?? !args.quick) ? active : [],
    args.cpuProf ? ["--cpu-prof", `--cpu-prof-dir=${profDir}`] : []
  )
  if (args.cpuProf) log(`bench: server CPU profiles go to ${path.relative(process.cwd(), profDir)}/ (one per server process, named by pid; the progress lines name the pids)`)
  const clients = await ClientPool.start(clientProcs, pin, entry)
  const ctx: Ctx = {
    p,
    entry,
    clients,
    pin,
    baseCfg: {
      role: "main",
      keepAliveMs: 15_000,
      retryMs: 2000,
      recentBufferSize: args.recentBuffer,
      autoTimestamp: !args.sameBytes,
      queue: {},
      redisUrl: undefined,
      channel: "ssekify:bench"
    },
    defs,
    redis: undefined,
    cluster: undefined
  }

  const runs: RunRecord[] = []
  const caseDefs: CaseDef[] = []
  const skipped: Record<string, string> = {}
  try {
    for (const sc of scenarios) {
      const cases = sc.cases(p)
      const scStart = Date.now()
      const mine = active.filter((s) => sc.appliesTo?.(defs[s] as SystemDef) ?? true)
      if (mine.length === 0) {
        const w = `scenario ${sc.letter} SKIPPED: it runs for none of the systems ${active.join(", ")}`
        skipped[sc.letter] = w
        warnings.push(w)
        log(`bench: ${w}`)
        continue
      }
      await sc.before?.(ctx)
      try {
        const why = sc.unavailable?.(ctx)
        if (why !== undefined) {
          skipped[sc.letter] = why
          const w = `scenario ${sc.letter} SKIPPED: ${why}`
          warnings.push(w)
          log(`bench: ${"!".repeat(8)} ${w}`)
          continue
        }
        caseDefs.push(...cases)
        for (let rep = 1; rep <= p.repeats; rep++) {
          const others = mine.filter((s) => s !== "raw")
          const shift = others.length === 0 ? 0 : (rep - 1) % others.length
          const order = [...mine.filter((s) => s === "raw"), ...others.slice(shift), ...others.slice(0, shift)]
          for (const system of order) {
            const busy = await waitQuiet(args.quietWait ?? (args.quick ? 0 : 10))
            if (busy !== undefined) log(`  (not quiet after ${args.quietWait ?? 10} s: ${busy})`)
            const t0 = Date.now()
            try {
              const outs = await sc.run(ctx, system, rep)
              log(`  ${sc.letter} ${system} #${rep}: ${((Date.now() - t0) / 1000).toFixed(1)} s`)
              for (const o of outs) {
                runs.push({ ...o, system, repeat: rep })
                if (o.unavailable !== undefined) {
                  log(`  ${o.caseId.padEnd(12)} ${system.padEnd(14)} #${rep}  n/a: ${o.unavailable}`)
                  continue
                }
                const def = cases.find((c) => c.id === o.caseId)
                const shown = (def?.metrics ?? []).slice(0, 3).map((m) => `${m.label} ${fmt(o.metrics[m.key], m.unit)}`)
                const noisy = o.foreign?.flagged === true ? `  [foreign cpu ${o.foreign.foreignMs} ms, steal ${o.foreign.stealMs} ms]` : ""
                log(`  ${o.caseId.padEnd(12)} ${system.padEnd(14)} #${rep}  ${shown.join(", ")}${noisy}`)
                for (const n of o.notes) log(`      note: ${n}`)
              }
            } catch (e) {
              const msg = e instanceof Error ? e.message : String(e)
              log(`  ${sc.letter.padEnd(12)} ${system.padEnd(14)} #${rep}  FAILED after ${Date.now() - t0} ms: ${msg}`)
              for (const c of cases.filter((x) => x.routingOnly !== true || defs[system]?.routing === true)) {
                runs.push({ caseId: c.id, system, repeat: rep, metrics: {}, foreign: undefined, notes: [], error: msg })
              }
            }
          }
        }
      } finally {
        await sc.after?.(ctx)
        log(`bench: scenario ${sc.letter} took ${((Date.now() - scStart) / 1000).toFixed(1)} s`)
      }
    }
  } finally {
    await clients.stop().catch(() => undefined)
    await stopAll()
    removeSnapshot()
  }

  const reports = aggregate(caseDefs, runs, active)
  for (const r of runs) {
    if (r.foreign?.flagged === true) {
      const top = r.foreign.top.map((t) => `${t.comm} ${t.ms} ms`).join(", ")
      warnings.push(
        `${r.caseId} ${r.system} #${r.repeat}: foreign CPU ${r.foreign.foreignMs} ms, steal ${r.foreign.stealMs} ms over ${r.foreign.wallMs} ms (${top})`
      )
    }
  }
  const finished = new Date()
  const header =
    `ssekify bench (${mode}), ${started.toISOString()}, ${p.repeats} repeat(s), ` +
    `node ${process.version}, ${os.cpus().length} × ${os.cpus()[0]?.model ?? "?"}` +
    (args.sameBytes ? ", --same-bytes (ssekify without its timestamp auto field)" : "") + "\n" +
    `medians; "×r" = median over repeats of (system / raw in the same repeat); "(!n)" = n repeats with foreign CPU use`
  process.stdout.write(header + "\n" + table(reports, active) + "\n")
  for (const sc of scenarios) {
    const extra = sc.summary?.(reports, active)
    if (extra !== undefined && extra !== "") process.stdout.write(extra + "\n")
  }
  if (warnings.length > 0) process.stdout.write("\nwarnings:\n" + warnings.map((w) => `  - ${w}`).join("\n") + "\n")

  const json = {
    version: 1,
    startedAt: started.toISOString(),
    finishedAt: finished.toISOString(),
    durationS: (finished.getTime() - started.getTime()) / 1000,
    argv: process.argv.slice(2),
    quick: args.quick,
    repeats: p.repeats,
    machine: {
      cpus: os.cpus().length,
      model: os.cpus()[0]?.model ?? "?",
      node: process.version,
      kernel: os.release(),
      totalMemBytes: os.totalmem(),
      hardFdLimit: hard,
      pinned: pin
    },
    config: { ...ctx.baseCfg, params: p, preload: entry.preload },
    systems: systemInfo,
    scenarios: Object.fromEntries(scenarios.map((s) => [s.letter, s.title])),
    skipped,
    cases: reports,
    warnings
  }
  const outFile = args.out ?? path.join(BENCH_DIR, "results", `${started.toISOString().replace(/[:.]/g, "-")}.json`)
  fs.mkdirSync(path.dirname(outFile), { recursive: true })
  fs.writeFileSync(outFile, JSON.stringify(json, (_k, v: unknown) => (typeof v === "number" && !Number.isFinite(v) ? null : v), 2))
  log(`bench: ${((finished.getTime() - started.getTime()) / 1000).toFixed(0)} s, JSON written to ${path.relative(process.cwd(), outFile)}`)
  return runs.some((r) => r.error !== undefined) ? 1 : 0
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    log(`bench: ${e instanceof UsageError ? e.message : e instanceof Error ? (e.stack ?? e.message) : String(e)}`)
    void stopAll().finally(() => process.exit(2))
  }
)
