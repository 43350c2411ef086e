/**
 * Heap cost of an idle SSE connection, per server path, measured (not a test):
 *
 *   node --import tsx test/support/idleHeap.ts [connections=2000] [runs=3]
 *
 * For each path a server runs in its own child process with `--expose-gc`; this
 * process opens the connections (raw sockets, so the client costs the server
 * nothing). The server's `heapUsed` after two `gc()` is read with 200 connections open
 * and again with 200 + N: the difference / N is the cost of one more idle connection,
 * without the fixed costs (code, first-use allocations). Paths:
 *
 * - `raw`: `node:http`, headers written and the response kept open (the baseline);
 * - `node`: `SSEKify#registerConnection` on the Node response;
 * - `platform`: `HttpSse.handler` on `@effect/platform` + `NodeHttpServer`;
 * - `platform-bare`: an `@effect/platform` response streaming `Stream.never` (what the
 *   platform itself costs per open streaming response, without ssekify);
 * - `*-notrace`: the same with the platform's per-request tracing span disabled
 *   (`HttpMiddleware.withTracerDisabledWhen(() => true)`).
 */
import { fork } from "node:child_process"
import * as http from "node:http"
import * as net from "node:net"

type Mode = "raw" | "node" | "platform" | "platform-notrace" | "platform-bare" | "platform-bare-notrace"
const MODES: ReadonlyArray<Mode> = (process.env.MODES?.split(",") as Array<Mode> | undefined) ??
  ["raw", "node", "platform", "platform-notrace", "platform-bare", "platform-bare-notrace"]
const WARM = 200

// ---------------------------------------------------------------------------
// server side (child process)
// ---------------------------------------------------------------------------

const heap = () => {
  const gc = (globalThis as { gc?: () => void }).gc
  if (gc === undefined) throw new Error("run the server with --expose-gc")
  gc()
  gc()
  return process.memoryUsage().heapUsed
}

const serve = async (mode: Mode): Promise<number> => {
  if (mode === "raw" || mode === "node") {
    const { SSEKify } = await import("../../src/index.js")
    const sse = mode === "node" ? new SSEKify({ keepAliveMs: 15_000 }) : undefined
    const server = http.createServer((req, res) => {
      if (sse !== undefined) {
        sse.registerConnection(new URL(req.url ?? "/", "http://x").searchParams.get("userId") ?? "guest", res)
        return
      }
      res.writeHead(200, { "content-type": "text/event-stream" })
      res.write("retry: 2000\n\n")
    })
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
    return (server.address() as net.AddressInfo).port
  }
  const { HttpMiddleware, HttpRouter, HttpServer, HttpServerResponse } = await import("@effect/platform")
  const { NodeHttpServer } = await import("@effect/platform-node")
  const { Context, Effect, Layer, Scope, Stream } = await import("effect")
  const HttpSse = await import("../../src/HttpSse.js")
  const { SseKify, Transport } = await import("../../src/index.js")
  const route = mode === "platform" || mode === "platform-notrace"
    ? HttpSse.handler()
    : Effect.succeed(
      HttpServerResponse.stream(Stream.concat(Stream.make(new TextEncoder().encode("retry: 2000\n\n")), Stream.never), {
        contentType: "text/event-stream"
      })
    )
  const app = HttpRouter.empty.pipe(HttpRouter.get("/sse", route))
  const served = mode.endsWith("-notrace")
    ? HttpServer.serve(app).pipe(HttpMiddleware.withTracerDisabledWhen(() => true))
    : HttpServer.serve(app)
  const layer = served.pipe(
    Layer.provideMerge(SseKify.layer({ keepAliveMs: 15_000 }).pipe(Layer.provide(Transport.layerNone))),
    Layer.provideMerge(NodeHttpServer.layer(http.createServer, { port: 0, host: "127.0.0.1" }))
  )
  // a scope that stays open for the life of the process
  const context = await Effect.runPromise(Effect.flatMap(Scope.make(), (scope) => Layer.buildWithScope(layer, scope)))
  const address = Context.get(context, HttpServer.HttpServer).address
  if (address._tag !== "TcpAddress") throw new Error("no TCP address")
  return address.port
}

const server = async (mode: Mode) => {
  const port = await serve(mode)
  process.on("message", (message: string) => {
    if (message === "measure") process.send!({ heap: heap() })
  })
  process.send!({ port })
}

// ---------------------------------------------------------------------------
// client side (this process)
// ---------------------------------------------------------------------------

const openIdle = (port: number, count: number, from: number, sockets: Array<net.Socket>) =>
  new Promise<void>((resolve, reject) => {
    let pending = count
    let next = 0
    const batch = () => {
      for (let k = 0; k < 100 && next < count; k++, next++) {
        const socket = net.connect(port, "127.0.0.1")
        const i = from + next
        sockets.push(socket)
        let seen = false
        socket.on("data", (chunk) => {
          if (!seen && chunk.includes("retry:")) {
            seen = true
            if (--pending === 0) resolve()
            else if (pending % 100 === 0) batch()
          }
        })
        socket.on("error", reject)
        socket.write(`GET /sse?userId=u${i % 500} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n`)
      }
    }
    batch()
  })

const measureMode = (mode: Mode, n: number) =>
  new Promise<{ perConn: number; base: number }>((resolve, reject) => {
    const child = fork(new URL(import.meta.url).pathname, ["--server", mode], {
      execArgv: ["--expose-gc", "--import", "tsx"],
      stdio: ["ignore", "inherit", "inherit", "ipc"]
    })
    const sockets: Array<net.Socket> = []
    const ask = () =>
      new Promise<number>((ok) => {
        child.once("message", (m: { heap: number }) => ok(m.heap))
        child.send("measure")
      })
    child.once("message", async (m: { port: number }) => {
      try {
        await openIdle(m.port, WARM, 0, sockets)
        const h1 = await ask()
        await openIdle(m.port, n, WARM, sockets)
        const h2 = await ask()
        resolve({ perConn: (h2 - h1) / n, base: h1 })
      } catch (e) {
        reject(e)
      } finally {
        for (const s of sockets) s.destroy()
        child.kill("SIGKILL")
      }
    })
    child.once("error", reject)
  })

const main = async () => {
  const n = Number(process.argv[2] ?? 2000)
  const runs = Number(process.argv[3] ?? 3)
  const results: Record<string, Array<number>> = {}
  for (let r = 0; r < runs; r++) {
    for (const mode of MODES) {
      const { perConn } = await measureMode(mode, n)
      ;(results[mode] ??= []).push(perConn)
    }
  }
  const median = (xs: Array<number>) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
  const raw = results.raw === undefined ? undefined : median(results.raw)
  console.log(`heap per idle connection (${n} connections after ${WARM} warm, ${runs} runs, median; node ${process.version})`)
  for (const mode of MODES) {
    const m = median(results[mode]!)
    console.log(
      `${mode.padEnd(22)} ${(m / 1024).toFixed(2).padStart(7)} KiB${raw === undefined ? "" : `  (x${(m / raw).toFixed(2)} raw)`}  runs: ${
        results[mode]!.map((x) => (x / 1024).toFixed(2)).join(", ")
      }`
    )
  }
}

if (process.argv[2] === "--server") void server(process.argv[3] as Mode)
else void main()
