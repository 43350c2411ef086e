/**
 * Runs one of the repository's TypeScript programs (`bench/run.ts`, `soak/run.ts`) in a
 * child process with tsx and collects its output. After `timeoutMs` the child gets
 * SIGINT: the runners stop their servers, clients and redis-servers before they exit.
 */
import { spawn } from "node:child_process"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

/** The repository's root. */
export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..")

export interface ScriptResult {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

export const runScript = (script: string, args: ReadonlyArray<string>, timeoutMs: number): Promise<ScriptResult> =>
  new Promise((resolve) => {
    const child = spawn(process.execPath, ["--import", "tsx", script, ...args], { cwd: REPO, stdio: ["ignore", "pipe", "pipe"] })
    let stdout = ""
    let stderr = ""
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()))
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()))
    const timer = setTimeout(() => child.kill("SIGINT"), timeoutMs)
    child.on("close", (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr })
    })
  })
