/**
 * Driver-side building blocks: the pool of client processes, a session (one
 * server process + connections), and the measurements every scenario uses.
 */
import type { ChildProcess } from "node:child_process"
import * as path from "node:path"
import type { ClientApi, ConnSummary, CpuUsage, SendMode, SendResult, ServerApi } from "./protocol.js"
import { foreign, snapshot, type ForeignReport } from "./lib/cpuwatch.js"
import { BENCH_DIR, pinPid, spawnNode, stop } from "./lib/procs.js"
import { Rpc } from "./lib/rpc.js"
import { Histogram, hrMs, sleep } from "./lib/stats.js"
import type { SystemConfig } from "./systems/types.js"

export const SERVER_CORE = 0
export const CLIENT_CORE = 1
export const CONNS_PER_CLIENT = 2500

/** How child processes are started: the TypeScript sources through tsx, or a prebuilt bundle. */
export interface ChildEntry {
  readonly server: string
  readonly client: string
  /** systems every server preloads (all systems of the run) */
  readonly preload: ReadonlyArray<string>
  /** extra node options for servers (e.g. --cpu-prof) */
  readonly serverArgs: ReadonlyArray<string>
  nodeArgs(extra: ReadonlyArray<string>): string[]
}

export const TSX_ENTRY: ChildEntry = {
  server: path.join(BENCH_DIR, "server.ts"),
  client: path.join(BENCH_DIR, "client.ts"),
  preload: [],
  serverArgs: [],
  nodeArgs: (extra) => [...extra, "--import", "tsx"]
}

export type Metrics = Record<string, number>

export const cpuMs = (c: CpuUsage): number => (c.user + c.system) / 1000

export function sumCpu(cs: ReadonlyArray<CpuUsage>): number {
  return cs.reduce((s, c) => s + cpuMs(c), 0)
}

// ---------------------------------------------------------------- clients

export class ClientPool {
  /** client processes holding connections since the last closeAll */
  private used = new Set<number>()

  private constructor(private readonly procs: Array<{ rpc: Rpc<ClientApi>; child: ChildProcess }>) {}

  static async start(n: number, pin: boolean, entry: ChildEntry): Promise<ClientPool> {
    const procs = Array.from({ length: n }, (_, i) => {
      const child = spawnNode(entry.client, entry.nodeArgs(["--max-old-space-size=2048"]), {
        core: pin ? CLIENT_CORE : undefined,
        name: `client${i}`
      })
      return { rpc: new Rpc<ClientApi>(`client${i}`, child), child }
    })
    const pool = new ClientPool(procs)
    await Promise.all(procs.map((p) => p.rpc.call("cpu", null, 30_000)))
    return pool
  }

  get size(): number {
    return this.procs.length
  }

  private get active(): Array<Rpc<ClientApi>> {
    return [...this.used].sort((a, b) => a - b).map((j) => (this.procs[j] as { rpc: Rpc<ClientApi> }).rpc)
  }

  /**
   * Open connections with indexes from .. from+count-1; connection i lives in client
   * process floor(i / CONNS_PER_CLIENT), so no process holds more than that.
   */
  async open(port: number, from: number, count: number, timeoutMs: number): Promise<{ ms: number }> {
    const parts: Array<{ j: number; from: number; count: number }> = []
    for (let i = from; i < from + count; ) {
      const j = Math.floor(i / CONNS_PER_CLIENT)
      if (j >= this.procs.length) throw new Error(`${from + count} connections need ${j + 1} client processes`)
      const end = Math.min(from + count, (j + 1) * CONNS_PER_CLIENT)
      parts.push({ j, from: i, count: end - i })
      i = end
    }
    const t0 = hrMs()
    const res = await Promise.all(
      parts.map((p) => {
        this.used.add(p.j)
        const rpc = (this.procs[p.j] as { rpc: Rpc<ClientApi> }).rpc
        return rpc.call("open", { port, from: p.from, count: p.count, concurrency: 200, timeoutMs }, timeoutMs + 5000)
      })
    )
    const opened = res.reduce((s, r) => s + r.opened, 0)
    if (opened < count) {
      const err = res.find((r) => r.firstError !== "")?.firstError ?? "?"
      throw new Error(`opened ${opened} of ${count} connections (${err})`)
    }
    return { ms: hrMs() - t0 }
  }

  async all<K extends keyof ClientApi & string>(
    cmd: K,
    args: Parameters<ClientApi[K]>[0],
    timeoutMs = 60_000
  ): Promise<Array<Awaited<ReturnType<ClientApi[K]>>>> {
    return Promise.all(this.active.map((c) => c.call(cmd, args, timeoutMs)))
  }

  /** `cmd` to each client process holding connections, with its own arguments (`argsOf(process index)`). */
  async each<K extends keyof ClientApi & string>(
    cmd: K,
    argsOf: (proc: number) => Parameters<ClientApi[K]>[0],
    timeoutMs = 60_000
  ): Promise<Array<Awaited<ReturnType<ClientApi[K]>>>> {
    const js = [...this.used].sort((a, b) => a - b)
    return Promise.all(js.map((j) => (this.procs[j] as { rpc: Rpc<ClientApi> }).rpc.call(cmd, argsOf(j), timeoutMs)))
  }

  async closeAll(): Promise<void> {
    if (this.used.size === 0) return
    await this.all("closeAll", null, 20_000)
    this.used.clear()
  }

  async stop(): Promise<void> {
    await Promise.all(this.procs.map((p) => stop(p.child)))
  }
}

export function mergeSummaries(sums: ReadonlyArray<ConnSummary>): ConnSummary & { hist: Histogram } {
  const hist = new Histogram()
  for (const s of sums) hist.merge(s.latency)
  const add = (k: keyof ConnSummary): number => sums.reduce((a, s) => a + (s[k] as number), 0)
  return {
    open: add("open"),
    closed: add("closed"),
    stalled: add("stalled"),
    frames: add("frames"),
    bytes: add("bytes"),
    minHealthy: Math.min(...sums.map((s) => s.minHealthy)),
    // median of medians: exact with one client process, close enough with several
    medHealthy: [...sums.map((s) => s.medHealthy)].sort((a, b) => a - b)[sums.length >> 1] ?? 0,
    maxHealthy: Math.max(...sums.map((s) => s.maxHealthy)),
    framesOfClosed: add("framesOfClosed"),
    latency: hist.toJSON(),
    cpu: { user: sums.reduce((a, s) => a + s.cpu.user, 0), system: sums.reduce((a, s) => a + s.cpu.system, 0) },
    badHeads: add("badHeads"),
    hist
  }
}

// ---------------------------------------------------------------- servers

export interface ServerHandle {
  readonly rpc: Rpc<ServerApi>
  readonly child: ChildProcess
  readonly port: number
  /** the system's bus routes per user (`SystemInstance.routed`) */
  readonly routed: boolean
  /** the server's process id */
  readonly pid: number
  close(): Promise<void>
}

/**
 * A server process running `system`, pinned to `core`. With `pinAfterInit`, it loads
 * on any core and is pinned once initialised: several servers that start together on
 * one core would otherwise load their modules one after the other.
 */
export async function startServer(
  entry: ChildEntry,
  system: string,
  cfg: SystemConfig,
  core: number | undefined,
  pinAfterInit = false
): Promise<ServerHandle> {
  const child = spawnNode(entry.server, entry.nodeArgs(["--expose-gc", "--max-old-space-size=4096", ...entry.serverArgs]), {
    core: pinAfterInit ? undefined : core,
    name: `server:${system}`
  })
  const rpc = new Rpc<ServerApi>(`server:${system}`, child)
  try {
    const { port, pid, routed } = await rpc.call("init", { system, cfg, backlog: 4096, preload: entry.preload }, 60_000)
    if (pinAfterInit && core !== undefined && !pinPid(pid, core)) throw new Error(`could not pin server ${pid} to core ${core}`)
    if (entry.serverArgs.length > 0) process.stderr.write(`    server ${system} pid ${pid}\n`)
    return {
      rpc,
      child,
      port,
      routed,
      pid,
      close: async () => {
        if (rpc.alive) await rpc.call("shutdown", null, 8000).catch(() => undefined)
        await stop(child)
      }
    }
  } catch (e) {
    await stop(child)
    throw e
  }
}

export class Session {
  private constructor(
    readonly server: ServerHandle,
    readonly clients: ClientPool
  ) {}

  static async start(entry: ChildEntry, system: string, cfg: SystemConfig, clients: ClientPool, pin: boolean): Promise<Session> {
    return new Session(await startServer(entry, system, cfg, pin ? SERVER_CORE : undefined), clients)
  }

  get rpc(): Rpc<ServerApi> {
    return this.server.rpc
  }

  private opened = 0

  /** Open `n` more connections; resolves when the clients have every response head and the server counts them all. */
  async open(n: number): Promise<{ ms: number }> {
    const timeoutMs = 30_000 + n * 5
    const r = await this.clients.open(this.server.port, this.opened, n, timeoutMs)
    this.opened += n
    const deadline = hrMs() + 10_000
    for (;;) {
      const { live } = await this.rpc.call("live", null)
      if (live >= this.opened) break
      if (hrMs() > deadline) throw new Error(`server sees ${live} of ${this.opened} connections`)
      await sleep(20)
    }
    return r
  }

  async close(): Promise<void> {
    await this.clients.closeAll().catch(() => undefined)
    await this.server.close()
  }
}

// ---------------------------------------------------------------- measurements

export interface Measured {
  readonly metrics: Metrics
  readonly foreign: ForeignReport
  readonly notes: string[]
}

export function utilPct(ms: number, wallMs: number): number {
  return wallMs > 0 ? Math.round((ms / wallMs) * 1000) / 10 : 0
}

function deliveryTimeout(deliveries: number): number {
  // generous: 30 s plus 20 µs per delivery (50k deliveries/s)
  return 30_000 + deliveries * 0.02
}

/**
 * Paced throughput (B, D, F): `messages` sends in batches, drain-waited on the
 * server; the rate is deliveries to the healthy connections divided by the time
 * from the first send to the moment the last healthy connection has them all.
 */
export async function pacedThroughput(
  s: Session,
  opts: { mode: SendMode; messages: number; batch: number; payloadBytes: number; users: number; connections: number }
): Promise<Measured> {
  const { clients, rpc } = s
  await clients.all("reset", { latency: false })
  const armed = await clients.all("arm", { target: opts.messages })
  const healthy = armed.reduce((a, r) => a + r.below, 0)
  const timeoutMs = deliveryTimeout(opts.messages * opts.connections)
  const c0 = await clients.all("cpu", null)
  const snap0 = snapshot()
  const sendP = rpc.call("sendPaced", { ...opts, timeoutMs }, timeoutMs + 5000)
  const waitP = clients.all("wait", { timeoutMs }, timeoutMs + 5000)
  const [send, waits] = await Promise.all([sendP, waitP])
  const serverCpu = await rpc.call("cpu", null)
  const snap1 = snapshot()
  const c1 = await clients.all("cpu", null)
  const left = waits.reduce((a, w) => a + w.below, 0)
  if (left > 0) throw new Error(`${left} connections did not receive all ${opts.messages} messages in ${timeoutMs} ms`)
  const bytes = (await clients.all("summary", null)).reduce((a, x) => a + x.bytes, 0)
  const end = Math.max(...waits.map((w) => w.reachedAt))
  const wall = end - send.startAt
  const serverMs = cpuMs(serverCpu) - cpuMs(send.cpuStart)
  const clientMs = sumCpu(c1) - sumCpu(c0)
  const deliveries = opts.messages * healthy
  const notes: string[] = []
  const clientPct = utilPct(clientMs, wall)
  if (clientPct > 90) notes.push(`client core ${clientPct}% busy: the rate may be client-bound`)
  return {
    metrics: {
      deliveriesPerSec: deliveries / (wall / 1000),
      cpuUsPerDelivery: (serverMs * 1000) / Math.max(1, send.delivered),
      serverCpuPct: utilPct(serverMs, wall),
      clientCpuPct: clientPct,
      ms: wall,
      drainWaits: send.drainWaits,
      bytesPerDelivery: bytes / Math.max(1, send.delivered)
    },
    foreign: foreign(snap0, snap1),
    notes
  }
}

/** Broadcasts on a schedule (C): latency percentiles over every frame at every connection. */
export async function rateLatency(
  s: Session,
  opts: { rate: number; messages: number; payloadBytes: number; connections: number }
): Promise<Measured> {
  const { clients, rpc } = s
  await clients.all("reset", { latency: true })
  await clients.all("arm", { target: opts.messages })
  const timeoutMs = (opts.messages / opts.rate) * 1000 + 30_000
  const c0 = await clients.all("cpu", null)
  const snap0 = snapshot()
  const sendP = rpc.call("sendRate", opts, timeoutMs)
  const waitP = clients.all("wait", { timeoutMs }, timeoutMs + 5000)
  const [send, waits] = await Promise.all([sendP, waitP])
  const serverCpu = await rpc.call("cpu", null)
  const snap1 = snapshot()
  const c1 = await clients.all("cpu", null)
  const sum = mergeSummaries(await clients.all("summary", null))
  const left = waits.reduce((a, w) => a + w.below, 0)
  const notes: string[] = []
  if (left > 0) notes.push(`${left} connections missed messages`)
  if (send.lateMaxMs > 5) notes.push(`sender ran up to ${send.lateMaxMs.toFixed(1)} ms behind schedule`)
  const wall = send.endAt - send.startAt
  const serverMs = cpuMs(serverCpu) - cpuMs(send.cpuStart)
  return {
    metrics: {
      p50Ms: sum.hist.quantile(0.5),
      p99Ms: sum.hist.quantile(0.99),
      maxMs: sum.hist.max,
      receivedPct: (sum.frames / (opts.messages * opts.connections)) * 100,
      serverCpuPct: utilPct(serverMs, wall),
      clientCpuPct: utilPct(sumCpu(c1) - sumCpu(c0), wall),
      lateMaxMs: send.lateMaxMs
    },
    foreign: foreign(snap0, snap1),
    notes
  }
}

/**
 * Windowed sends (E): `window` messages, then wait until every connection has
 * them, repeat. `sender` is the main instance (local) or the publisher (Redis).
 */
export async function windowed(
  s: Session,
  sender: Rpc<ServerApi>,
  cmd: "sendWindow" | "publishWindow",
  opts: { messages: number; window: number; payloadBytes: number; connections: number }
): Promise<Measured> {
  const { clients, rpc } = s
  await clients.all("reset", { latency: true })
  const c0 = await clients.all("cpu", null)
  const s0 = await rpc.call("cpu", null)
  const snap0 = snapshot()
  let first = Number.NaN
  let last = Number.NaN
  for (let from = 0; from < opts.messages; from += opts.window) {
    const count = Math.min(opts.window, opts.messages - from)
    await clients.all("arm", { target: from + count })
    const r: SendResult = await sender.call(cmd, { from, count, payloadBytes: opts.payloadBytes }, 30_000)
    if (Number.isNaN(first)) first = r.startAt
    const waits = await clients.all("wait", { timeoutMs: 20_000 }, 25_000)
    const left = waits.reduce((a, w) => a + w.below, 0)
    if (left > 0) throw new Error(`window at ${from}: ${left} connections did not get it within 20 s`)
    last = Math.max(...waits.map((w) => w.reachedAt))
  }
  const s1 = await rpc.call("cpu", null)
  const snap1 = snapshot()
  const c1 = await clients.all("cpu", null)
  const sum = mergeSummaries(await clients.all("summary", null))
  const wall = last - first
  const deliveries = opts.messages * opts.connections
  return {
    metrics: {
      deliveriesPerSec: deliveries / (wall / 1000),
      p50Ms: sum.hist.quantile(0.5),
      p99Ms: sum.hist.quantile(0.99),
      maxMs: sum.hist.max,
      cpuUsPerDelivery: ((cpuMs(s1) - cpuMs(s0)) * 1000) / deliveries,
      clientCpuPct: utilPct(sumCpu(c1) - sumCpu(c0), wall),
      ms: wall
    },
    foreign: foreign(snap0, snap1),
    notes: []
  }
}

/** Poll the clients until their frame count stops moving (G); bounded. */
export async function settleFrames(clients: ClientPool, quietMs: number, maxMs: number): Promise<ConnSummary & { hist: Histogram }> {
  const deadline = hrMs() + maxMs
  let prev = -1
  let stableSince = hrMs()
  for (;;) {
    const sum = mergeSummaries(await clients.all("summary", null))
    if (sum.frames !== prev) {
      prev = sum.frames
      stableSince = hrMs()
    } else if (hrMs() - stableSince >= quietMs) return sum
    if (hrMs() > deadline) return sum
    await sleep(50)
  }
}
