/**
 * Micro-benchmark (issue 16's CPU target): the receiving instance's CPU per delivered
 * message in routed mode (`routing: "user"`), against the local `unsafeSendToUser` path at
 * the same rate and pattern.
 *
 *   node --import tsx bench/micro/routed-receive.ts [--users=250] [--rate=2000] [--batch=10]
 *       [--messages=10000] [--runs=5] [--modes=local,routed] [--cpu-prof=<dir>]
 *
 * Processes (each its own CPU): a private `redis-server` on a free port; the **receiver**
 * (`SseKify.layer` + `RedisTransport.layer({ url, routing: "user" })`, or
 * `Transport.layerNone` for local, behind a `node:http` server, one connection per user
 * `u<i>` registered with `unsafeRegisterConnection`); the **clients** (`http.get` per user,
 * counting frames); in routed mode the **publisher** (the same layer, `publish(data,
 * u<n % (users * spread)>)`: with `--spread=4` the receiver holds a quarter of the users
 * the publisher sends to, as one instance of scenario H's fleet of 4). Every `1000 * batch / rate` ms a batch of `batch` messages is sent, to
 * users n, n+1, … (round robin), by the publisher (routed) or by the receiver itself
 * (local: `unsafeSendToUser`, the facade's path). Per run: a warm-up of `messages / 5`,
 * then `messages` measured: the receiver's `process.cpuUsage()` from the first send to the
 * moment the clients parsed the last frame, ÷ frames. Runs alternate local and routed on
 * fresh processes; the medians and routed ÷ local are printed.
 *
 * Per run the receiver's user and system CPU, read / write syscalls and bytes read per
 * delivery (`/proc/self/io`) and CPU per thread (`/proc/self/task`: the main thread and
 * V8's GC helpers) go to stderr.
 *
 * Fleet share: `--spread=4` makes the publisher send to 4 × `users` users (as one of
 * scenario H's 4 instances, this receiver gets a quarter of each burst); add
 * `--local-batch=50 --local-rate=1000` to give local the same burst size per wakeup.
 *
 * Measured 2026-12-05 (2 shared cores, load 4–10; `--messages=10000 --batch=200
 * --rate=4000 --runs=5`), median µs of receiver CPU per delivery:
 * - equal bursts (200 per wakeup): local 21.2, routed 30.1, ×1.39 (per run 1.26–1.64);
 * - `--spread=4` (scenario H's share: 50 of each 200 for this instance, local keeps 200):
 *   local 21.3, routed 60.9, ×3.05 (2.86–5.41): H's ×2.97;
 * - `--spread=4 --local-batch=50 --local-rate=1000` (both 50 per wakeup): local 66.1,
 *   routed 93.6, ×1.55 (1.08–1.83).
 * So most of H's ratio is the burst size: local itself costs ×3.1 per delivery at 50
 * per wakeup instead of 200. Read syscalls are 0.01–0.05 per message (Redis batches a
 * burst into a few reads), write syscalls 1.0–1.1 (one `writev` per delivery in both
 * modes, the largest self-time frame in both profiles); the routed receiver's V8 helper
 * threads (GC) use ~1.5–2× local's.
 *
 * `--cpu-prof=<dir>`: the receiver profiles its measured window (`node:inspector`, 100 µs
 * sampling) into `<dir>/<mode>-<pid>.cpuprofile` (summarise with
 * `node --import tsx bench/profile.ts <file>`; the profiler's own cost inflates the figures).
 */
import { type ChildProcess, fork, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as http from "node:http"
import * as inspector from "node:inspector"
import type { AddressInfo } from "node:net"
import { fileURLToPath } from "node:url"
import { freePort, redisCommand } from "../lib/redis.js"

const self = fileURLToPath(import.meta.url)
const args = new Map(process.argv.slice(2).filter((a) => a.startsWith("--")).map((a) => {
  const [k, v] = a.replace(/^--/, "").split("=")
  return [k!, v ?? "true"] as const
}))
const num = (k: string, d: number) => Number(args.get(k) ?? d)
const USERS = num("users", 250)
const RATE = num("rate", 2000)
const BATCH = num("batch", 10)
const MESSAGES = num("messages", 10_000)
const RUNS = num("runs", 5)
/** Routed mode: messages go to `users * spread` users, of which this receiver holds `users` (the fleet's other instances' users are not subscribed anywhere). */
const SPREAD = num("spread", 1)
/** Local mode's own pattern (default: the same as routed); `--spread=4 --local-batch=50 --local-rate=1000` gives local the routed receiver's burst size. */
const LOCAL_BATCH = num("local-batch", BATCH)
const LOCAL_RATE = num("local-rate", RATE)
const CHANNEL = "bench:routed"
const payload = (n: number) => ({ t: Date.now(), n, p: "x".repeat(60) })

type Msg = { readonly [k: string]: unknown; readonly type: string }
const send = (m: Msg) => process.send!(m)
const onMsg = (f: (m: Msg) => void) => process.on("message", (m) => f(m as Msg))
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** Sends `count` messages from `from` in batches at the rate; resolves after the last batch. */
const pace = (from: number, count: number, one: (n: number) => void, batch = BATCH, rate = RATE): Promise<void> =>
  new Promise((resolve) => {
    const period = (1000 * batch) / rate
    const start = performance.now()
    let sent = 0
    let k = 0
    const tick = () => {
      for (let i = 0; i < batch && sent < count; i++, sent++) one(from + sent)
      if (sent >= count) return resolve()
      k++
      setTimeout(tick, Math.max(0, start + k * period - performance.now()))
    }
    tick()
  })

const makeLayer = async (redisUrl: string | undefined) => {
  const { SseKify, Transport } = await import("../../src/index.js")
  const { RedisTransport } = await import("../../src/redis.js")
  const { Layer, ManagedRuntime } = await import("effect")
  const transport = redisUrl === undefined ? Transport.layerNone : RedisTransport.layer({ url: redisUrl, routing: "user" })
  const runtime = ManagedRuntime.make(
    SseKify.layer({ channel: CHANNEL, keepAliveMs: 15_000, retryMs: 2000, shutdown: { announce: false, graceMs: 0 } }).pipe(
      Layer.provide(transport)
    )
  )
  const sse = await runtime.runPromise(SseKify.SseKify)
  await runtime.runPromise(sse.ready)
  return { runtime, sse }
}

/** `/proc/self/io` (read and write syscalls of the process). */
const procIo = (): Record<string, number> =>
  Object.fromEntries(fs.readFileSync("/proc/self/io", "utf8").trim().split("\n").map((l) => {
    const [k, v] = l.split(": ")
    return [k!, Number(v)]
  }))

/** CPU ticks (user + system, 1/100 s) per thread of this process, by thread name. */
const threadTicks = (): Map<string, number> => {
  const out = new Map<string, number>()
  for (const tid of fs.readdirSync("/proc/self/task")) {
    try {
      const stat = fs.readFileSync(`/proc/self/task/${tid}/stat`, "utf8")
      const name = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"))
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
      const key = `${name}#${tid}`
      out.set(key, Number(f[11]) + Number(f[12]))
    } catch {
      // the thread ended
    }
  }
  return out
}

async function receiver(redisUrl: string | undefined) {
  const { runtime, sse } = await makeLayer(redisUrl)
  const server = http.createServer((req, res) => {
    const u = new URL(req.url!, "http://x").searchParams.get("u")!
    sse.unsafeRegisterConnection(u, res)
  })
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r))
  let cpu0: NodeJS.CpuUsage | undefined
  let io0: Record<string, number> = {}
  let threads0 = new Map<string, number>()
  const profDir = args.get("cpu-prof")
  const session = profDir === undefined ? undefined : new inspector.Session()
  const post = (method: string, params?: object) =>
    new Promise<unknown>((resolve, reject) => session!.post(method, params, (err, res) => (err ? reject(err) : resolve(res))))
  if (session !== undefined) {
    session.connect()
    await post("Profiler.enable")
    await post("Profiler.setSamplingInterval", { interval: 100 })
  }
  onMsg(async (m) => {
    if (m.type === "cpu0") {
      if (session !== undefined) await post("Profiler.start")
      io0 = procIo()
      threads0 = threadTicks()
      cpu0 = process.cpuUsage()
      send({ type: "ok" })
    } else if (m.type === "cpu1") {
      const d = process.cpuUsage(cpu0)
      const io1 = procIo()
      const threads: Record<string, number> = {}
      for (const [k, v] of threadTicks()) {
        const d = v - (threads0.get(k) ?? 0)
        if (d > 0) threads[k] = d * 10
      }
      if (session !== undefined) {
        const { profile } = (await post("Profiler.stop")) as { profile: unknown }
        fs.mkdirSync(profDir!, { recursive: true })
        fs.writeFileSync(`${profDir}/${redisUrl === undefined ? "local" : "routed"}-${process.pid}.cpuprofile`, JSON.stringify(profile))
      }
      send({ type: "cpu", us: d.user + d.system, user: d.user, system: d.system, syscr: io1.syscr! - io0.syscr!, syscw: io1.syscw! - io0.syscw!, rchar: io1.rchar! - io0.rchar!, threads })
    } else if (m.type === "local") {
      await pace(m.from as number, m.count as number, (n) => sse.unsafeSendToUser(`u${n % USERS}`, payload(n)), LOCAL_BATCH, LOCAL_RATE)
      send({ type: "ok" })
    } else if (m.type === "stats") {
      send({ type: "stats", stats: JSON.parse(JSON.stringify(await runtime.runPromise(sse.stats))) })
    } else if (m.type === "exit") {
      server.closeAllConnections()
      server.close()
      await runtime.dispose()
      process.exit(0)
    }
  })
  send({ type: "ready", port: (server.address() as AddressInfo).port })
}

async function publisher(redisUrl: string) {
  const { runtime, sse } = await makeLayer(redisUrl)
  onMsg(async (m) => {
    if (m.type === "publish") {
      const pending: Array<Promise<unknown>> = []
      await pace(m.from as number, m.count as number, (n) => pending.push(runtime.runPromise(sse.publish(payload(n), `u${n % (USERS * SPREAD)}`))))
      await Promise.all(pending)
      send({ type: "ok" })
    } else if (m.type === "exit") {
      await runtime.dispose()
      process.exit(0)
    }
  })
  send({ type: "ready" })
}

async function clients(port: number) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: USERS })
  let frames = 0
  let target = Infinity
  const check = () => {
    if (frames >= target) {
      target = Infinity
      send({ type: "reached", frames })
    }
  }
  await Promise.all(Array.from({ length: USERS }, (_, i) =>
    new Promise<void>((resolve) => {
      http.get({ host: "127.0.0.1", port, path: `/?u=u${i}`, agent }, (res) => {
        res.setEncoding("utf8")
        // every message frame has one "data: " line (payloads are one-line JSON); the last
        // 6 characters of a chunk carry over (a line split across chunks; too short to hold
        // a whole match, so none is counted twice)
        let carry = "\n"
        res.on("data", (s: string) => {
          const text = carry + s
          for (let at = text.indexOf("\ndata: "); at >= 0; at = text.indexOf("\ndata: ", at + 7)) frames++
          carry = text.slice(-6)
          check()
        })
        resolve()
      })
    })))
  onMsg((m) => {
    if (m.type === "arm") {
      target = m.total as number
      check()
    } else if (m.type === "count") send({ type: "count", frames })
    else if (m.type === "exit") process.exit(0)
  })
  send({ type: "ready" })
}

// --- driver ---------------------------------------------------------------------------

interface Child {
  readonly proc: ChildProcess
  next(type: string, timeoutMs?: number): Promise<Msg>
}

const child = (role: string, extra: ReadonlyArray<string>, execArgv: ReadonlyArray<string> = []): Child => {
  const proc = fork(self, [role, ...extra, ...process.argv.slice(2)], {
    execArgv: ["--import", "tsx", ...execArgv],
    stdio: ["ignore", "inherit", "inherit", "ipc"]
  })
  const inbox: Array<Msg> = []
  const waiting: Array<(m: Msg) => void> = []
  proc.on("message", (m) => {
    const w = waiting.shift()
    if (w !== undefined) w(m as Msg)
    else inbox.push(m as Msg)
  })
  return {
    proc,
    next: (type, timeoutMs = 60_000) =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`${role}: no '${type}' within ${timeoutMs} ms`)), timeoutMs)
        const take = (m: Msg) => {
          clearTimeout(timer)
          if (m.type !== type) reject(new Error(`${role}: '${m.type}' instead of '${type}'`))
          else resolve(m)
        }
        const m = inbox.shift()
        if (m !== undefined) take(m)
        else waiting.push(take)
      })
  }
}

const median = (xs: ReadonlyArray<number>) => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2
}

async function oneRun(mode: "local" | "routed", redisUrl: string): Promise<number> {
  const rec = child("receiver", [mode === "routed" ? redisUrl : "-"])
  const all: Array<Child> = [rec]
  try {
    const { port } = await rec.next("ready")
    const cl = child("clients", [String(port)])
    all.push(cl)
    await cl.next("ready")
    let pub: Child | undefined
    if (mode === "routed") {
      pub = child("publisher", [redisUrl])
      all.push(pub)
      await pub.next("ready")
      // every user's channel subscribed
      for (let i = 0; i < 100; i++) {
        const r = await redisCommand(Number(new URL(redisUrl).port), ["PUBSUB", "NUMSUB", ...Array.from({ length: USERS }, (_, k) => `${CHANNEL}:u:{u${k}}`)])
        const subs = r.split("\r\n").filter((_, k) => k > 0 && k % 4 === 0).map(Number)
        if (subs.length === USERS && subs.every((s) => s === 1)) break
        await sleep(100)
      }
    }
    const round = async (from: number, count: number, measure: boolean) => {
      cl.proc.send({ type: "count" })
      const before = (await cl.next("count")).frames as number
      if (measure) {
        rec.proc.send({ type: "cpu0" })
        await rec.next("ok")
      }
      // routed with --spread: only the messages to the receiver's own users are delivered
      let frames = count
      if (pub !== undefined && SPREAD > 1) {
        frames = 0
        for (let n = from; n < from + count; n++) if (n % (USERS * SPREAD) < USERS) frames++
      }
      cl.proc.send({ type: "arm", total: before + frames })
      if (pub !== undefined) pub.proc.send({ type: "publish", from, count })
      else rec.proc.send({ type: "local", from, count })
      await (pub ?? rec).next("ok")
      await cl.next("reached")
      if (!measure) return 0
      rec.proc.send({ type: "cpu1" })
      const c = await rec.next("cpu")
      const per = (k: string) => ((c[k] as number) / frames).toFixed(k.startsWith("sys") && !k.startsWith("system") ? 2 : 1)
      process.stderr.write(`  ${mode}: user ${per("user")} + system ${per("system")} µs/msg, read syscalls ${per("syscr")}/msg, write syscalls ${per("syscw")}/msg, read ${per("rchar")} B/msg; ms per thread ${JSON.stringify(c.threads)}\n`)
      return (c.us as number) / frames
    }
    // local with its own rate sends proportionally fewer messages (the same duration)
    const scale = pub === undefined ? LOCAL_RATE / RATE : 1
    await round(0, Math.round((MESSAGES / 5) * scale), false)
    return await round(Math.round((MESSAGES / 5) * scale), Math.round(MESSAGES * scale), true)
  } finally {
    for (const c of all) if (c.proc.connected) c.proc.send({ type: "exit" })
    await Promise.all(all.map((c) => new Promise((r) => (c.proc.exitCode !== null ? r(0) : c.proc.once("exit", r)))))
  }
}

async function driver() {
  const port = await freePort()
  const redis = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], { stdio: "ignore" })
  const redisUrl = `redis://127.0.0.1:${port}`
  process.on("exit", () => redis.kill("SIGKILL"))
  try {
    for (let i = 0; i < 50; i++) {
      try {
        await redisCommand(port, ["PING"])
        break
      } catch {
        await sleep(100)
      }
    }
    const modes = (args.get("modes") ?? "local,routed").split(",") as Array<"local" | "routed">
    const results = new Map<string, Array<number>>(modes.map((m) => [m, []]))
    const ratios: Array<number> = []
    process.stderr.write(`users ${USERS} (routed: of ${USERS * SPREAD}), ${MESSAGES} messages at ${RATE}/s in batches of ${BATCH}, ${RUNS} runs\n`)
    for (let r = 0; r < RUNS; r++) {
      const row: Record<string, number> = {}
      for (const mode of r % 2 === 0 ? modes : [...modes].reverse()) {
        row[mode] = await oneRun(mode, redisUrl)
        results.get(mode)!.push(row[mode]!)
      }
      if (row.local !== undefined && row.routed !== undefined) ratios.push(row.routed / row.local)
      process.stderr.write(`run ${r + 1}: ${Object.entries(row).map(([k, v]) => `${k} ${v.toFixed(1)} µs/msg`).join(", ")}${row.local && row.routed ? `, ×${(row.routed / row.local).toFixed(2)}` : ""}\n`)
    }
    for (const [mode, xs] of results) process.stdout.write(`${mode}: median ${median(xs).toFixed(1)} µs/delivery (${xs.map((x) => x.toFixed(1)).join(" ")})\n`)
    if (ratios.length > 0) process.stdout.write(`routed / local: median ×${median(ratios).toFixed(2)} (per run: ${ratios.map((x) => x.toFixed(2)).join(" ")})\n`)
  } finally {
    redis.kill("SIGKILL")
  }
}

const role = process.argv[2]
if (role === "receiver") void receiver(process.argv[3] === "-" ? undefined : process.argv[3])
else if (role === "publisher") void publisher(process.argv[3]!)
else if (role === "clients") void clients(Number(process.argv[3]))
else {
  driver().then(
    () => process.exit(0),
    (e: unknown) => {
      process.stderr.write(`${String(e)}\n`)
      process.exit(1)
    }
  )
}
