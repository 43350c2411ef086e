/**
 * Private redis-servers for scenarios E and H, on free ports (never 6379: a system
 * Redis may run there), pinned, without persistence, each watched by a shell that
 * kills it if the driver disappears: one node ({@link startRedis}) or a 3-master
 * Redis Cluster ({@link startRedisCluster}).
 */
import type { ChildProcess } from "node:child_process"
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { onExit, spawnPinned, stop } from "./procs.js"
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

/** Where the RESP value starting at `i` of `b` (latin1: one char per byte) ends, or -1 when it is not complete yet. */
function respEnd(b: string, i: number): number {
  const nl = b.indexOf("\r\n", i)
  if (nl < 0) return -1
  const n = Number(b.slice(i + 1, nl))
  switch (b[i]) {
    case "$": {
      if (n < 0) return nl + 2
      const end = nl + 2 + n + 2
      return b.length >= end ? end : -1
    }
    case "*": {
      let j = nl + 2
      for (let k = 0; k < n; k++) {
        j = respEnd(b, j)
        if (j < 0) return -1
      }
      return j
    }
    default:
      return nl + 2
  }
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
      if (respEnd(buf, 0) >= 0) done()
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

/** The fields of an `INFO` reply (`name:value` lines). */
export async function info(port: number, section: string): Promise<Map<string, string>> {
  const out = await redisCommand(port, ["INFO", section])
  const m = new Map<string, string>()
  for (const line of out.split("\r\n")) {
    const i = line.indexOf(":")
    if (i > 0 && !line.startsWith("#")) m.set(line.slice(0, i), line.slice(i + 1))
  }
  return m
}

/** Bytes the node has written to its clients so far (`INFO stats` `total_net_output_bytes`). */
export async function netOutputBytes(port: number): Promise<number> {
  return Number((await info(port, "stats")).get("total_net_output_bytes") ?? Number.NaN)
}

/** Subscribers of `channel` on the node on `port` (`PUBSUB NUMSUB`). */
export async function numsub(port: number, channel: string): Promise<number> {
  return Number(/:(\d+)\r\n$/.exec(await redisCommand(port, ["PUBSUB", "NUMSUB", channel]))?.[1] ?? 0)
}

/** Number of elements of the array reply of `args` (e.g. `PUBSUB CHANNELS <pattern>`); 0 on an error reply. */
export async function arrayLength(port: number, args: ReadonlyArray<string>): Promise<number> {
  return Number(/^\*(\d+)/.exec(await redisCommand(port, args))?.[1] ?? 0)
}

export interface RedisServer {
  readonly port: number
  readonly url: string
  readonly child: ChildProcess
  stop(): Promise<void>
}

/** A redis-server on `port` (default: a free one) with `extra` arguments. */
export async function startRedis(
  core: number | undefined,
  extra: ReadonlyArray<string> = [],
  port: number | undefined = undefined
): Promise<RedisServer> {
  port ??= await freePort()
  const args = [
    "--port",
    String(port),
    "--bind",
    "127.0.0.1",
    "--save",
    "''",
    "--appendonly",
    "no",
    "--protected-mode",
    "no",
    ...extra
  ]
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

export interface RedisClusterServer {
  readonly nodes: ReadonlyArray<RedisServer>
  /** startup nodes for ioredis' `Cluster` */
  readonly startupNodes: ReadonlyArray<{ readonly host: string; readonly port: number }>
  stop(): Promise<void>
}

/**
 * A 3-master Redis Cluster (no replicas): three cluster-enabled nodes in a private
 * temp dir, `redis-cli --cluster create`, then every node reports `cluster_state:ok`
 * (each step bounded).
 */
export async function startRedisCluster(core: number | undefined, masters = 3): Promise<RedisClusterServer> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ssekify-bench-cluster-"))
  const removeDir = (): void => fs.rmSync(dir, { recursive: true, force: true })
  onExit(removeDir)
  const nodes: RedisServer[] = []
  const stopAll = async (): Promise<void> => {
    await Promise.all(nodes.map((n) => n.stop()))
    removeDir()
  }
  try {
    for (let i = 0; i < masters; i++) {
      const port = await freePort()
      let busPort = await freePort()
      for (let guard = 0; busPort === port && guard < 10; guard++) busPort = await freePort()
      nodes.push(
        await startRedis(core, [
          "--cluster-enabled",
          "yes",
          "--cluster-config-file",
          `nodes-${i}.conf`,
          "--cluster-node-timeout",
          "2000",
          "--cluster-port",
          String(busPort),
          "--dir",
          dir
        ], port)
      )
    }
    const r = spawnSync(
      "redis-cli",
      ["--cluster", "create", ...nodes.map((n) => `127.0.0.1:${n.port}`), "--cluster-replicas", "0", "--cluster-yes"],
      { encoding: "utf8", timeout: 30_000 }
    )
    if (r.status !== 0) throw new Error(`redis-cli --cluster create failed: ${(r.stderr || r.stdout || String(r.error)).slice(0, 300)}`)
    const deadline = Date.now() + 20_000
    for (;;) {
      let ok = 0
      for (const n of nodes) {
        const c = await redisCommand(n.port, ["CLUSTER", "INFO"]).catch(() => "")
        if (/cluster_state:ok/.test(c) && /cluster_slots_assigned:16384\b/.test(c) && new RegExp(`cluster_known_nodes:${masters}\\b`).test(c)) ok++
      }
      if (ok === nodes.length) break
      if (Date.now() > deadline) throw new Error("the bench's Redis Cluster never reached cluster_state:ok on every node")
      await sleep(200)
    }
  } catch (e) {
    await stopAll()
    throw e
  }
  return {
    nodes,
    startupNodes: nodes.map((n) => ({ host: "127.0.0.1", port: n.port })),
    stop: stopAll
  }
}

export function haveRedisCli(): boolean {
  return spawnSync("sh", ["-c", "command -v redis-cli"], { stdio: "ignore" }).status === 0
}
