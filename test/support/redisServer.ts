/**
 * Real Redis for the tests: starts its own `redis-server` processes on free loopback
 * ports (never 6379, never anything but 127.0.0.1), each with its own temp dir and no
 * persistence, and kills them to test faults.
 *
 * - {@link startRedis}: a single node.
 * - {@link startCluster}: 3 masters, `redis-cli --cluster create`, waits for `cluster_state:ok`.
 * - {@link startSentinel}: a master, a replica and 3 sentinels.
 *
 * Every process started is tracked: {@link stopAll} (call it in `afterAll`) stops what
 * is left, and a process `exit` hook SIGKILLs anything still running. Every wait is
 * bounded in time.
 *
 * {@link redisAvailable}: without `redis-server` on the PATH the suites skip with one
 * loud line (`describe.skipIf(!redisAvailable())`), except under `CI=true`, where it
 * throws so they fail. (No vitest import here: the harness also serves scripts.)
 */
import { type ChildProcess, execFile, spawn, spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"

export const HOST = "127.0.0.1"

// ---------------------------------------------------------------------------
// availability
// ---------------------------------------------------------------------------

const onPath = (command: string): boolean => {
  const result = spawnSync(command, ["--version"], { timeout: 5_000, stdio: "ignore" })
  return result.error === undefined && result.status === 0
}

let availability: boolean | undefined

/**
 * `true` in the first test worker of a vitest run to ask (the workers share their
 * parent process): so the skip warning is printed once per run, not once per file.
 */
const firstInRun = (): boolean => {
  try {
    fs.closeSync(fs.openSync(path.join(os.tmpdir(), `ssekify-redis-skip-notice-${process.ppid}`), "wx"))
    return true
  } catch {
    return false
  }
}

/**
 * `true` when `redis-server` and `redis-cli` are on the PATH. When they are not, prints
 * one loud line (once per process) and returns `false`; under `CI=true` it throws
 * instead, so the suites fail rather than skip.
 */
export const redisAvailable = (): boolean => {
  if (availability !== undefined) return availability
  const missing = ["redis-server", "redis-cli"].filter((c) => !onPath(c))
  if (missing.length === 0) return availability = true
  const what = `${missing.join(" and ")} not found on the PATH`
  if (process.env.CI === "true") {
    throw new Error(`Redis tests cannot run: ${what}, and CI=true requires them (install redis-server)`)
  }
  if (firstInRun()) {
    console.warn(`\n!!!!! SKIPPING the Redis test suites: ${what}. Install redis-server to run them. !!!!!\n`)
  }
  return availability = false
}


// ---------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------

const reserved = new Set([6379, 26379, 16379])
const handedOut = new Set<number>()

/** A port that was free on 127.0.0.1 a moment ago (never 6379 / 26379, never twice). */
export const freePort = async (): Promise<number> => {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = await new Promise<number>((resolve, reject) => {
      const server = net.createServer()
      server.unref()
      server.once("error", reject)
      server.listen(0, HOST, () => {
        const address = server.address()
        const p = typeof address === "object" && address !== null ? address.port : 0
        server.close(() => resolve(p))
      })
    })
    if (port > 0 && !reserved.has(port) && !handedOut.has(port)) {
      handedOut.add(port)
      return port
    }
  }
  throw new Error("no free port found in 50 attempts")
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** Polls `check` every `intervalMs` until it returns true, failing after `timeoutMs`. */
export const waitUntil = async (
  what: string,
  check: () => Promise<boolean> | boolean,
  timeoutMs: number,
  intervalMs = 50
): Promise<void> => {
  const deadline = Date.now() + timeoutMs
  let last: unknown
  while (Date.now() < deadline) {
    try {
      if (await check()) return
    } catch (error) {
      last = error
    }
    await sleep(intervalMs)
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${String(last)})` : ""}`)
}

/** Runs `redis-cli -h 127.0.0.1 -p port args…` (bounded) and returns its output. */
export const redisCli = (port: number, args: ReadonlyArray<string>, options?: { password?: string; timeoutMs?: number }) =>
  new Promise<string>((resolve, reject) => {
    const auth = options?.password !== undefined ? ["--no-auth-warning", "-a", options.password] : []
    execFile(
      "redis-cli",
      ["-h", HOST, "-p", String(port), ...auth, ...args],
      { timeout: options?.timeoutMs ?? 10_000, encoding: "utf8" },
      (error, stdout, stderr) => {
        if (error) reject(new Error(`redis-cli -p ${port} ${args.join(" ")} failed: ${error.message} ${stderr}`))
        else resolve(stdout)
      }
    )
  })

/** One raw RESP round trip on a fresh socket (bounded): `true` once the server answers. */
const answers = (port: number, timeoutMs = 500): Promise<boolean> =>
  new Promise((resolve) => {
    const socket = net.connect({ host: HOST, port })
    let settled = false
    // resolve only once the socket is closed, so no probe socket outlives the call
    const done = (ok: boolean) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      socket.once("close", () => resolve(ok))
      socket.destroy()
    }
    const timer = setTimeout(() => done(false), timeoutMs)
    socket.once("error", () => done(false))
    socket.once("connect", () => socket.write("PING\r\n"))
    // any reply (+PONG, or -NOAUTH when a password is set) means the server is up
    socket.once("data", (data) => done(data.length > 0))
  })

const info = (text: string): Map<string, string> => {
  const map = new Map<string, string>()
  for (const line of text.split(/\r?\n/)) {
    const i = line.indexOf(":")
    if (i > 0) map.set(line.slice(0, i), line.slice(i + 1).trim())
  }
  return map
}

// ---------------------------------------------------------------------------
// processes
// ---------------------------------------------------------------------------

const live = new Set<ChildProcess>()
const tempDirs = new Set<string>()

process.once("exit", () => {
  for (const child of live) {
    try {
      child.kill("SIGKILL")
    } catch {
      // already gone
    }
  }
  for (const dir of tempDirs) fs.rmSync(dir, { recursive: true, force: true })
})

const exited = (child: ChildProcess, timeoutMs: number): Promise<boolean> =>
  child.exitCode !== null || child.signalCode !== null
    ? Promise.resolve(true)
    : new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs)
      child.once("exit", () => {
        clearTimeout(timer)
        resolve(true)
      })
    })

/** A `redis-server` process (a node or a sentinel) on a fixed port. */
export interface RedisProcess {
  readonly host: typeof HOST
  readonly port: number
  /** `redis://127.0.0.1:port` (with the password when one is set). */
  readonly url: string
  readonly dir: string
  readonly password: string | undefined
  /** `true` while the process runs. */
  readonly running: boolean
  /** The pid of the current process. */
  readonly pid: number | undefined
  /** SIGKILL, and wait until it is gone. */
  kill(): Promise<void>
  /** Starts the process again on the same port, with the same config; waits until it answers. */
  restart(): Promise<void>
  /** Stops the process (SIGTERM, then SIGKILL after 3 s) and removes its dir. Idempotent. */
  stop(): Promise<void>
  /** The last lines of its log, for error messages. */
  logTail(lines?: number): string
}

interface ProcessSpec {
  readonly port: number
  readonly dir: string
  readonly config: string
  readonly sentinel: boolean
  readonly password: string | undefined
}

const startProcess = async (spec: ProcessSpec): Promise<RedisProcess> => {
  const configPath = path.join(spec.dir, spec.sentinel ? "sentinel.conf" : "redis.conf")
  const logPath = path.join(spec.dir, spec.sentinel ? "sentinel.log" : "redis.log")
  fs.writeFileSync(configPath, spec.config)
  let child: ChildProcess | undefined

  const logTail = (lines = 20) => {
    try {
      return fs.readFileSync(logPath, "utf8").split("\n").slice(-lines).join("\n")
    } catch {
      return "(no log)"
    }
  }

  const launch = async () => {
    const args = spec.sentinel ? [configPath, "--sentinel"] : [configPath]
    const c = spawn("redis-server", args, { stdio: "ignore", detached: false })
    child = c
    live.add(c)
    c.once("exit", () => live.delete(c))
    try {
      await waitUntil(`redis-server on port ${spec.port}`, async () => {
        if (c.exitCode !== null || c.signalCode !== null) {
          throw new Error(`redis-server on port ${spec.port} exited (${c.exitCode ?? c.signalCode}): ${logTail(5)}`)
        }
        return answers(spec.port)
      }, 10_000)
    } catch (error) {
      c.kill("SIGKILL")
      await exited(c, 3_000)
      throw error
    }
  }

  await launch()
  let stopped = false
  const auth = spec.password !== undefined ? `:${encodeURIComponent(spec.password)}@` : ""
  const handle: RedisProcess = {
    host: HOST,
    port: spec.port,
    url: `redis://${auth}${HOST}:${spec.port}`,
    dir: spec.dir,
    password: spec.password,
    get running() {
      return child !== undefined && child.exitCode === null && child.signalCode === null
    },
    get pid() {
      return child?.pid
    },
    kill: async () => {
      if (child === undefined || !handle.running) return
      child.kill("SIGKILL")
      if (!(await exited(child, 5_000))) throw new Error(`redis-server ${spec.port} did not die on SIGKILL`)
    },
    restart: async () => {
      if (stopped) throw new Error(`redis-server ${spec.port} was stopped`)
      if (handle.running) throw new Error(`redis-server ${spec.port} is still running`)
      await launch()
    },
    stop: async () => {
      stopped = true
      if (child !== undefined && handle.running) {
        child.kill("SIGTERM")
        if (!(await exited(child, 3_000))) {
          child.kill("SIGKILL")
          await exited(child, 3_000)
        }
      }
      fs.rmSync(spec.dir, { recursive: true, force: true })
      tempDirs.delete(spec.dir)
    },
    logTail
  }
  return handle
}

const makeDir = (prefix: string): string => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix))
  tempDirs.add(dir)
  return dir
}

const nodeConfig = (port: number, dir: string, password: string | undefined, extra: ReadonlyArray<string>) =>
  [
    `port ${port}`,
    `bind ${HOST}`,
    "protected-mode yes",
    "daemonize no",
    `dir ${dir}`,
    `logfile ${path.join(dir, "redis.log")}`,
    "save \"\"",
    "appendonly no",
    ...(password !== undefined ? [`requirepass ${password}`, `masterauth ${password}`] : []),
    ...extra
  ].join("\n") + "\n"

/** What every handle has: stop it and remove its files. */
interface Stoppable {
  stop(): Promise<void>
}

const handles = new Set<Stoppable>()

/** Stops everything started by this module in this process. Call it in `afterAll`. */
export const stopAll = async (): Promise<void> => {
  const all = Array.from(handles)
  handles.clear()
  await Promise.all(all.map((h) => h.stop().catch(() => {})))
}

const startNode = async (
  prefix: string,
  options: { readonly password?: string | undefined; readonly extra?: ReadonlyArray<string>; readonly port?: number }
): Promise<RedisProcess> => {
  const dir = makeDir(prefix)
  const port = options.port ?? await freePort()
  return startProcess({
    port,
    dir,
    config: nodeConfig(port, dir, options.password, options.extra ?? []),
    sentinel: false,
    password: options.password
  })
}

// ---------------------------------------------------------------------------
// single node
// ---------------------------------------------------------------------------

/** A single Redis node. */
export type RedisServer = RedisProcess

/**
 * Starts a single `redis-server` on a free loopback port, persistence off, in its own
 * temp dir. `port`: a given port (e.g. one chosen earlier, to start Redis "late");
 * `password`: sets `requirepass`.
 */
export const startRedis = async (
  options: { readonly password?: string; readonly port?: number } = {}
): Promise<RedisServer> => {
  const node = await startNode("ssekify-redis-", options)
  handles.add(node)
  return node
}

// ---------------------------------------------------------------------------
// cluster
// ---------------------------------------------------------------------------

/** A 3-master Redis Cluster. */
export interface RedisCluster {
  readonly nodes: ReadonlyArray<RedisProcess>
  /** The startup nodes for `new Cluster(...)`. */
  readonly startupNodes: ReadonlyArray<{ readonly host: string; readonly port: number }>
  /** Resolves when every node reports `cluster_state:ok` (bounded). */
  waitOk(timeoutMs?: number): Promise<void>
  stop(): Promise<void>
}

/**
 * Starts 3 cluster-enabled masters (each with `replicas` replicas: 0 unless given),
 * creates the cluster and waits until it is ok. With replicas, a master killed is
 * replaced by its replica after `cluster-node-timeout` (2 s).
 */
export const startCluster = async (options: { readonly replicas?: number } = {}): Promise<RedisCluster> => {
  const replicas = options.replicas ?? 0
  const size = 3 * (1 + replicas)
  const started: Array<RedisProcess> = []
  const stop = async () => {
    handles.delete(cluster)
    await Promise.all(started.map((n) => n.stop()))
  }
  const waitOk = (timeoutMs = 20_000) =>
    waitUntil("cluster_state:ok on every node", async () => {
      for (const n of started) {
        const i = info(await redisCli(n.port, ["cluster", "info"]))
        if (i.get("cluster_state") !== "ok" || i.get("cluster_slots_assigned") !== "16384") return false
        if (i.get("cluster_known_nodes") !== String(size)) return false
      }
      return true
    }, timeoutMs, 200)
  const cluster: RedisCluster = {
    nodes: started,
    get startupNodes() {
      return started.map((n) => ({ host: HOST, port: n.port }))
    },
    waitOk,
    stop
  }
  handles.add(cluster)
  try {
    for (let i = 0; i < size; i++) {
      const busPort = await freePort()
      started.push(
        await startNode("ssekify-cluster-", {
          extra: [
            "cluster-enabled yes",
            "cluster-config-file nodes.conf",
            "cluster-node-timeout 2000",
            `cluster-port ${busPort}`,
            `cluster-announce-ip ${HOST}`
          ]
        })
      )
    }
    await redisCli(
      started[0]!.port,
      ["--cluster", "create", ...started.map((n) => `${HOST}:${n.port}`), "--cluster-replicas", String(replicas), "--cluster-yes"],
      { timeoutMs: 30_000 }
    )
    await waitOk()
    return cluster
  } catch (error) {
    await stop()
    throw error
  }
}

// ---------------------------------------------------------------------------
// sentinel
// ---------------------------------------------------------------------------

/** A master, a replica and 3 sentinels monitoring them as {@link RedisSentinel.name}. */
export interface RedisSentinel {
  readonly name: string
  readonly master: RedisProcess
  readonly replica: RedisProcess
  readonly sentinels: ReadonlyArray<RedisProcess>
  /** The sentinel addresses for ioredis' `sentinels` option. */
  readonly sentinelAddresses: ReadonlyArray<{ readonly host: string; readonly port: number }>
  /** The master address the first running sentinel reports. */
  currentMasterPort(): Promise<number>
  stop(): Promise<void>
}

/**
 * Starts a master, a replica (waits for its link to be up), then 3 sentinels with a
 * quorum of 2, a 1 s down-after and a 5 s failover timeout; waits until every sentinel
 * knows the replica and the two other sentinels.
 */
export const startSentinel = async (options: { readonly name?: string } = {}): Promise<RedisSentinel> => {
  const name = options.name ?? "ssekify-master"
  const started: Array<RedisProcess> = []
  const sentinels: Array<RedisProcess> = []
  const stop = async () => {
    handles.delete(set)
    // sentinels first, so they do not fail over while the nodes stop
    await Promise.all(sentinels.map((s) => s.stop()))
    await Promise.all(started.map((n) => n.stop()))
  }
  const currentMasterPort = async () => {
    for (const s of sentinels) {
      if (!s.running) continue
      const out = (await redisCli(s.port, ["sentinel", "get-master-addr-by-name", name])).trim().split(/\s+/)
      const port = Number(out[1])
      if (Number.isInteger(port) && port > 0) return port
    }
    throw new Error("no sentinel reports a master")
  }
  let master: RedisProcess | undefined
  let replica: RedisProcess | undefined
  const set: RedisSentinel = {
    name,
    get master() {
      return master!
    },
    get replica() {
      return replica!
    },
    sentinels,
    get sentinelAddresses() {
      return sentinels.map((s) => ({ host: HOST, port: s.port }))
    },
    currentMasterPort,
    stop
  }
  handles.add(set)
  try {
    master = await startNode("ssekify-sentinel-master-", {})
    started.push(master)
    const masterPort = master.port
    replica = await startNode("ssekify-sentinel-replica-", {
      extra: [`replicaof ${HOST} ${masterPort}`, `replica-announce-ip ${HOST}`]
    })
    started.push(replica)
    const replicaPort = replica.port
    await waitUntil("the replica's link to the master", async () =>
      info(await redisCli(replicaPort, ["info", "replication"])).get("master_link_status") === "up", 10_000, 100)
    for (let i = 0; i < 3; i++) {
      const dir = makeDir("ssekify-sentinel-")
      const port = await freePort()
      const config = [
        `port ${port}`,
        `bind ${HOST}`,
        "daemonize no",
        `dir ${dir}`,
        `logfile ${path.join(dir, "sentinel.log")}`,
        `sentinel announce-ip ${HOST}`,
        `sentinel monitor ${name} ${HOST} ${masterPort} 2`,
        `sentinel down-after-milliseconds ${name} 1000`,
        `sentinel failover-timeout ${name} 5000`,
        `sentinel parallel-syncs ${name} 1`
      ].join("\n") + "\n"
      sentinels.push(await startProcess({ port, dir, config, sentinel: true, password: undefined }))
    }
    await waitUntil("every sentinel to know the replica and the other sentinels", async () => {
      for (const s of sentinels) {
        const fields = (await redisCli(s.port, ["sentinel", "master", name])).trim().split("\n").map((l) => l.trim())
        const get = (k: string) => fields[fields.indexOf(k) + 1]
        if (get("num-slaves") !== "1" || get("num-other-sentinels") !== "2" || get("flags") !== "master") return false
      }
      return true
    }, 20_000, 200)
    return set
  } catch (error) {
    await stop()
    throw error
  }
}
