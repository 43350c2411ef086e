/**
 * Micro-benchmark of the cost of logs and spans (issue 14 item 4) on the hot paths: the
 * same sends against two copies of the library, this worktree's `src/` ("new") and
 * another tree's (`--base=<dir>`, e.g. the commit before the change, "base").
 *
 *   git archive <base-commit> src | tar -x -C /tmp/obs-base && ln -s "$PWD/node_modules" /tmp/obs-base/node_modules
 *   node --import tsx bench/micro/spans.ts --base=/tmp/obs-base/src [--runs=5] [--n=200000]
 *
 * Scenarios (100 connections on a real node:http server on 127.0.0.1, one per user,
 * clients in this process reading and discarding):
 * - `facade.sendToUser`: N sends, round robin over the 100 users (`SSEKify`, sync path);
 * - `facade.sendToAll`: N / 100 sends to all 100 connections (N frames);
 * - `bus.receive`: N messages from another instance on the in-process bus, each to one
 *   of the users (the facade on `redis: bus.adapter()`; the receive path is synchronous);
 * - `effect.sendToUser`: N sends through the Effect API (`sse.sendToUser` in one
 *   `Effect.gen` loop, Effect's default tracer: where a span is made per send).
 *
 * Each (scenario, variant, run) is its own process, variants alternating; the time is
 * the send loop plus the flush of the writes (one `setImmediate`), after a warm-up of
 * N / 10. Prints the median of the runs per scenario and variant, and new / base.
 */
import { spawnSync } from "node:child_process"
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import * as path from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"

const here = path.dirname(fileURLToPath(import.meta.url))
const args = new Map(process.argv.slice(2).map((a) => {
  const [k, v] = a.replace(/^--/, "").split("=")
  return [k!, v ?? "true"] as const
}))
const N = Number(args.get("n") ?? 200_000)
const USERS = 100
const SCENARIOS = ["facade.sendToUser", "facade.sendToAll", "bus.receive", "effect.sendToUser"] as const

interface Lib {
  readonly SSEKify: new (options?: Record<string, unknown>) => {
    registerConnection(userId: string, res: http.ServerResponse): unknown
    sendToUser(userId: string, data: unknown): number
    sendToAll(data: unknown): number
    shutdown(options?: Record<string, unknown>): Promise<unknown>
  }
  readonly createMemoryBus: () => { adapter(): { publish(channel: string, message: string): unknown } }
  readonly Envelope: {
    make(fields: Record<string, unknown>): unknown
    encode(env: unknown): string
  }
  readonly SseKify: {
    readonly SseKify: unknown
    layerTest(options?: Record<string, unknown>): unknown
  }
}

const startConnections = async (register: (userId: string, res: http.ServerResponse) => void) => {
  const server = http.createServer((req, res) => register(new URL(req.url!, "http://x").searchParams.get("u")!, res))
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  const port = (server.address() as AddressInfo).port
  const agent = new http.Agent({ keepAlive: true, maxSockets: USERS })
  const requests: Array<http.ClientRequest> = []
  await Promise.all(Array.from({ length: USERS }, (_, i) =>
    new Promise<void>((resolve) => {
      const req = http.get({ host: "127.0.0.1", port, path: `/?u=u${i}`, agent }, (res) => {
        res.on("data", () => {})
        resolve()
      })
      requests.push(req)
    })))
  return () => {
    for (const req of requests) req.destroy()
    agent.destroy()
    server.close()
  }
}

const flush = () => new Promise<void>((resolve) => setImmediate(resolve))

const worker = async (scenario: string, src: string): Promise<number> => {
  const lib = (await import(pathToFileURL(path.join(src, "index.ts")).href)) as Lib
  const users = Array.from({ length: USERS }, (_, i) => `u${i}`)
  const payload = { text: "hello", n: 1 }
  const quiet = { keepAliveMs: 0, autoFields: { timestamp: false } }
  let loop: (n: number) => void | Promise<void>
  let stop: () => Promise<unknown>
  if (scenario === "effect.sendToUser") {
    const { Effect, ManagedRuntime } = await import("effect")
    const layer = lib.SseKify.layerTest({ ...quiet }) as import("effect").Layer.Layer<never>
    const managed = ManagedRuntime.make(layer)
    const sse = (await managed.runPromise(lib.SseKify.SseKify as never)) as {
      sendToUser(userId: string, data: unknown): import("effect").Effect.Effect<number, unknown>
      registerConnection(userId: string, res: http.ServerResponse): import("effect").Effect.Effect<unknown, unknown>
    }
    const close = await startConnections((userId, res) => void managed.runFork(sse.registerConnection(userId, res)))
    loop = (n) =>
      managed.runPromise(Effect.gen(function*() {
        for (let i = 0; i < n; i++) yield* sse.sendToUser(users[i % USERS]!, payload)
      }))
    stop = async () => {
      close()
      await managed.dispose()
    }
  } else if (scenario === "bus.receive") {
    const bus = lib.createMemoryBus()
    const sse = new lib.SSEKify({ ...quiet, redis: bus.adapter(), channel: "micro" })
    const close = await startConnections((userId, res) => void sse.registerConnection(userId, res))
    const raw = users.map((u) => lib.Envelope.encode(lib.Envelope.make({ type: "user", target: u, data: payload, origin: "other", at: Date.now() })))
    const publisher = bus.adapter()
    loop = (n) => {
      for (let i = 0; i < n; i++) publisher.publish("micro", raw[i % USERS]!)
    }
    stop = async () => {
      close()
      await sse.shutdown({ announce: false, graceMs: 0 })
    }
  } else {
    const sse = new lib.SSEKify(quiet)
    const close = await startConnections((userId, res) => void sse.registerConnection(userId, res))
    loop = scenario === "facade.sendToAll"
      ? (n) => {
        for (let i = 0; i < n / USERS; i++) sse.sendToAll(payload)
      }
      : (n) => {
        for (let i = 0; i < n; i++) sse.sendToUser(users[i % USERS]!, payload)
      }
    stop = async () => {
      close()
      await sse.shutdown({ announce: false, graceMs: 0 })
    }
  }
  await loop(N / 10)
  await flush()
  await new Promise((resolve) => setTimeout(resolve, 200))
  const start = process.hrtime.bigint()
  await loop(N)
  await flush()
  const ms = Number(process.hrtime.bigint() - start) / 1e6
  await stop()
  return ms
}

const median = (xs: ReadonlyArray<number>) => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 === 1 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2
}

if (args.has("worker")) {
  const ms = await worker(args.get("scenario")!, args.get("src")!)
  process.stdout.write(JSON.stringify({ ms }) + "\n")
  process.exit(0)
} else {
  const base = args.get("base")
  if (base === undefined) throw new Error("--base=<dir of the base src> is required")
  const runs = Number(args.get("runs") ?? 5)
  const only = args.get("only")?.split(",")
  const variants = { base, new: path.join(here, "..", "..", "src") }
  console.log(`N=${N}, ${USERS} connections, ${runs} runs per scenario and variant (median ms)`)
  for (const scenario of SCENARIOS.filter((s) => only === undefined || only.includes(s))) {
    const times: Record<string, Array<number>> = { base: [], new: [] }
    for (let r = 0; r < runs; r++) {
      for (const [name, src] of r % 2 === 0 ? Object.entries(variants) : Object.entries(variants).reverse()) {
        const out = spawnSync(process.execPath, ["--import", "tsx", fileURLToPath(import.meta.url), "--worker", `--scenario=${scenario}`, `--src=${src}`, `--n=${N}`], {
          encoding: "utf8",
          timeout: 300_000
        })
        if (out.status !== 0) throw new Error(`${scenario} ${name}: exit ${out.status}\n${out.stderr}`)
        times[name]!.push(JSON.parse(out.stdout.trim().split("\n").at(-1)!).ms)
      }
    }
    const b = median(times.base!)
    const n = median(times.new!)
    console.log(`${scenario.padEnd(20)} base ${b.toFixed(1).padStart(8)}  new ${n.toFixed(1).padStart(8)}  new/base ${(n / b).toFixed(3)}   (base ${times.base!.map((x) => x.toFixed(0)).join(" ")}; new ${times.new!.map((x) => x.toFixed(0)).join(" ")})`)
  }
}
