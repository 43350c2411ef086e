/**
 * HTTP/2 test helpers: a self-signed certificate made at test time with `openssl`, a
 * real `http2.createSecureServer({ allowHTTP1: true })` on 127.0.0.1, and a raw SSE
 * client on one stream of a `node:http2` client session. Without `openssl` on the PATH
 * the HTTP/2 suites skip with one loud line; under CI=true they fail instead.
 */
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as http2 from "node:http2"
import type { AddressInfo } from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import type * as tls from "node:tls"
import { parseFrames, type SseFrame, waitForOf } from "./sse.js"

export interface Cert {
  readonly key: Buffer
  readonly cert: Buffer
}

const which = (name: string): string | undefined => {
  try {
    const p = execFileSync("which", [name], { encoding: "utf8" }).trim()
    return p.length > 0 ? p : undefined
  } catch {
    return undefined
  }
}

/**
 * A fresh EC P-256 key and a self-signed certificate for `localhost` / 127.0.0.1, valid
 * one day; undefined (after one loud line) when `openssl` is missing.
 */
export const selfSignedCert = (): Cert | undefined => {
  const openssl = which("openssl")
  if (openssl === undefined) {
    if (process.env.CI === "true") {
      throw new Error("openssl is not on the PATH but CI=true: the HTTP/2 tests need it to make a certificate")
    }
    console.warn("\n!!! SKIPPING HTTP/2 TESTS: `openssl` is not on the PATH (apt-get install -y openssl) !!!\n")
    return undefined
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ssekify-h2-"))
  try {
    execFileSync(openssl, [
      "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
      "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-days", "1",
      "-keyout", path.join(dir, "key.pem"), "-out", path.join(dir, "cert.pem")
    ], { stdio: "pipe" })
    return { key: fs.readFileSync(path.join(dir, "key.pem")), cert: fs.readFileSync(path.join(dir, "cert.pem")) }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

export interface H2Server {
  readonly server: http2.Http2SecureServer
  readonly port: number
  /** `https://127.0.0.1:<port>` */
  readonly url: string
  close(): Promise<void>
}

/** `http2.createSecureServer({ allowHTTP1: true })` on 127.0.0.1; `close` destroys sessions and sockets. */
export const startH2Server = async (
  cert: Cert,
  handler: (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => void
): Promise<H2Server> => {
  const server = http2.createSecureServer({ allowHTTP1: true, key: cert.key, cert: cert.cert }, handler)
  const sessions = new Set<http2.ServerHttp2Session>()
  const sockets = new Set<tls.TLSSocket>()
  server.on("session", (session) => {
    sessions.add(session)
    session.on("close", () => sessions.delete(session))
  })
  server.on("secureConnection", (socket) => {
    sockets.add(socket)
    socket.on("close", () => sockets.delete(socket))
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  const port = (server.address() as AddressInfo).port
  return {
    server,
    port,
    url: `https://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        for (const session of sessions) session.destroy()
        for (const socket of sockets) socket.destroy()
        server.close(() => resolve())
      })
  }
}

/** A `node:http2` client session that trusts `cert` (and checks it: servername `localhost`). */
export const h2Connect = async (url: string, cert: Cert): Promise<http2.ClientHttp2Session> => {
  const session = http2.connect(url, { ca: cert.cert, servername: "localhost" })
  session.on("error", () => {})
  await new Promise<void>((resolve, reject) => {
    session.once("connect", () => resolve())
    session.once("error", reject)
  })
  return session
}

export interface H2SseClient {
  readonly stream: http2.ClientHttp2Stream
  /** The response headers (`:status` included). */
  readonly headers: http2.IncomingHttpHeaders & http2.IncomingHttpStatusHeader
  text(): string
  messages(): Array<SseFrame>
  waitFor(predicate: (client: H2SseClient) => boolean, timeoutMs?: number, what?: string): Promise<void>
  ended(timeoutMs?: number): Promise<void>
  isEnded(): boolean
}

/** Opens one SSE stream on `session` and collects its body. */
export const openSse = (
  session: http2.ClientHttp2Session,
  pathname: string,
  headers?: Record<string, string>
): Promise<H2SseClient> =>
  new Promise((resolve, reject) => {
    const stream = session.request({ ":path": pathname, accept: "text/event-stream", ...headers })
    const chunks: Array<Buffer> = []
    let ended = false
    const waiters = new Set<() => void>()
    const notify = () => {
      for (const w of Array.from(waiters)) w()
    }
    stream.on("data", (chunk: Buffer) => {
      chunks.push(chunk)
      notify()
    })
    const end = () => {
      ended = true
      notify()
    }
    stream.on("end", end)
    stream.on("close", end)
    stream.on("error", () => {})
    stream.once("error", reject)
    stream.once("response", (responseHeaders) => {
      const client: H2SseClient = {
        stream,
        headers: responseHeaders,
        text: () => Buffer.concat(chunks).toString("utf8"),
        messages: () => parseFrames(client.text()).filter((f) => f.data !== "" || f.event !== undefined || f.id !== undefined),
        waitFor: waitForOf(waiters, () => client, () => client.text(), 300),
        ended: (timeoutMs = 5_000) => client.waitFor(() => ended, timeoutMs, "end of stream"),
        isEnded: () => ended
      }
      resolve(client)
    })
  })
