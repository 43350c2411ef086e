/**
 * A private redis-server for scenario E, on a free port (never 6379: a system
 * Redis may run there), pinned, without persistence, watched by a shell that
 * kills it if the driver disappears.
 */
import type { ChildProcess } from "node:child_process"
import { spawnSync } from "node:child_process"
import * as net from "node:net"
import { spawnPinned, stop } from "./procs.js"
import { sleep } from "./stats.js"

export function haveRedisServer(): boolean {
  return spawnSync("sh", ["-c", "command -v redis-server"], { stdio: "ignore" }).status === 0
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer()
    s.once("error", reject)
    s.listen(0, "127.0.0.1", () => {
      const a = s.address()
      const port = typeof a === "object" && a !== null ? a.port : 0
      s.close(() => (port === 0 || port === 6379 ? freePort().then(resolve, reject) : resolve(port)))
    })
  })
}

function encode(args: ReadonlyArray<string>): string {
  return `*${args.length}\r\n` + args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join("")
}

/** One command over a fresh connection; resolves with the raw RESP reply. */
export function redisCommand(port: number, args: ReadonlyArray<string>, timeoutMs = 2000): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, "127.0.0.1")
    let buf = ""
    const timer = setTimeout(() => {
      s.destroy()
      reject(new Error(`redis ${args[0] ?? ""} timed out`))
    }, timeoutMs)
    s.on("error", (e) => {
      clearTimeout(timer)
      reject(e)
    })
    s.on("data", (d: Buffer) => {
      buf += d.toString("latin1")
      // enough for the short replies we use (simple, integer, flat arrays)
      if (/\r\n$/.test(buf) && !/^\*[1-9]/.test(buf)) done()
      else if (/^\*(\d+)\r\n/.test(buf)) {
        const n = Number(/^\*(\d+)/.exec(buf)?.[1])
        if ((buf.match(/\r\n/g)?.length ?? 0) >= 1 + 2 * n) done()
      }
    })
    const done = (): void => {
      clearTimeout(timer)
      s.end()
      resolve(buf)
    }
    s.on("connect", () => s.write(encode(args)))
  })
}

/** Number of channels with a subscriber plus number of pattern subscriptions. */
export async function subscriptions(port: number): Promise<number> {
  const ch = await redisCommand(port, ["PUBSUB", "CHANNELS"])
  const pat = await redisCommand(port, ["PUBSUB", "NUMPAT"])
  return Number(/^\*(\d+)/.exec(ch)?.[1] ?? 0) + Number(/^:(\d+)/.exec(pat)?.[1] ?? 0)
}

export interface RedisServer {
  readonly port: number
  readonly url: string
  readonly child: ChildProcess
  stop(): Promise<void>
}

export async function startRedis(core: number | undefined): Promise<RedisServer> {
  const port = await freePort()
  const args = ["--port", String(port), "--bind", "127.0.0.1", "--save", "''", "--appendonly", "no", "--protected-mode", "no"]
  const script =
    `redis-server ${args.join(" ")} >/dev/null 2>&1 & R=$!; ` +
    `trap 'kill $R 2>/dev/null' EXIT INT TERM; ` +
    `while kill -0 ${process.pid} 2>/dev/null && kill -0 $R 2>/dev/null; do sleep 1; done`
  const child = spawnPinned(["sh", "-c", script], { core, name: "redis", ipc: false, group: true })
  for (let i = 0; i < 100; i++) {
    try {
      if ((await redisCommand(port, ["PING"], 500)).startsWith("+PONG")) {
        return { port, url: `redis://127.0.0.1:${port}`, child, stop: () => stop(child) }
      }
    } catch {
      // not up yet
    }
    await sleep(50)
  }
  await stop(child)
  throw new Error(`redis-server did not answer on port ${port}`)
}
