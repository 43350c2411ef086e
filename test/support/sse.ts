/**
 * Test helpers: real `node:http` servers on 127.0.0.1 and a raw SSE client built on
 * `http.get` that keeps the exact bytes and parses frames.
 */
import * as http from "node:http"
import type { AddressInfo } from "node:net"

export interface TestServer {
  readonly server: http.Server
  readonly port: number
  readonly url: string
  close(): Promise<void>
}

/** Starts a server on 127.0.0.1 on a free port. `close` destroys open sockets. */
export const startServer = async (handler: http.RequestListener): Promise<TestServer> => {
  const server = http.createServer(handler)
  const sockets = new Set<import("node:net").Socket>()
  server.on("connection", (socket) => {
    sockets.add(socket)
    socket.on("close", () => sockets.delete(socket))
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  const port = (server.address() as AddressInfo).port
  return {
    server,
    port,
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy()
        server.close(() => resolve())
      })
  }
}

export interface SseFrame {
  readonly id?: string
  readonly event?: string
  readonly data: string
  readonly retry?: number
  readonly comments: ReadonlyArray<string>
}

/** Parses SSE text as the spec's algorithm does (fields per line, frames at blank lines). */
export const parseFrames = (text: string): Array<SseFrame> => {
  const frames: Array<SseFrame> = []
  const lines = text.split(/\r\n|\r|\n/)
  let data: Array<string> = []
  let hasData = false
  let id: string | undefined
  let event: string | undefined
  let retry: number | undefined
  let comments: Array<string> = []
  for (const line of lines) {
    if (line === "") {
      if (hasData || id !== undefined || event !== undefined || retry !== undefined || comments.length > 0) {
        const frame: { -readonly [K in keyof SseFrame]: SseFrame[K] } = { data: data.join("\n"), comments }
        if (id !== undefined) frame.id = id
        if (event !== undefined) frame.event = event
        if (retry !== undefined) frame.retry = retry
        frames.push(frame)
      }
      data = []
      hasData = false
      id = undefined
      event = undefined
      retry = undefined
      comments = []
      continue
    }
    if (line.startsWith(":")) {
      comments.push(line.slice(1).trimStart())
      continue
    }
    const colon = line.indexOf(":")
    const field = colon < 0 ? line : line.slice(0, colon)
    let value = colon < 0 ? "" : line.slice(colon + 1)
    if (value.startsWith(" ")) value = value.slice(1)
    if (field === "data") {
      data.push(value)
      hasData = true
    } else if (field === "id") id = value
    else if (field === "event") event = value
    else if (field === "retry") retry = Number(value)
  }
  return frames
}

export interface RawClient {
  readonly response: http.IncomingMessage
  readonly status: number
  readonly headers: http.IncomingHttpHeaders
  /** Everything received so far, as text. */
  text(): string
  /** Message frames (with data) received so far. */
  messages(): Array<SseFrame>
  /** Resolves when `predicate` holds for the received text, or rejects after `timeoutMs`. */
  waitFor(predicate: (client: RawClient) => boolean, timeoutMs?: number, what?: string): Promise<void>
  /** Resolves when the server ended the response. */
  ended(timeoutMs?: number): Promise<void>
  isEnded(): boolean
  close(): void
}

/** Opens an SSE request with `http.get` and collects the body. */
export const connect = (
  url: string,
  options?: { readonly headers?: Record<string, string>; readonly highWaterMark?: number }
): Promise<RawClient> =>
  new Promise((resolve, reject) => {
    const req = http.get(url, { headers: { accept: "text/event-stream", ...options?.headers } }, (res) => {
      const chunks: Array<Buffer> = []
      let ended = false
      const waiters = new Set<() => void>()
      const notify = () => {
        for (const w of Array.from(waiters)) w()
      }
      res.on("data", (chunk: Buffer) => {
        chunks.push(chunk)
        notify()
      })
      res.on("end", () => {
        ended = true
        notify()
      })
      res.on("close", () => {
        ended = true
        notify()
      })
      res.on("error", () => {})
      const client: RawClient = {
        response: res,
        status: res.statusCode ?? 0,
        headers: res.headers,
        text: () => Buffer.concat(chunks).toString("utf8"),
        messages: () => parseFrames(client.text()).filter((f) => f.data !== "" || f.event !== undefined || f.id !== undefined),
        waitFor: waitForOf(waiters, () => client, () => client.text(), 500),
        ended: (timeoutMs = 5_000) => client.waitFor(() => ended, timeoutMs, "end of response"),
        isEnded: () => ended,
        close: () => {
          req.destroy()
          res.destroy()
        }
      }
      resolve(client)
    })
    req.on("error", reject)
  })

/** Polls `predicate` until it holds or `timeoutMs` passes. */
export const until = async (predicate: () => boolean, timeoutMs = 5_000, what = "condition"): Promise<void> => {
  const deadline = Date.now() + timeoutMs
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 5))
  }
}

/** A plain HTTP request (for POST bodies and status checks). */
export const request = (
  url: string,
  init?: { readonly method?: string; readonly body?: unknown; readonly headers?: Record<string, string> }
): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> =>
  new Promise((resolve, reject) => {
    const body = init?.body === undefined ? undefined : typeof init.body === "string" ? init.body : JSON.stringify(init.body)
    const req = http.request(url, {
      method: init?.method ?? (body === undefined ? "GET" : "POST"),
      headers: { ...(body === undefined ? {} : { "content-type": "application/json" }), ...init?.headers }
    }, (res) => {
      const chunks: Array<Buffer> = []
      res.on("data", (c: Buffer) => chunks.push(c))
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString("utf8") }))
      res.on("error", reject)
    })
    req.on("error", reject)
    if (body !== undefined) req.write(body)
    req.end()
  })

/**
 * `waitFor` of a test client: resolves once `predicate(client)` holds, checked now and
 * whenever the client calls the functions in `waiters` (on data and on its end); fails
 * after `timeoutMs` with the last `tail` characters received.
 */
export const waitForOf = <C>(waiters: Set<() => void>, client: () => C, text: () => string, tail: number) =>
  (predicate: (c: C) => boolean, timeoutMs = 5_000, what = "condition"): Promise<void> =>
    new Promise<void>((ok, fail) => {
      if (predicate(client())) return ok()
      const check = () => {
        if (predicate(client())) {
          waiters.delete(check)
          clearTimeout(timer)
          ok()
        }
      }
      const timer = setTimeout(() => {
        waiters.delete(check)
        fail(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; received: ${JSON.stringify(text().slice(-tail))}`))
      }, timeoutMs)
      waiters.add(check)
    })

/** A numbered 16 KiB payload: `numberedFrames` reads the numbers back in arrival order. */
export const numberedPayload = (n: number, bytes = 16 * 1024): string => String(n).padStart(8, "0") + "x".repeat(bytes - 8)

/** The numbers of the `numberedPayload` messages a client received, in order. */
export const numberedFrames = (client: { messages(): Array<SseFrame> }): Array<number> =>
  client.messages().map((m) => Number(m.data.slice(0, 8)))

/**
 * Sends numbered payloads with `send`, one per macrotask (so healthy clients drain),
 * until `done`; fails after `max` frames (no backpressure seen). Returns how many were sent.
 */
export const sendPacedUntil = async (send: (payload: string) => unknown, done: () => boolean, max: number): Promise<number> => {
  let n = 0
  while (!done()) {
    if (n >= max) throw new Error(`no backpressure after ${n} frames`)
    send(numberedPayload(n++))
    await new Promise((r) => setImmediate(r))
  }
  return n
}
