/**
 * HTTP/2: `registerConnection` on `node:http2`'s compat response, over real h2 (TLS with
 * a certificate made at test time, `http2.createSecureServer({ allowHTTP1: true })`, a
 * `node:http2` client). HTTP/2 forbids connection-specific headers: no `Connection`
 * header may be sent (Node would drop it with an `UnsupportedWarning`). Heartbeats,
 * replay, backpressure (h2 flow control: a client that stops reading one stream) and
 * shutdown must behave as on HTTP/1.1.
 */
import * as http2 from "node:http2"
import * as https from "node:https"
import { afterEach, describe, expect, it } from "vitest"
import { type DropPolicy, SSEKify, type SSEKifyOptions } from "../src/index.js"
import { type Cert, h2Connect, type H2Server, openSse, selfSignedCert, startH2Server } from "./support/h2.js"
import { numberedFrames, sendPacedUntil, until } from "./support/sse.js"

const cert = selfSignedCert()

let cleanup: Array<() => Promise<void> | void> = []
afterEach(async () => {
  for (const f of cleanup.reverse()) await f()
  cleanup = []
})

interface Setup {
  readonly sse: SSEKify
  readonly server: H2Server
  readonly session: http2.ClientHttp2Session
  /** HTTP versions of the requests the server saw. */
  readonly versions: Array<string>
}

/** An h2 server whose `/sse?u=<user>` registers a connection; other paths: `route`. */
const setup = async (
  c: Cert,
  options: SSEKifyOptions,
  register?: { readonly dropPolicy?: DropPolicy; readonly maxQueueItems?: number },
  route?: (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => void
): Promise<Setup> => {
  const sse = new SSEKify(options)
  const versions: Array<string> = []
  const server = await startH2Server(c, (req, res) => {
    versions.push(req.httpVersion)
    const url = new URL(req.url, "https://x")
    if (url.pathname === "/sse") {
      sse.registerConnection(url.searchParams.get("u") ?? "guest", res, register)
    } else if (route !== undefined) {
      route(req, res)
    } else {
      res.statusCode = 404
      res.end()
    }
  })
  cleanup.push(() => server.close(), () => sse.shutdown({ announce: false, graceMs: 0 }))
  const session = await h2Connect(server.url, c)
  cleanup.push(() => void session.destroy())
  return { sse, server, session, versions }
}

const nextTicks = async (n: number) => {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r))
}

const MAX_FRAMES = 2_000 // 32 MiB at most: far beyond h2's 64 KiB stream window
const numbers = numberedFrames

const sendUntil = (sse: SSEKify, done: () => boolean): Promise<number> =>
  sendPacedUntil((payload) => sse.sendToAll(payload), done, MAX_FRAMES)

describe.skipIf(cert === undefined)("HTTP/2 (node:http2 compat API)", () => {
  const c = cert!

  it("sends the SSE headers without Connection (no UnsupportedWarning); HTTP/1.1 on the same server keeps it", async () => {
    const warnings: Array<Error> = []
    const onWarning = (w: Error) => warnings.push(w)
    process.on("warning", onWarning)
    cleanup.push(() => void process.off("warning", onWarning))
    const { server, session, versions } = await setup(c, { keepAliveMs: 0 }, undefined, (_req, res) => {
      // control: what the library sent before (proves the warning is seen here)
      res.writeHead(200, { "content-type": "text/plain", "connection": "keep-alive" })
      res.end("ok")
    })

    const client = await openSse(session, "/sse?u=alice")
    await client.waitFor((cl) => cl.text().includes("retry:"), 5_000, "retry line")
    await nextTicks(3) // process.emitWarning emits on the next tick
    expect(versions).toEqual(["2.0"])
    expect(client.headers[":status"]).toBe(200)
    expect(client.headers["content-type"]).toBe("text/event-stream; charset=utf-8")
    expect(client.headers["cache-control"]).toBe("no-cache, no-transform")
    expect(client.headers["x-accel-buffering"]).toBe("no")
    expect(client.headers).not.toHaveProperty("connection")
    expect(warnings.map((w) => `${w.name}: ${w.message}`)).toEqual([])

    // The control: Node warns (once per process) when a Connection header is set on h2.
    const control = session.request({ ":path": "/control" })
    control.resume()
    await new Promise<void>((resolve) => control.on("close", () => resolve()))
    await nextTicks(3)
    expect(warnings.map((w) => w.name)).toEqual(["UnsupportedWarning"])

    // HTTP/1.1 (ALPN fallback, allowHTTP1) on the same server: the header set is unchanged.
    const h1 = await new Promise<import("node:http").IncomingMessage>((resolve, reject) => {
      const req = https.get(`${server.url}/sse?u=bob`, { ca: c.cert, servername: "localhost", agent: false }, resolve)
      req.on("error", reject)
    })
    cleanup.push(() => void h1.destroy())
    expect(h1.httpVersion).toBe("1.1")
    expect(h1.headers["content-type"]).toBe("text/event-stream; charset=utf-8")
    expect(h1.headers["connection"]).toBe("keep-alive")
  })

  it("leaves connection-specific extra headers out on h2 (Connection, Transfer-Encoding...): the SSE headers still go out", async () => {
    let sse: SSEKify | undefined
    const { session } = await setup(c, { keepAliveMs: 0 }, undefined, (_req, res) => {
      sse!.registerConnection("carol", res, {
        headers: { "Connection": "close", "Transfer-Encoding": "chunked", "Keep-Alive": "timeout=5", "Upgrade": "h2c", "X-Extra": "1" }
      })
    }).then((s) => (sse = s.sse, s))
    const client = await openSse(session, "/extra")
    await client.waitFor((cl) => cl.text().includes("retry:"), 5_000, "retry line")
    expect(client.headers[":status"]).toBe(200)
    expect(client.headers["content-type"]).toBe("text/event-stream; charset=utf-8")
    expect(client.headers["x-extra"]).toBe("1")
    for (const name of ["connection", "transfer-encoding", "keep-alive", "upgrade"]) expect(client.headers).not.toHaveProperty(name)
    expect(sse!.stats().connections).toBe(1)
    expect(sse!.sendToUser("carol", "hi")).toBe(1)
    await client.waitFor((cl) => cl.messages().length === 1, 5_000, "a frame")
  })

  it("heartbeats, a reset stream removed at once, replay after Last-Event-ID before live frames", async () => {
    const { session, sse } = await setup(c, { keepAliveMs: 40, replayGapEvent: "gap", autoFields: { timestamp: false } })
    const disconnects: Array<string> = []
    sse.on("disconnect", (e) => disconnects.push(e.userId))

    const first = await openSse(session, "/sse?u=alice")
    await first.waitFor((cl) => (cl.text().match(/^: ping \d+$/gm) ?? []).length >= 2, 5_000, "two heartbeats")
    for (let i = 1; i <= 3; i++) expect(sse.sendToUser("alice", { n: i }, { id: String(i), event: "notify" })).toBe(1)
    await first.waitFor((cl) => cl.messages().length === 3, 5_000, "three frames")
    expect(first.messages().map((m) => m.id)).toEqual(["1", "2", "3"])

    // The client resets its stream (RST_STREAM): the connection goes at once.
    first.stream.close(http2.constants.NGHTTP2_CANCEL)
    await until(() => sse.stats().connections === 0, 5_000, "connection removed")
    expect(disconnects).toEqual(["alice"])

    // Reconnect on the same session with Last-Event-ID: 1 → frames 2 and 3, then live 4.
    const second = await openSse(session, "/sse?u=alice", { "last-event-id": "1" })
    await second.waitFor((cl) => cl.messages().length === 2, 5_000, "replayed frames")
    expect(sse.sendToUser("alice", { n: 4 }, { id: "4", event: "notify" })).toBe(1)
    await second.waitFor((cl) => cl.messages().length === 3, 5_000, "live frame")
    expect(second.messages().map((m) => [m.id, m.data])).toEqual([["2", '{"n":2}'], ["3", '{"n":3}'], ["4", '{"n":4}']])
    expect(sse.stats().replayed).toBe(2)

    // An id the buffer does not know: the gap event says so.
    const third = await openSse(session, "/sse?u=alice", { "last-event-id": "nope" })
    await third.waitFor((cl) => cl.messages().length === 1, 5_000, "gap event")
    expect(third.messages()[0]).toMatchObject({ event: "gap", data: JSON.stringify({ lastEventId: "nope", reason: "unknown" }) })
  })

  it("a stalled stream (h2 flow control) queues and drops by policy; a stream on the same session gets everything", async () => {
    const { session, sse } = await setup(
      c,
      { keepAliveMs: 0, autoFields: { timestamp: false }, serializer: (d) => String(d) },
      { dropPolicy: "oldest", maxQueueItems: 10 }
    )
    const slow = await openSse(session, "/sse?u=slow")
    const healthy = await openSse(session, "/sse?u=healthy")
    await slow.waitFor((cl) => cl.text().includes("retry:"))
    await healthy.waitFor((cl) => cl.text().includes("retry:"))
    slow.stream.pause() // stops reading: the stream's window closes, write() returns false
    const drops: Array<unknown> = []
    sse.on("drop", (e) => drops.push(e))

    const sent = await sendUntil(sse, () => sse.stats().droppedOldest >= 20)
    expect(sse.stats().queueItemsMax).toBe(10)
    expect(drops.length).toBeGreaterThan(0)
    // The other stream of the same TCP connection was not held up.
    await healthy.waitFor((cl) => cl.messages().length === sent, 10_000, "every frame on the healthy stream")
    expect(numbers(healthy)).toEqual(Array.from({ length: sent }, (_, i) => i))

    slow.stream.resume()
    await slow.waitFor((cl) => numbers(cl).at(-1) === sent - 1, 10_000, "last frame on the stalled stream")
    const got = numbers(slow)
    expect(got).toEqual([...got].sort((a, b) => a - b))
    expect(new Set(got).size).toBe(got.length)
    expect(got.length).toBe(sent - sse.stats().droppedOldest)
    expect(got.slice(-10)).toEqual(Array.from({ length: 10 }, (_, i) => sent - 10 + i))
    expect(sse.stats().connections).toBe(2)
  })

  it("'disconnect' ends only the stalled stream (BACKPRESSURE_DISCONNECT); the session goes on", async () => {
    const { session, sse } = await setup(
      c,
      { keepAliveMs: 0, autoFields: { timestamp: false }, serializer: (d) => String(d) },
      { dropPolicy: "disconnect", maxQueueItems: 10 }
    )
    const errors: Array<string> = []
    sse.on("error", (e) => errors.push((e as Error & { code?: string }).code ?? "?"))
    const slow = await openSse(session, "/sse?u=slow")
    const healthy = await openSse(session, "/sse?u=healthy")
    await slow.waitFor((cl) => cl.text().includes("retry:"))
    await healthy.waitFor((cl) => cl.text().includes("retry:"))
    slow.stream.pause()

    const sent = await sendUntil(sse, () => sse.stats().disconnectedByBackpressure >= 1)
    expect(errors).toEqual(["BACKPRESSURE_DISCONNECT"])
    expect(sse.getUserConnectionCount("slow")).toBe(0)
    await healthy.waitFor((cl) => cl.messages().length === sent, 10_000, "every frame on the healthy stream")
    // the stalled stream ends once its client reads again: a gap-free prefix
    slow.stream.resume()
    await slow.ended(10_000)
    const got = numbers(slow)
    expect(got).toEqual(Array.from({ length: got.length }, (_, i) => i))
    // the session is still usable: a new stream on it works
    expect(session.closed || session.destroyed).toBe(false)
    const again = await openSse(session, "/sse?u=slow")
    await again.waitFor((cl) => cl.text().includes("retry:"))
    expect(sse.sendToUser("slow", "hello")).toBe(1)
    await again.waitFor((cl) => cl.messages().some((m) => m.data === "hello"))
  })

  it("shutdown announces, refuses new streams with 503 + Retry-After, then ends every stream", async () => {
    const { server, session, sse } = await setup(c, { keepAliveMs: 0 })
    const clients = await Promise.all(["a", "b", "c"].map((u) => openSse(session, `/sse?u=${u}`)))
    for (const cl of clients) await cl.waitFor((x) => x.text().includes("retry:"))

    let done = false
    const shutdown = sse.shutdown({ graceMs: 300 }).then(() => (done = true))
    for (const cl of clients) await cl.waitFor((x) => x.messages().some((m) => m.event === "server:shutdown"), 5_000, "announce")
    // during the grace period: a new stream is refused
    const refused = await new Promise<http2.IncomingHttpHeaders>((resolve, reject) => {
      const stream = session.request({ ":path": "/sse?u=late" })
      stream.on("response", resolve)
      stream.on("error", reject)
      stream.resume()
    })
    expect(done).toBe(false)
    expect(refused[":status"]).toBe(503)
    expect(refused["retry-after"]).toBe("2")

    await shutdown
    for (const cl of clients) await cl.ended(5_000)
    expect(sse.stats().connections).toBe(0)
    // nothing of ours keeps the HTTP/2 server open
    session.close()
    await server.close()
  })
})
