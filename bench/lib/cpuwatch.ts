/**
 * Who used the CPU during a measured window: /proc/stat per core, and the
 * utime+stime of every process, split into ours (descendants of the driver),
 * kernel threads, and foreign processes. A run where a foreign process used
 * noticeable CPU is flagged in the report.
 */
import * as fs from "node:fs"

const TICK_MS = 10 // USER_HZ = 100 on Linux

interface ProcSample {
  readonly pid: number
  readonly ppid: number
  readonly comm: string
  readonly ticks: number
  readonly start: number
}

export interface CpuSnapshot {
  readonly at: number
  /** per core: [busy ticks (user+nice+system+irq+softirq), steal ticks, total ticks] */
  readonly cores: ReadonlyArray<readonly [number, number, number]>
  readonly procs: ReadonlyMap<number, ProcSample>
}

function readProc(pid: number): ProcSample | undefined {
  try {
    const s = fs.readFileSync(`/proc/${pid}/stat`, "latin1")
    const l = s.indexOf("(")
    const r = s.lastIndexOf(")")
    const f = s.slice(r + 2).split(" ")
    return {
      pid,
      ppid: Number(f[1]),
      comm: s.slice(l + 1, r),
      ticks: Number(f[11]) + Number(f[12]),
      start: Number(f[19])
    }
  } catch {
    return undefined
  }
}

export function snapshot(): CpuSnapshot {
  const cores: Array<[number, number, number]> = []
  try {
    for (const line of fs.readFileSync("/proc/stat", "latin1").split("\n")) {
      if (!/^cpu\d+ /.test(line)) continue
      const v = line.split(/\s+/).slice(1).map(Number)
      const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] = v
      cores.push([user + nice + system + irq + softirq, steal, user + nice + system + idle + iowait + irq + softirq + steal])
    }
  } catch {
    // not Linux
  }
  const procs = new Map<number, ProcSample>()
  try {
    for (const name of fs.readdirSync("/proc")) {
      const pid = Number(name)
      if (!Number.isInteger(pid)) continue
      const p = readProc(pid)
      if (p !== undefined) procs.set(pid, p)
    }
  } catch {
    // not Linux
  }
  return { at: Date.now(), cores, procs }
}

export interface ForeignReport {
  readonly wallMs: number
  /** busy % per core over the window */
  readonly busyPct: ReadonlyArray<number>
  readonly stealMs: number
  readonly oursMs: number
  readonly kernelThreadsMs: number
  readonly foreignMs: number
  readonly top: ReadonlyArray<{ readonly pid: number; readonly comm: string; readonly ms: number }>
  /** true when foreign processes (or steal) took a noticeable share of the window */
  readonly flagged: boolean
}

export function foreign(a: CpuSnapshot, b: CpuSnapshot, rootPid: number = process.pid): ForeignReport {
  const wallMs = Math.max(1, b.at - a.at)
  const busyPct = b.cores.map((c, i) => {
    const p = a.cores[i]
    if (p === undefined) return 0
    const total = c[2] - p[2]
    return total > 0 ? Math.round(((c[0] - p[0]) / total) * 1000) / 10 : 0
  })
  const stealMs = b.cores.reduce((s, c, i) => s + (c[1] - (a.cores[i]?.[1] ?? c[1])) * TICK_MS, 0)
  const ours = (pid: number): boolean => {
    for (let p = pid, guard = 0; p > 1 && guard < 64; guard++) {
      if (p === rootPid) return true
      const s = b.procs.get(p) ?? a.procs.get(p)
      if (s === undefined) return false
      p = s.ppid
    }
    return false
  }
  let oursMs = 0
  let kernelThreadsMs = 0
  let foreignMs = 0
  const top: Array<{ pid: number; comm: string; ms: number }> = []
  for (const [pid, s] of b.procs) {
    const p = a.procs.get(pid)
    const ticks = p !== undefined && p.start === s.start ? s.ticks - p.ticks : s.ticks
    if (ticks <= 0) continue
    const ms = ticks * TICK_MS
    if (ours(pid)) oursMs += ms
    else if (pid === 2 || s.ppid === 2) kernelThreadsMs += ms
    else {
      foreignMs += ms
      top.push({ pid, comm: s.comm, ms })
    }
  }
  top.sort((x, y) => y.ms - x.ms)
  const cores = Math.max(1, b.cores.length)
  const flagged = foreignMs + stealMs > Math.max(50, 0.02 * wallMs * cores)
  return { wallMs, busyPct, stealMs, oursMs, kernelThreadsMs, foreignMs, top: top.slice(0, 3), flagged }
}

/**
 * Bytes process `pid` has read through read-like system calls so far (`rchar` of
 * `/proc/<pid>/io`): for a bench server during a cross-instance run, what reached it
 * from the bus (its SSE sockets only carry the request head in). NaN where unreadable.
 */
export function readBytes(pid: number): number {
  try {
    const m = /^rchar:\s*(\d+)/m.exec(fs.readFileSync(`/proc/${pid}/io`, "latin1"))
    return m === null ? Number.NaN : Number(m[1])
  } catch {
    return Number.NaN
  }
}
