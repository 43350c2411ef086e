/**
 * Minimal incremental parser of one SSE response as it comes off a socket: the
 * HTTP/1.1 response head, the chunked transfer coding (or a raw body), then SSE
 * lines. It reports frames (events with at least one `data:` line) and, when
 * asked, the number after `{"t":` at the start of the event's first data line.
 * It never keeps a reference to the buffer it is fed (callers reuse one buffer):
 * partial heads and lines are copied.
 */

function hexVal(c: number): number {
  if (c >= 48 && c <= 57) return c - 48
  if (c >= 97 && c <= 102) return c - 87
  if (c >= 65 && c <= 70) return c - 55
  return -1
}

/** `{"t":<number>` right after `data:` (optional space) → the number, else NaN */
export function parseT(b: Uint8Array, p: number, e: number): number {
  if (p < e && b[p] === 32) p++
  if (e - p < 6 || b[p] !== 123 || b[p + 1] !== 34 || b[p + 2] !== 116 || b[p + 3] !== 34 || b[p + 4] !== 58) {
    return Number.NaN
  }
  p += 5
  let v = 0
  let digits = 0
  for (; p < e; p++) {
    const c = b[p] as number
    if (c < 48 || c > 57) break
    v = v * 10 + (c - 48)
    digits++
  }
  if (p < e && b[p] === 46) {
    let scale = 0.1
    for (p++; p < e; p++) {
      const c = b[p] as number
      if (c < 48 || c > 57) break
      v += (c - 48) * scale
      scale /= 10
    }
  }
  return digits > 0 ? v : Number.NaN
}

export abstract class SseResponseParser {
  /** the response head has been received with status 200 */
  open = false
  /** the response ended (last chunk) */
  ended = false
  private head: Buffer | null = null
  private chunked = false
  private failed = false
  /** chunk state: 0 size line, 1 data, 2 CRLF after data, 3 after the last chunk */
  private cs = 0
  private csize = 0
  private sizeDone = false
  private carry: Buffer | null = null
  private hasData = false
  private evT = Number.NaN

  /** the head arrived: ok = status 200, else the status line */
  protected abstract onHead(ok: boolean, statusLine: string): void
  /** one frame; `t` = its send timestamp when `wantT()`, else NaN */
  protected abstract onFrame(t: number): void
  /** the server ended the response */
  protected abstract onEnd(): void
  /** read the `{"t":...}` timestamp of every frame? */
  protected abstract wantT(): boolean

  /** Feed `b[0 .. b.length)`. */
  feed(b: Buffer): void {
    if (this.failed || this.ended) return
    if (this.open) {
      this.body(b, 0, b.length)
      return
    }
    const h = this.head === null ? Buffer.from(b) : Buffer.concat([this.head, b])
    const end = h.indexOf("\r\n\r\n")
    if (end < 0) {
      this.head = h
      return
    }
    this.head = null
    const head = h.toString("latin1", 0, end)
    if (!/^HTTP\/1\.[01] 200/.test(head)) {
      this.failed = true
      this.onHead(false, head.split("\r\n")[0] ?? "bad head")
      return
    }
    this.chunked = /\r\ntransfer-encoding:[ \t]*chunked/i.test(head)
    this.open = true
    this.onHead(true, "")
    if (end + 4 < h.length) this.body(h, end + 4, h.length)
  }

  private body(b: Buffer, s: number, e: number): void {
    if (!this.chunked) {
      this.sse(b, s, e)
      return
    }
    let p = s
    while (p < e) {
      if (this.cs === 1) {
        const take = Math.min(this.csize, e - p)
        this.sse(b, p, p + take)
        p += take
        this.csize -= take
        if (this.csize === 0) this.cs = 2
        continue
      }
      const c = b[p++] as number
      if (this.cs === 0) {
        if (c === 10) {
          this.sizeDone = false
          if (this.csize === 0) {
            this.cs = 3
            this.ended = true
            this.onEnd()
            return
          }
          this.cs = 1
        } else if (!this.sizeDone) {
          const v = hexVal(c)
          if (v >= 0) this.csize = this.csize * 16 + v
          else this.sizeDone = true
        }
      } else if (this.cs === 2 && c === 10) {
        this.cs = 0
        this.csize = 0
      }
    }
  }

  private sse(b: Buffer, s: number, e: number): void {
    let p = s
    while (p < e) {
      const nl = b.indexOf(10, p)
      if (nl < 0 || nl >= e) {
        const rest = b.subarray(p, e)
        this.carry = this.carry === null ? Buffer.from(rest) : Buffer.concat([this.carry, rest])
        return
      }
      if (this.carry !== null) {
        const line = Buffer.concat([this.carry, b.subarray(p, nl)])
        this.carry = null
        this.line(line, 0, line.length)
      } else {
        this.line(b, p, nl)
      }
      p = nl + 1
    }
  }

  private line(b: Buffer, s: number, e: number): void {
    if (e > s && b[e - 1] === 13) e--
    if (e === s) {
      if (this.hasData) {
        this.hasData = false
        const t = this.evT
        this.evT = Number.NaN
        this.onFrame(t)
      }
      return
    }
    // "data:"
    if (!this.hasData && e - s >= 5 && b[s] === 100 && b[s + 1] === 97 && b[s + 2] === 116 && b[s + 3] === 97 && b[s + 4] === 58) {
      this.hasData = true
      if (this.wantT()) this.evT = parseT(b, s + 5, e)
    }
  }
}
