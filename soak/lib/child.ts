/**
 * The soak runner's side of `soak/server.ts`: forks it with `--expose-gc` (through tsx),
 * sends commands over IPC, and makes sure no child outlives the runner.
 */
import { type ChildProcess, fork } from "node:child_process"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

export const SOAK_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..")
export const REPO_DIR = path.dirname(SOAK_DIR)

const live = new Set<ChildProcess>()
process.once("exit", () => {
  for (const c of live) {
    try {
      c.kill("SIGKILL")
    } catch {
      // gone
    }
  }
})

export class ServerChild {
  readonly child: ChildProcess
  private nextId = 0
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>()
  stderr = ""
  exitCode: number | null = null
  exitSignal: NodeJS.Signals | null = null
  exitedAt = 0
  private readonly exitWaiters: Array<() => void> = []

  constructor(name: string) {
    this.child = fork(path.join(SOAK_DIR, "server.ts"), [name], {
      cwd: REPO_DIR,
      execArgv: ["--expose-gc", "--import", "tsx"],
      stdio: ["ignore", "inherit", "pipe", "ipc"]
    })
    live.add(this.child)
    this.child.stderr!.on("data", (d: Buffer) => {
      this.stderr = (this.stderr + d.toString()).slice(-8000)
    })
    this.child.on("message", (msg: { id: number; ok: boolean; result?: unknown; error?: string }) => {
      const p = this.pending.get(msg.id)
      if (p === undefined) return
      this.pending.delete(msg.id)
      if (msg.ok) p.resolve(msg.result)
      else p.reject(new Error(`server: ${msg.error}`))
    })
    this.child.once("exit", (code, signal) => {
      live.delete(this.child)
      this.exitCode = code
      this.exitSignal = signal
      this.exitedAt = Date.now()
      for (const p of this.pending.values()) p.reject(new Error(`server exited (${code ?? signal}) ${this.stderr.slice(-2000)}`))
      this.pending.clear()
      for (const w of this.exitWaiters.splice(0)) w()
    })
  }

  get alive(): boolean {
    return this.exitCode === null && this.exitSignal === null
  }

  call<A = unknown>(cmd: string, args: unknown = {}, timeoutMs = 120_000): Promise<A> {
    if (!this.alive) return Promise.reject(new Error(`server is not running (${this.exitCode ?? this.exitSignal})`))
    const id = this.nextId++
    return new Promise<A>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id)
        reject(new Error(`server command ${cmd} timed out after ${timeoutMs} ms`))
      }, timeoutMs)
      this.pending.set(id, {
        resolve: (v) => {
          clearTimeout(timer)
          resolve(v as A)
        },
        reject: (e) => {
          clearTimeout(timer)
          reject(e)
        }
      })
      this.child.send({ id, cmd, args })
    })
  }

  /** Resolves true when the process exits within `timeoutMs`, false otherwise (it is not killed). */
  exited(timeoutMs: number): Promise<boolean> {
    if (!this.alive) return Promise.resolve(true)
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs)
      this.exitWaiters.push(() => {
        clearTimeout(timer)
        resolve(true)
      })
    })
  }

  async kill(): Promise<void> {
    if (!this.alive) return
    this.child.kill("SIGKILL")
    await this.exited(5_000)
  }
}
