/** Commands the driver sends to the bench server and client processes. */
import type { HistogramJSON } from "./lib/stats.js"
import type { SystemConfig } from "./systems/types.js"

export interface CpuUsage {
  readonly user: number
  readonly system: number
}

export interface MemInfo {
  readonly rss: number
  readonly heapUsed: number
  readonly heapTotal: number
  readonly external: number
  readonly arrayBuffers: number
  /** peak RSS of the process so far (bytes) */
  readonly maxRSS: number
}

export interface SendResult {
  /** hrMs() of the first send */
  readonly startAt: number
  /** hrMs() after the last send (and its drain wait, when paced) */
  readonly endAt: number
  readonly cpuStart: CpuUsage
  /** sum of the counts the send calls returned */
  readonly delivered: number
  /** how many times a drain wait found buffered responses */
  readonly drainWaits: number
  /** rate sends: how late the latest send was against its schedule (ms) */
  readonly lateMaxMs: number
}

export type SendMode = "all" | "room" | "users"

export type ServerApi = {
  /** `preload`: every system of the run (see SystemDef.preload) */
  init(a: { system: string; cfg: SystemConfig; backlog: number; preload: ReadonlyArray<string> }): {
    port: number
    pid: number
    /** the system's bus routes per user (`SystemInstance.routed`) */
    routed: boolean
  }
  live(a: null): { live: number }
  mem(a: { gc: boolean }): MemInfo
  cpu(a: null): CpuUsage
  /** leave connections with index % every === every - 1 out of drain waits (scenario F) */
  exclude(a: { every: number }): { excluded: number }
  /** `messages` sends in batches of `batch`, waiting for every (non-excluded) response to drain between batches */
  sendPaced(a: {
    mode: SendMode
    messages: number
    batch: number
    payloadBytes: number
    users: number
    timeoutMs: number
  }): SendResult
  /** `messages` broadcasts at `rate` per second, on schedule, no drain waits */
  sendRate(a: { rate: number; messages: number; payloadBytes: number }): SendResult
  /** `messages` broadcasts in one synchronous loop */
  burst(a: { messages: number; payloadBytes: number }): SendResult
  /** wait until no response has buffered bytes (and the system reports nothing pending) */
  quiesce(a: { timeoutMs: number }): { ms: number; buffered: number }
  /** local broadcasts n = from .. from+count-1, no waiting (scenario E, local) */
  sendWindow(a: { from: number; count: number; payloadBytes: number }): SendResult
  /** cross-instance publishes, all issued then awaited (scenario E, publisher) */
  publishWindow(a: { from: number; count: number; payloadBytes: number }): SendResult
  /**
   * Messages n = from .. from+count-1, each to user `u<pickUser(n, users)>` (scenario H):
   * `local` = `sendToUserDirect` here (the instance holds every user), `bus` = `publishToUser`
   * (all issued, then awaited).
   */
  usersWindow(a: { from: number; count: number; payloadBytes: number; users: number; via: "local" | "bus" }): SendResult
  /** the system's numeric stats, 'error' events by kind, and drop events (count, frames) */
  stats(a: null): {
    system: Record<string, number>
    events: Record<string, number>
    drops: { events: number; frames: number }
  }
  shutdown(a: null): { ok: true }
}

export interface ConnSummary {
  /** connections that got their response head */
  readonly open: number
  /** connections closed by the server (or reset) after opening */
  readonly closed: number
  readonly stalled: number
  /** frames (events with data) over all connections since the last reset */
  readonly frames: number
  readonly bytes: number
  /** per-connection frame counts: min / median / max over non-stalled connections, and over all */
  readonly minHealthy: number
  readonly medHealthy: number
  readonly maxHealthy: number
  /** sum of per-connection counts grouped (for G): connections that closed */
  readonly framesOfClosed: number
  readonly latency: HistogramJSON
  readonly cpu: CpuUsage
  readonly badHeads: number
}

export type ClientApi = {
  /** open connections i = from .. from+count-1 to GET /sse?u=u<i>&i=<i> */
  open(a: { port: number; from: number; count: number; concurrency: number; timeoutMs: number }): {
    opened: number
    failed: number
    ms: number
    firstError: string
  }
  /** zero the counters; `latency` = read the send timestamp of every frame */
  reset(a: { latency: boolean }): { ok: true }
  /** stop reading on connections with index % every === every - 1 */
  stall(a: { every: number }): { stalled: number }
  /** arm a watermark: `wait` resolves when every non-stalled open connection has `target` frames */
  arm(a: { target: number }): { below: number }
  /** arm a total: `wait` resolves when the frames over all connections since the last reset reach `total` */
  armTotal(a: { total: number }): { below: number }
  wait(a: { timeoutMs: number }): { reachedAt: number; below: number }
  summary(a: null): ConnSummary
  closeAll(a: null): { closed: number }
  cpu(a: null): CpuUsage
}
