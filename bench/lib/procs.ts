/**
 * Child processes of the bench: spawned pinned to one core (`taskset`), with the
 * soft fd limit raised to the hard one, tracked so that every one of them is
 * killed when the driver ends — normally, on error, or on SIGINT/SIGTERM.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process"
import { fileURLToPath } from "node:url"
import * as fs from "node:fs"
import * as path from "node:path"

/** bench/ — found by walking up, as this code also runs bundled from bench/.build/run-<pid>/ */
function findBenchDir(): string {
  const here = path.dirname(fileURLToPath(import.meta.url))
  let d = here
  for (let i = 0; i < 5; i++) {
    if (fs.existsSync(path.join(d, "run.ts")) && fs.existsSync(path.join(d, "systems"))) return d
    d = path.dirname(d)
  }
  return path.dirname(here)
}

export const BENCH_DIR = findBenchDir()
export const REPO_DIR = path.dirname(BENCH_DIR)

const children = new Set<ChildProcess>()
/** children started as their own process group (shell wrappers): signalled as a group */
const groups = new WeakSet<ChildProcess>()

function signal(child: ChildProcess, sig: NodeJS.Signals): void {
  if (child.pid === undefined) return
  try {
    process.kill(groups.has(child) ? -child.pid : child.pid, sig)
  } catch {
    // already gone
  }
}

/** `ulimit -n` hard limit of this shell (what a child can raise its soft limit to). */
export function hardFdLimit(): number {
  const r = spawnSync("sh", ["-c", "ulimit -Hn"], { encoding: "utf8" })
  const v = r.stdout.trim()
  return v === "unlimited" ? Number.POSITIVE_INFINITY : Number(v)
}

export function haveTaskset(): boolean {
  return spawnSync("taskset", ["-c", "0", "true"]).status === 0
}

/** Pin this process (all its threads) to `core`. */
export function pinSelf(core: number): boolean {
  return pinPid(process.pid, core)
}

/** Pin process `pid` (all its threads; threads it starts later inherit it) to `core`. */
export function pinPid(pid: number, core: number): boolean {
  return spawnSync("taskset", ["-a", "-cp", String(core), String(pid)], { stdio: "ignore" }).status === 0
}

export interface SpawnOptions {
  readonly core: number | undefined
  readonly name: string
  readonly ipc: boolean
  readonly env?: NodeJS.ProcessEnv
  /** start it as its own process group, and signal the whole group (for shell wrappers) */
  readonly group?: boolean
}

/**
 * Spawn `argv` through `sh` (raise the soft fd limit) and `taskset` (pin), exec'ing
 * both away so the pid we hold is the pid of the real program. Its stdout goes to
 * our stderr (stdout is the report), prefixed by nothing: children log little.
 */
export function spawnPinned(argv: ReadonlyArray<string>, opts: SpawnOptions): ChildProcess {
  const script =
    'ulimit -n "$(ulimit -Hn)" 2>/dev/null; ' +
    (opts.core === undefined ? 'exec "$@"' : 'exec taskset -c "$0" "$@"')
  const child = spawn("sh", ["-c", script, opts.core === undefined ? "sh" : String(opts.core), ...argv], {
    cwd: REPO_DIR,
    stdio: opts.ipc ? ["ignore", "pipe", "inherit", "ipc"] : ["ignore", "pipe", "inherit"],
    env: opts.env ?? process.env,
    detached: opts.group === true
  })
  if (opts.group === true) groups.add(child)
  child.stdout?.on("data", (d: Buffer) => process.stderr.write(d))
  children.add(child)
  child.once("exit", () => children.delete(child))
  return child
}

export function spawnNode(
  script: string,
  nodeArgs: ReadonlyArray<string>,
  opts: Omit<SpawnOptions, "ipc">
): ChildProcess {
  return spawnPinned([process.execPath, ...nodeArgs, script], { ...opts, ipc: true })
}

function alive(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves when the child is gone. */
export function stop(child: ChildProcess, graceMs = 2000): Promise<void> {
  if (!alive(child) || child.pid === undefined) return Promise.resolve()
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      if (alive(child)) signal(child, "SIGKILL")
    }, graceMs)
    child.once("exit", () => {
      clearTimeout(timer)
      if (groups.has(child)) signal(child, "SIGKILL") // whatever is left of the group
      resolve()
    })
    signal(child, "SIGTERM")
  })
}

export async function stopAll(): Promise<void> {
  await Promise.all([...children].map((c) => stop(c)))
}

/** Synchronous last resort (exit handlers cannot wait). */
export function killAllNow(): void {
  for (const c of children) if (alive(c)) signal(c, "SIGKILL")
}

export function childPids(): number[] {
  return [...children].flatMap((c) => (c.pid === undefined ? [] : [c.pid]))
}

const exitHooks: Array<() => void> = []
/** Synchronous work to do when the driver exits, however it exits. */
export function onExit(f: () => void): void {
  exitHooks.push(f)
}

let installed = false
/** Kill every child on exit, SIGINT, SIGTERM and uncaught errors. */
export function installCleanup(): void {
  if (installed) return
  installed = true
  process.on("exit", () => {
    killAllNow()
    for (const f of exitHooks) f()
  })
  const onSignal = (sig: NodeJS.Signals): void => {
    process.stderr.write(`\nbench: ${sig}, stopping children\n`)
    killAllNow()
    process.exit(sig === "SIGINT" ? 130 : 143)
  }
  process.on("SIGINT", onSignal)
  process.on("SIGTERM", onSignal)
  process.on("uncaughtException", (e) => {
    process.stderr.write(`bench: uncaught ${e.stack ?? String(e)}\n`)
    killAllNow()
    process.exit(1)
  })
  process.on("unhandledRejection", (e) => {
    process.stderr.write(`bench: unhandled rejection ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`)
    killAllNow()
    process.exit(1)
  })
}
