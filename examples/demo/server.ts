/**
 * `npm run demo`: a live page on one ssekify instance (no Redis, no framework, no build).
 *
 *   npm run demo                  # http://127.0.0.1:3000/ (another free port if 3000 is busy)
 *   PORT=8080 HOST=0.0.0.0 npm run demo
 *
 * Open it in two or more tabs: each tab connects as a user (alice, bob, ...) in a room.
 * The page shows who is connected and where, each connection's queue and drops, and
 * what arrives. "Drop my connection" makes the server end this tab's stream: the
 * browser reconnects by itself with `Last-Event-ID`, and what was sent to the user
 * meanwhile is replayed (every send has an `id:`, and `replayOffline` keeps frames sent
 * to a user who is briefly away). The page marks the replayed frames and shows the
 * count the server reports, or the gap event when something could not be replayed.
 *
 * Env: PORT (3000), HOST (127.0.0.1), DEMO_RETRY_MS (3000: the browser's reconnect delay).
 */
import * as fs from "node:fs"
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { type ConnectionHandle, SSEKify } from "../../src/index.js"

const DEFAULT_PORT = 3000
const explicitPort = process.env.PORT !== undefined && process.env.PORT !== ""
const port = explicitPort ? Number(process.env.PORT) : DEFAULT_PORT
const host = process.env.HOST || "127.0.0.1"
const retryMs = Number(process.env.DEMO_RETRY_MS || 3_000)
/** A small queue per connection, so the burst button shows drops. */
const QUEUE_LIMIT = 32
const BURST = 500

const sse = new SSEKify({
  keepAliveMs: 15_000,
  retryMs,
  recentBufferSize: 50, // frames with an id kept per user for Last-Event-ID replay
  replayOffline: true, // ... including those sent while the user has no connection
  replayGapEvent: "gap" // a reconnect that cannot get everything hears why
})
sse.on("error", (e: Error) => console.warn("[ssekify]", e.message))

// ---------------------------------------------------------------------------
// what the page shows about each connection
// ---------------------------------------------------------------------------

interface Tab {
  readonly tab: string
  readonly userId: string
  readonly room: string
  readonly handle: ConnectionHandle
  readonly res: http.ServerResponse
  readonly since: number
  readonly lastEventId: string | undefined
  /** Frames the library replayed when this connection opened. */
  readonly replayed: number
  drops: number
}

const tabs = new Map<string, Tab>() // by connId
const tabOf = (tab: string) => Array.from(tabs.values()).find((t) => t.tab === tab)

sse.on("disconnect", ({ userId, connId }: { userId: string; connId: string }) => {
  if (!tabs.delete(connId)) return
  if (!sse.isUserOnline(userId)) sse.sendToAll({ text: `${userId} left` }, { event: "presence", id: nextId() })
})
sse.on("drop", ({ connId, frames }: { connId: string; frames: number }) => {
  const t = tabs.get(connId)
  if (t !== undefined) t.drops += frames
})

let counter = 0
const nextId = () => String(++counter)

const state = () => {
  const users = new Map<string, Array<unknown>>()
  const rooms: Record<string, number> = {}
  for (const t of tabs.values()) {
    const list = users.get(t.userId) ?? []
    list.push({
      connId: t.handle.connId,
      tab: t.tab,
      room: t.room,
      since: t.since,
      lastEventId: t.lastEventId ?? null,
      replayed: t.replayed,
      drops: t.drops,
      buffered: t.res.writableLength,
      waitingForDrain: t.res.writableNeedDrain
    })
    users.set(t.userId, list)
    rooms[t.room] = (rooms[t.room] ?? 0) + 1
  }
  return {
    users: Array.from(users, ([userId, connections]) => ({ userId, connections })).sort((a, b) => a.userId.localeCompare(b.userId)),
    rooms,
    queueLimit: QUEUE_LIMIT,
    retryMs,
    lastId: counter,
    stats: sse.stats()
  }
}

// ---------------------------------------------------------------------------
// routes
// ---------------------------------------------------------------------------

const NAME = /^[\w.-]{1,32}$/
const here = path.dirname(fileURLToPath(import.meta.url))
const STATIC: Record<string, [string, string]> = {
  "/": ["index.html", "text/html; charset=utf-8"],
  "/app.js": ["app.js", "text/javascript; charset=utf-8"],
  "/style.css": ["style.css", "text/css; charset=utf-8"]
}

const readJson = (req: http.IncomingMessage): Promise<Record<string, unknown>> =>
  new Promise((resolve) => {
    let body = ""
    req.setEncoding("utf8")
    req.on("data", (c: string) => {
      if (body.length < 10_000) body += c
    })
    req.on("end", () => {
      try {
        const v = body ? JSON.parse(body) : {}
        resolve(v !== null && typeof v === "object" ? v : {})
      } catch {
        resolve({})
      }
    })
  })

const json = (res: http.ServerResponse, status: number, value: unknown) => {
  res.writeHead(status, { "content-type": "application/json", "cache-control": "no-store" }).end(JSON.stringify(value))
}

const connectSse = (url: URL, req: http.IncomingMessage, res: http.ServerResponse) => {
  const userId = url.searchParams.get("user") ?? ""
  const room = url.searchParams.get("room") || "lobby"
  const tab = url.searchParams.get("tab") ?? ""
  if (!NAME.test(userId) || !NAME.test(room) || !NAME.test(tab)) {
    return json(res, 400, { error: "user, room and tab: 1-32 letters, digits, '.', '_' or '-'" })
  }
  const header = req.headers["last-event-id"]
  const lastEventId = typeof header === "string" && header !== "" ? header : undefined
  // The memory replay is written synchronously inside registerConnection: the
  // counter's growth is what this connection got.
  const before = sse.stats().replayed
  const handle = sse.registerConnection(userId, res, {
    rooms: [room, `tab:${tab}`], // a room of one: this tab's own notices
    maxQueueItems: QUEUE_LIMIT,
    dropPolicy: "oldest"
  })
  const replayed = sse.stats().replayed - before
  tabs.set(handle.connId, { tab, userId, room, handle, res, since: Date.now(), lastEventId, replayed, drops: 0 })
  // After the replay, before anything live: the page knows which frames were replayed.
  sse.sendToRoom(`tab:${tab}`, { connId: handle.connId, lastEventId: lastEventId ?? null, replayed }, { event: "hello" })
  if (sse.getUserConnectionCount(userId) === 1) {
    sse.sendToAll({ text: `${userId} joined ${room}` }, { event: "presence", id: nextId() })
  }
}

const send = async (req: http.IncomingMessage, res: http.ServerResponse) => {
  const body = await readJson(req)
  const scope = String(body.scope ?? "")
  const target = String(body.target ?? "")
  const from = typeof body.from === "string" && NAME.test(body.from) ? body.from : "someone"
  const text = String(body.text ?? "").slice(0, 500) || "(empty)"
  if (scope === "user" || scope === "room") {
    if (!NAME.test(target)) return json(res, 400, { error: `a ${scope} name: 1-32 letters, digits, '.', '_' or '-'` })
  } else if (scope !== "all" && scope !== "burst") {
    return json(res, 400, { error: "scope: user, room, all or burst" })
  }
  if (scope === "burst") {
    if (!NAME.test(target)) return json(res, 400, { error: "a user name: 1-32 letters, digits, '.', '_' or '-'" })
    // One tick, BURST frames of ~1 KB: the first 16 KB fill the socket's buffer, the
    // rest meet a queue of QUEUE_LIMIT frames that drops its oldest.
    const first = counter + 1
    const pad = "·".repeat(300)
    let delivered = 0
    for (let i = 0; i < BURST; i++) {
      const n = sse.sendToUser(target, { burst: first, i, of: BURST, from, pad }, { event: "burst", id: nextId() })
      if (i === 0) delivered = n // connections reached
    }
    return json(res, 200, { scope, target, firstId: String(first), lastId: String(counter), frames: BURST, delivered })
  }
  const id = nextId()
  const data = { text, from }
  const delivered = scope === "user"
    ? sse.sendToUser(target, data, { event: "user", id })
    : scope === "room"
    ? sse.sendToRoom(target, data, { event: "room", id })
    : sse.sendToAll(data, { event: "broadcast", id })
  json(res, 200, { scope, target, id, delivered })
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url ?? "/", "http://demo")
  const file = req.method === "GET" ? STATIC[url.pathname] : undefined
  if (file !== undefined) {
    fs.readFile(path.join(here, "public", file[0]), (err, content) => {
      if (err) return json(res, 500, { error: "page missing" })
      res.writeHead(200, { "content-type": file[1], "cache-control": "no-store" }).end(content)
    })
    return
  }
  if (req.method === "GET" && url.pathname === "/sse") return connectSse(url, req, res)
  if (req.method === "GET" && url.pathname === "/api/state") return json(res, 200, state())
  if (req.method === "POST" && url.pathname === "/api/send") {
    send(req, res).catch((e: Error) => json(res, 500, { error: e.message }))
    return
  }
  if (req.method === "POST" && url.pathname === "/api/drop") {
    readJson(req).then((body) => {
      const t = tabOf(String(body.tab ?? ""))
      if (t === undefined) return json(res, 404, { error: "no open connection for this tab" })
      // The server ends the stream; the browser reconnects after `retry` with Last-Event-ID.
      t.handle.close()
      json(res, 200, { closed: t.handle.connId, reconnectInMs: retryMs })
    }, () => json(res, 400, { error: "bad request" }))
    return
  }
  json(res, 404, { error: "not found" })
})

// ---------------------------------------------------------------------------
// start: a busy port is one clear line, not a stack trace
// ---------------------------------------------------------------------------

const listen = (p: number) => {
  server.once("error", (err: NodeJS.ErrnoException) => {
    if (err.code === "EADDRINUSE" && !explicitPort && p === DEFAULT_PORT) {
      console.log(`ssekify demo: port ${DEFAULT_PORT} is busy, using a free port instead (set PORT to choose one)`)
      listen(0)
      return
    }
    const why = err.code === "EADDRINUSE"
      ? `port ${p} on ${host} is already in use; set PORT to another port (PORT=0: any free port)`
      : `cannot listen on ${host}:${p}: ${err.code ?? err.message}`
    console.error(`ssekify demo: ${why}`)
    process.exit(1)
  })
  server.listen(p, host, () => {
    const { port: actual } = server.address() as AddressInfo
    const shown = host.includes(":") ? `[${host}]` : host
    console.log(`ssekify demo: listening on http://${shown}:${actual}/  (open it in two tabs; Ctrl+C to stop)`)
  })
}
if (!Number.isInteger(port) || port < 0 || port > 65_535) {
  console.error(`ssekify demo: PORT must be a port number (0-65535), got ${JSON.stringify(process.env.PORT)}`)
  process.exit(1)
}
listen(port)

let stopping = false
const stop = async () => {
  if (stopping) return
  stopping = true
  server.close()
  await sse.shutdown({ graceMs: 300 })
  server.closeAllConnections()
  process.exit(0)
}
process.on("SIGINT", stop)
process.on("SIGTERM", stop)
