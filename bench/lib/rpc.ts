/**
 * A tiny request/response protocol over the Node IPC channel of a child process.
 * The driver holds one `Rpc<Api>` per child; the child calls `serve(handlers)`.
 * Every call has a timeout, and every pending call fails when the child exits.
 */
import type { ChildProcess } from "node:child_process"

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Api = Record<string, (args: any) => unknown>

/** What a child implements for an `Api`: each command may answer synchronously or with a promise. */
export type Handlers<A extends Api> = {
  [K in keyof A]: (args: Parameters<A[K]>[0]) => ReturnType<A[K]> | Promise<ReturnType<A[K]>>
}

interface Request {
  readonly kind: "req"
  readonly id: number
  readonly cmd: string
  readonly args: unknown
}
interface Response {
  readonly kind: "res"
  readonly id: number
  readonly ok: boolean
  readonly value?: unknown
  readonly error?: string
}

interface Pending {
  readonly resolve: (v: unknown) => void
  readonly reject: (e: Error) => void
  readonly timer: NodeJS.Timeout
}

export class Rpc<A extends Api> {
  private nextId = 1
  private readonly pending = new Map<number, Pending>()
  private exited: string | undefined

  constructor(
    readonly name: string,
    readonly child: ChildProcess
  ) {
    child.on("message", (raw: unknown) => {
      const msg = raw as Response
      if (msg === null || typeof msg !== "object" || msg.kind !== "res") return
      const p = this.pending.get(msg.id)
      if (p === undefined) return
      this.pending.delete(msg.id)
      clearTimeout(p.timer)
      if (msg.ok) p.resolve(msg.value)
      else p.reject(new Error(`${this.name}: ${msg.error ?? "unknown error"}`))
    })
    child.once("exit", (code, signal) => {
      this.exited = `${this.name} exited (code ${String(code)}, signal ${String(signal)})`
      for (const [id, p] of this.pending) {
        clearTimeout(p.timer)
        p.reject(new Error(this.exited))
        this.pending.delete(id)
      }
    })
  }

  get alive(): boolean {
    return this.exited === undefined
  }

  call<K extends keyof A & string>(
    cmd: K,
    args: Parameters<A[K]>[0],
    timeoutMs = 60_000
  ): Promise<Awaited<ReturnType<A[K]>>> {
    if (this.exited !== undefined) return Promise.reject(new Error(this.exited))
    const id = this.nextId++
    return new Promise<Awaited<ReturnType<A[K]>>>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id)
        reject(new Error(`${this.name}: '${cmd}' timed out after ${timeoutMs} ms`))
      }, timeoutMs)
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject, timer })
      const req: Request = { kind: "req", id, cmd, args }
      this.child.send(req, (err) => {
        if (err !== null && err !== undefined) {
          const p = this.pending.get(id)
          if (p !== undefined) {
            this.pending.delete(id)
            clearTimeout(p.timer)
            p.reject(err)
          }
        }
      })
    })
  }
}

/** Child side: answer requests with the given handlers; exit when the parent goes away. */
export function serve<A extends Api>(handlers: Handlers<A>): void {
  if (process.send === undefined) throw new Error("serve() needs an IPC channel (start this file from bench/run.ts)")
  const send = process.send.bind(process)
  process.on("message", (raw: unknown) => {
    const msg = raw as Request
    if (msg === null || typeof msg !== "object" || msg.kind !== "req") return
    const handler = (handlers as Record<string, ((args: unknown) => unknown) | undefined>)[msg.cmd]
    const reply = (r: Response): void => {
      if (process.connected) send(r)
    }
    if (handler === undefined) {
      reply({ kind: "res", id: msg.id, ok: false, error: `unknown command ${msg.cmd}` })
      return
    }
    Promise.resolve()
      .then(() => handler(msg.args))
      .then(
        (value) => reply({ kind: "res", id: msg.id, ok: true, value }),
        (e: unknown) =>
          reply({ kind: "res", id: msg.id, ok: false, error: e instanceof Error ? (e.stack ?? e.message) : String(e) })
      )
  })
  // The driver died or closed the channel: never outlive it.
  process.on("disconnect", () => process.exit(0))
}
