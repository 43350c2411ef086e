/**
 * The ssekify systems load the built package. The driver builds it first when
 * dist/ is missing or older than src/, then copies dist/ to a private snapshot
 * (bench/.build/dist-<pid>/) that its server processes import: a rebuild running
 * meanwhile (tsup cleans dist/) cannot pull the package from under a run.
 */
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { pathToFileURL } from "node:url"
import { BENCH_DIR, onExit, REPO_DIR } from "../lib/procs.js"
import type { Availability } from "./types.js"

const DIST_DIR = path.join(REPO_DIR, "dist")
const SRC_DIR = path.join(REPO_DIR, "src")
/** set by the driver for its children: the snapshot's index.js */
const ENV = "SSEKIFY_BENCH_DIST"

/** URL of the package entry the ssekify systems import. */
export function distUrl(): string {
  return pathToFileURL(process.env[ENV] ?? path.join(DIST_DIR, "index.js")).href
}

function newestMtime(dir: string): number {
  let newest = 0
  const stack = [dir]
  for (let guard = 0; stack.length > 0 && guard < 10_000; guard++) {
    const d = stack.pop() as string
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name)
      if (e.isDirectory()) stack.push(p)
      else newest = Math.max(newest, fs.statSync(p).mtimeMs)
    }
  }
  return newest
}

let snapshotDir: string | undefined

/** Remove this run's snapshot (the driver calls it at the end). */
export function removeSnapshot(): void {
  if (snapshotDir !== undefined) fs.rmSync(snapshotDir, { recursive: true, force: true })
  snapshotDir = undefined
}

async function buildAndSnapshot(): Promise<Availability> {
  const entry = path.join(DIST_DIR, "index.js")
  const distTime = fs.existsSync(entry) ? fs.statSync(entry).mtimeMs : 0
  if (distTime < newestMtime(SRC_DIR)) {
    process.stderr.write("bench: dist/ is missing or older than src/: npm run build\n")
    const r = spawnSync("npm", ["run", "build"], { cwd: REPO_DIR, stdio: ["ignore", 2, 2], timeout: 300_000 })
    if (r.status !== 0) return { ok: false, reason: `npm run build failed (exit ${String(r.status)})` }
  }
  const dir = path.join(BENCH_DIR, ".build", `dist-${process.pid}`)
  try {
    fs.rmSync(dir, { recursive: true, force: true })
    fs.cpSync(DIST_DIR, dir, { recursive: true })
    snapshotDir = dir
    onExit(removeSnapshot)
    // a fresh URL per attempt: a failed import is cached by URL
    const file = path.join(dir, "index.js")
    const mod = (await import(`${pathToFileURL(file).href}?t=${Date.now()}`)) as Record<string, unknown>
    if (typeof mod["SSEKify"] !== "function") return { ok: false, reason: "dist/index.js has no SSEKify export" }
    process.env[ENV] = file
  } catch (e) {
    return { ok: false, reason: `dist/ does not load: ${e instanceof Error ? e.message : String(e)}` }
  }
  return { ok: true }
}

let outcome: Promise<Availability> | undefined

/**
 * Build dist/ when needed, snapshot it and check it loads (once per process). A
 * second attempt after a pause covers a build running elsewhere at the same time
 * (tsup empties dist/ first).
 */
export function ensureBuilt(): Promise<Availability> {
  outcome ??= (async (): Promise<Availability> => {
    if (process.env[ENV] !== undefined) return { ok: true } // a child of the driver: already done
    if (!fs.existsSync(path.join(SRC_DIR, "index.ts"))) {
      return { ok: false, reason: "src/index.ts does not exist yet (core not written)" }
    }
    const first = await buildAndSnapshot()
    if (first.ok) return first
    process.stderr.write(`bench: ${first.reason}; retrying in 3 s\n`)
    await new Promise((r) => setTimeout(r, 3000))
    return buildAndSnapshot()
  })()
  return outcome
}
