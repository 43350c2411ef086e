/**
 * A raw SSE client on a `net.Socket`: HTTP/1.1 request, response head, chunked
 * transfer coding, SSE frames with their arrival time. It can stop reading (`pause`:
 * the kernel buffers fill and the server sees backpressure), and end abruptly
 * (`destroy`: FIN; `reset`: RST) at any point, even before the response head.
 */
import * as net from "node:net"
import { StringDecoder } from "node:string_decoder"

export interface Frame {
  readonly event: string | undefined
  readonly id: string | undefined
  readonly data: string
  /** `Date.now()` when the frame's last line arrived. */
  readonly at: number
}

export interface ClientOptions {
  readonly headers?: Readonly<Record<string, string>>
  /** Keep every frame (default true); false: count them only. */
  readonly keepFrames?: boolean
  /** Called for every frame as it arrives. */
  readonly onFrame?: (frame: Frame) => void
}

const CRLF2 = Buffer.from("\r\n\r\n")

export class SseClient {
  status = 0
  headers: Record<string, string> = {}
  readonly frames: Array<Frame> = []
  frameCount = 0
  bytes = 0
  /** The server ended the response (last chunk) or closed the socket. */
  ended = false
  /** The socket is closed. */
  closed = false
  error: Error | undefined
  /** The raw body text (the response's, after de-chunking), when it is a refusal. */
  body = ""
  readonly socket: net.Socket
  private head: Buffer | undefined = Buffer.alloc(0)
  private chunked = false
  private chunkLeft = -1
  private pending = Buffer.alloc(0)
  private line = ""
  private event: string | undefined
  private id: string | undefined
  private data: Array<string> = []
  private hasData = false
  private readonly decoder = new StringDecoder("utf8")
  private readonly waiters = new Set<() => void>()
  private readonly headWaiters: Array<() => void> = []

  constructor(port: number, path: string, private readonly options: ClientOptions = {}) {
    const socket = net.connect({ host: "127.0.0.1", port })
    this.socket = socket
    const extra = Object.entries(options.headers ?? {}).map(([k, v]) => `${k}: ${v}\r\n`).join("")
    socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nAccept: text/event-stream\r\n${extra}\r\n`)
    socket.on("data", (chunk: Buffer) => this.onData(chunk))
    socket.on("error", (e) => {
      this.error = e
    })
    socket.on("close", () => {
      this.closed = true
      this.ended = true
      this.settleHead()
      this.notify()
    })
  }

  /** Resolves when the response head arrived (or the socket closed first). */
  opened(timeoutMs = 10_000): Promise<void> {
    if (this.head === undefined || this.closed) return Promise.resolve()
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no response head within ${timeoutMs} ms`)), timeoutMs)
      this.headWaiters.push(() => {
        clearTimeout(timer)
        resolve()
      })
    })
  }

  /** Resolves when `predicate` holds (checked on every read and at close); rejects after `timeoutMs`. */
  waitFor(predicate: (c: SseClient) => boolean, timeoutMs: number, what: string): Promise<void> {
    if (predicate(this)) return Promise.resolve()
    return new Promise((resolve, reject) => {
      const check = () => {
        if (!predicate(this)) return
        this.waiters.delete(check)
        clearTimeout(timer)
        resolve()
      }
      const timer = setTimeout(() => {
        this.waiters.delete(check)
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what} (frames ${this.frameCount}, ended ${this.ended})`))
      }, timeoutMs)
      this.waiters.add(check)
    })
  }

  /** Stops reading: the kernel buffers fill, the server's writes start returning false. */
  pause(): void {
    this.socket.pause()
  }

  resume(): void {
    this.socket.resume()
  }

  /** FIN and close. */
  destroy(): void {
    this.socket.destroy()
  }

  /** RST (abortive close). */
  reset(): void {
    if (typeof this.socket.resetAndDestroy === "function" && this.socket.readyState !== "opening") this.socket.resetAndDestroy()
    else this.socket.destroy()
  }

  private notify(): void {
    for (const w of Array.from(this.waiters)) w()
  }

  private settleHead(): void {
    const list = this.headWaiters.splice(0)
    for (const w of list) w()
  }

  private onData(chunk: Buffer): void {
    this.bytes += chunk.length
    if (this.head !== undefined) {
      const all = Buffer.concat([this.head, chunk])
      const end = all.indexOf(CRLF2)
      if (end < 0) {
        this.head = all
        return
      }
      const lines = all.subarray(0, end).toString("latin1").split("\r\n")
      this.status = Number(lines[0]!.split(" ")[1])
      for (const l of lines.slice(1)) {
        const i = l.indexOf(":")
        if (i > 0) this.headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim()
      }
      this.chunked = /chunked/i.test(this.headers["transfer-encoding"] ?? "")
      this.head = undefined
      this.settleHead()
      chunk = all.subarray(end + 4)
    }
    if (this.chunked) this.dechunk(chunk)
    else this.text(chunk)
    this.notify()
  }

  /** De-chunking state: bytes of chunk data left, CRLF bytes to skip after a chunk, or -1: reading a size line. */
  private crlfLeft = 0

  private dechunk(chunk: Buffer): void {
    let buf = this.pending.length > 0 ? Buffer.concat([this.pending, chunk]) : chunk
    this.pending = Buffer.alloc(0)
    while (buf.length > 0 && !this.ended) {
      if (this.crlfLeft > 0) {
        const skip = Math.min(this.crlfLeft, buf.length)
        this.crlfLeft -= skip
        buf = buf.subarray(skip)
        continue
      }
      if (this.chunkLeft > 0) {
        const take = Math.min(this.chunkLeft, buf.length)
        this.text(buf.subarray(0, take))
        this.chunkLeft -= take
        buf = buf.subarray(take)
        if (this.chunkLeft === 0) {
          this.chunkLeft = -1
          this.crlfLeft = 2
        }
        continue
      }
      const nl = buf.indexOf("\r\n")
      if (nl < 0) {
        this.pending = Buffer.from(buf)
        return
      }
      const size = parseInt(buf.subarray(0, nl).toString("latin1"), 16)
      buf = buf.subarray(nl + 2)
      if (size === 0) {
        this.ended = true
        this.socket.end() // the response is over: let go of the connection (no keep-alive reuse)
        return
      }
      this.chunkLeft = size
    }
  }

  private text(bytes: Buffer): void {
    const text = this.decoder.write(bytes)
    if (this.status !== 200) {
      this.body += text
      return
    }
    let start = 0
    for (let i = 0; i < text.length; i++) {
      if (text.charCodeAt(i) === 10) {
        this.onLine(this.line + text.slice(start, i))
        this.line = ""
        start = i + 1
      }
    }
    this.line += text.slice(start)
  }

  private onLine(raw: string): void {
    const line = raw.endsWith("\r") ? raw.slice(0, -1) : raw
    if (line === "") {
      if (this.hasData) {
        const frame: Frame = { event: this.event, id: this.id, data: this.data.join("\n"), at: Date.now() }
        this.frameCount++
        if (this.options.keepFrames !== false) this.frames.push(frame)
        this.options.onFrame?.(frame)
      }
      this.event = undefined
      this.id = undefined
      this.data = []
      this.hasData = false
      return
    }
    if (line.startsWith(":")) return
    const colon = line.indexOf(":")
    const field = colon < 0 ? line : line.slice(0, colon)
    let value = colon < 0 ? "" : line.slice(colon + 1)
    if (value.startsWith(" ")) value = value.slice(1)
    if (field === "data") {
      this.data.push(value)
      this.hasData = true
    } else if (field === "event") this.event = value
    else if (field === "id") this.id = value
  }
}
