/**
 * Bench client process: many raw HTTP/1.1 connections to 127.0.0.1, each parsed
 * by a minimal incremental parser (response head, chunked transfer coding, SSE
 * lines). It counts frames (events with data) per connection and, when asked,
 * reads the send timestamp `{"t":...` at the start of each event's data to
 * record delivery latency. Reads go into one shared buffer (`onread`), so a read
 * allocates nothing. Pinned to the other core than the server.
 */
import * as net from "node:net"
import type { ClientApi, ConnSummary } from "./protocol.js"
import { serve, type Handlers } from "./lib/rpc.js"
import { SseResponseParser } from "./lib/parser.js"
import { Histogram, hrMs, sleep } from "./lib/stats.js"

const SHARED = Buffer.allocUnsafe(256 * 1024)
/** hrMs() of the read being parsed: one clock read per read, shared by its frames */
let now = 0
let wantLatency = false
const hist = new Histogram()
let totalFrames = 0
let totalBytes = 0
let badHeads = 0

let armed = false
/** armed on the total over all connections (`armTotal`) rather than per connection (`arm`) */
let armedTotal = false
let armedTarget = 0
let below = 0
let reachedAt = -1
let waiter: (() => void) | undefined

let conns: Conn[] = []

function reached(): void {
  armed = false
  armedTotal = false
  reachedAt = now > 0 ? now : hrMs()
  const w = waiter
  waiter = undefined
  w?.()
}

class Conn extends SseResponseParser {
  sock: net.Socket | undefined
  count = 0
  closed = false
  stalled = false
  onOpen: ((ok: boolean, err: string) => void) | undefined

  constructor(readonly index: number) {
    super()
  }

  settleOpen(ok: boolean, err: string): void {
    const f = this.onOpen
    this.onOpen = undefined
    f?.(ok, err)
  }

  onRead(n: number): void {
    now = hrMs()
    totalBytes += n
    this.feed(SHARED.subarray(0, n))
  }

  protected onHead(ok: boolean, statusLine: string): void {
    if (ok) this.settleOpen(true, "")
    else {
      badHeads++
      this.settleOpen(false, statusLine)
      this.sock?.destroy()
    }
  }

  protected wantT(): boolean {
    return wantLatency
  }

  protected onFrame(t: number): void {
    this.count++
    totalFrames++
    if (!Number.isNaN(t)) hist.record(now - t)
    if (armedTotal) {
      if (totalFrames === armedTarget) {
        below = 0
        reached()
      }
    } else if (armed && this.count === armedTarget && !this.stalled) {
      below--
      if (below === 0) reached()
    }
  }

  /** the last chunk: the server ended the response (the socket may stay open: close it) */
  protected onEnd(): void {
    this.onClose()
    this.sock?.destroy()
  }

  onClose(): void {
    if (!this.open) {
      this.settleOpen(false, "closed before the response head")
      return
    }
    if (this.closed) return
    this.closed = true
    if (armed && !armedTotal && !this.stalled && this.count < armedTarget) {
      now = hrMs()
      below--
      if (below === 0) reached()
    }
  }
}

function connect(index: number, port: number, done: (ok: boolean, err: string) => void): void {
  const c = new Conn(index)
  c.onOpen = done
  const sock = net.connect({
    host: "127.0.0.1",
    port,
    noDelay: true,
    onread: {
      buffer: SHARED,
      callback: (n: number) => {
        c.onRead(n)
        return true
      }
    }
  })
  c.sock = sock
  conns.push(c)
  sock.once("connect", () => {
    sock.write(
      `GET /sse?u=u${index}&i=${index} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n`
    )
  })
  sock.on("error", (e) => c.settleOpen(false, e.message))
  sock.once("close", () => c.onClose())
}

function counts(filter: (c: Conn) => boolean): number[] {
  const v: number[] = []
  for (const c of conns) if (c.open && filter(c)) v.push(c.count)
  return v.sort((a, b) => a - b)
}

const api: Handlers<ClientApi> = {
  open({ port, from, count, concurrency, timeoutMs }) {
    return new Promise((resolve) => {
      const t0 = hrMs()
      let next = from
      let inflight = 0
      let opened = 0
      let failed = 0
      let firstError = ""
      let finished = false
      const finish = (): void => {
        if (finished) return
        finished = true
        clearTimeout(timer)
        resolve({ opened, failed: count - opened, ms: hrMs() - t0, firstError })
      }
      const timer = setTimeout(() => {
        if (firstError === "") firstError = `timeout after ${timeoutMs} ms`
        finish()
      }, timeoutMs)
      const launch = (): void => {
        while (!finished && inflight < concurrency && next < from + count) {
          const i = next++
          inflight++
          connect(i, port, (ok, err) => {
            inflight--
            if (ok) opened++
            else {
              failed++
              if (firstError === "") firstError = err
            }
            if (opened + failed >= count) finish()
            else launch()
          })
        }
      }
      launch()
    })
  },

  reset({ latency }) {
    wantLatency = latency
    hist.reset()
    totalFrames = 0
    totalBytes = 0
    armed = false
    armedTotal = false
    for (const c of conns) c.count = 0
    return { ok: true }
  },

  stall({ every }) {
    let stalled = 0
    for (const c of conns) {
      if (c.open && every > 0 && c.index % every === every - 1) {
        c.stalled = true
        c.sock?.pause()
        stalled++
      }
    }
    return { stalled }
  },

  armTotal({ total }) {
    armedTarget = total
    armedTotal = true
    below = Math.max(0, total - totalFrames)
    armed = below > 0
    if (!armed) {
      armedTotal = false
      reachedAt = hrMs()
    }
    return { below }
  },

  arm({ target }) {
    armedTotal = false
    armedTarget = target
    below = 0
    for (const c of conns) if (c.open && !c.closed && !c.stalled && c.count < target) below++
    armed = below > 0
    if (!armed) reachedAt = hrMs()
    return { below }
  },

  wait({ timeoutMs }) {
    if (!armed) return { reachedAt, below: 0 }
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        waiter = undefined
        resolve({ reachedAt: -1, below: armedTotal ? Math.max(0, armedTarget - totalFrames) : below })
      }, timeoutMs)
      waiter = () => {
        clearTimeout(timer)
        resolve({ reachedAt, below: 0 })
      }
    })
  },

  summary(): ConnSummary {
    const healthy = counts((c) => !c.stalled)
    let open = 0
    let closed = 0
    let stalled = 0
    let framesOfClosed = 0
    for (const c of conns) {
      if (!c.open) continue
      open++
      if (c.stalled) stalled++
      if (c.closed) {
        closed++
        framesOfClosed += c.count
      }
    }
    const c = process.cpuUsage()
    return {
      open,
      closed,
      stalled,
      frames: totalFrames,
      bytes: totalBytes,
      minHealthy: healthy[0] ?? 0,
      medHealthy: healthy[healthy.length >> 1] ?? 0,
      maxHealthy: healthy[healthy.length - 1] ?? 0,
      framesOfClosed,
      latency: hist.toJSON(),
      cpu: { user: c.user, system: c.system },
      badHeads
    }
  },

  async closeAll() {
    const all = conns
    conns = []
    armed = false
    armedTotal = false
    let pending = 0
    await new Promise<void>((resolve) => {
      for (const c of all) {
        const s = c.sock
        if (s === undefined || s.destroyed) continue
        pending++
        s.once("close", () => {
          if (--pending === 0) resolve()
        })
        s.destroy()
      }
      if (pending === 0) resolve()
      setTimeout(resolve, 5000).unref()
    })
    await sleep(10)
    return { closed: all.length }
  },

  cpu() {
    const c = process.cpuUsage()
    return { user: c.user, system: c.system }
  }
}

process.on("SIGTERM", () => process.exit(0))
serve(api)
