/**
 * Micro-benchmark of the cost of logs and spans (issue 14 item 4) on the hot paths: the
 * same sends against two copies of the library, this worktree's `src/` ("new") and
 * another tree's (`--base=<dir>`, e.g. the commit before the change, "base").
 *
 *   mkdir -p /tmp/obs-base && git archive <base-commit> src tsconfig.json package.json | tar -x -C /tmp/obs-base
 *   ln -s "$PWD/node_modules" /tmp/obs-base/node_modules
 *
 * (tsconfig.json matters: without it tsx compiles the base with other class-field
 * semantics, and the base's sendToAll measured 1.8x slower for that alone.)
 *   node --import tsx bench/micro/spans.ts --base=/tmp/obs-base/src [--runs=5] [--n=200000] [--only=bus.receive,...]
 *
 * Scenarios (100 connections on a real node:http server on 127.0.0.1, one per user,
 * clients in this process reading and discarding):
 * - `facade.sendToUser`: N sends, round robin over the 100 users (`SSEKify`, sync path);
 * - `facade.sendToAll`: N / 10 sends to all 100 connections (10 N frames);
 * - `bus.receive`: N messages from another instance on the in-process bus, each to one
 *   of the users (the facade on `redis: bus.adapter()`; the receive path is synchronous);
 * - `effect.sendToUser`: N sends through the Effect API (`sse.sendToUser` in one
 *   `Effect.gen` loop, Effect's default tracer: where a span is made per send).
 *
 * Each scenario runs in its own process with both variants loaded side by side (two
 * module instances), alternating round after round (`--runs`, default 5), twice: base
 * loaded first, then new loaded first (the variant loaded second can be slower even
 * against itself: checked with base against base). The time of a round is the send loop
 * plus the flush of the writes (one `setImmediate`), after a warm-up of N / 10. Prints
 * the median of the rounds per variant, and new / base as the geometric mean of the two
 * orders' ratios of medians.
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

/** One variant of a scenario, set up: its timed loop and its teardown. */
const setup = async (scenario: string, src: string): Promise<{ loop: (n: number) => void | Promise<void>; stop: () => Promise<unknown> }> => {
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
        for (let i = 0; i < n / 10; i++) sse.sendToAll(payload)
      }
      : (n) => {
        for (let i = 0; i < n; i++) sse.sendToUser(users[i % USERS]!, payload)
      }
    stop = async () => {
      close()
      await sse.shutdown({ announce: false, graceMs: 0 })
    }
  }
  return { loop, stop }
}

/**
 * Both variants in one process, alternating (base, new, new, base, ...) round after
 * round, so that what else runs on the machine weighs on both alike; the time of each
 * round is its loop plus the flush of its writes.
 */
const worker = async (scenario: string, srcs: ReadonlyArray<readonly [string, string]>, rounds: number) => {
  const variants: Array<{ readonly name: string; loop: (n: number) => void | Promise<void>; stop: () => Promise<unknown> }> = []
  for (const [name, src] of srcs) variants.push({ name, ...(await setup(scenario, src)) })
  const times: Record<string, Array<number>> = Object.fromEntries(srcs.map(([name]) => [name, []]))
  const timed = async (v: (typeof variants)[number]) => {
    const start = process.hrtime.bigint()
    await v.loop(N)
    await flush()
    return Number(process.hrtime.bigint() - start) / 1e6
  }
  for (const v of variants) {
    await v.loop(N / 10)
    await flush()
  }
  for (let r = 0; r < rounds; r++) {
    for (const v of r % 2 === 0 ? variants : [...variants].reverse()) {
      await new Promise((resolve) => setTimeout(resolve, 50))
      times[v.name]!.push(await timed(v))
    }
  }
  for (const v of variants) await v.stop()
  return times
}

const median = (xs: ReadonlyArray<number>) => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 === 1 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2
}

if (args.has("worker")) {
  const named = { base: args.get("base")!, new: args.get("new")! }
  const order = args.get("order") === "new-first" ? (["new", "base"] as const) : (["base", "new"] as const)
  const times = await worker(args.get("scenario")!, order.map((name) => [name, named[name]] as const), Number(args.get("rounds")))
  process.stdout.write(JSON.stringify(times) + "\n")
  process.exit(0)
} else {
  const base = args.get("base")
  if (base === undefined) throw new Error("--base=<dir of the base src> is required")
  const runs = Number(args.get("runs") ?? 5)
  const only = args.get("only")?.split(",")
  const mine = path.join(here, "..", "..", "src")
  console.log(`N=${N}, ${USERS} connections per variant; per scenario two processes (base loaded first, new loaded first), ${runs} alternating rounds each`)
  for (const scenario of SCENARIOS.filter((s) => only === undefined || only.includes(s))) {
    const ratios: Array<number> = []
    const all: Record<"base" | "new", Array<number>> = { base: [], new: [] }
    for (const order of ["base-first", "new-first"]) {
      const out = spawnSync(process.execPath, ["--import", "tsx", fileURLToPath(import.meta.url), "--worker", `--scenario=${scenario}`, `--base=${base}`, `--new=${mine}`, `--n=${N}`, `--rounds=${runs}`, `--order=${order}`], {
        encoding: "utf8",
        timeout: 600_000
      })
      if (out.status !== 0) throw new Error(`${scenario}: exit ${out.status}\n${out.stderr}`)
      const times = JSON.parse(out.stdout.trim().split("\n").at(-1)!) as Record<"base" | "new", Array<number>>
      ratios.push(median(times.new) / median(times.base))
      all.base.push(...times.base)
      all.new.push(...times.new)
    }
    // the order of loading weighs on a variant (the second is slower in some scenarios even
    // against itself): the geometric mean of the two orders' ratios cancels it
    const ratio = Math.sqrt(ratios[0]! * ratios[1]!)
    console.log(`${scenario.padEnd(20)} median ms base ${median(all.base).toFixed(1).padStart(8)}  new ${median(all.new).toFixed(1).padStart(8)}  new/base ${ratio.toFixed(3)} (base first ${ratios[0]!.toFixed(3)}, new first ${ratios[1]!.toFixed(3)})`)
  }
}
