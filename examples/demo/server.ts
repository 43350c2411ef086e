/**
 * `npm run demo`: a live page on a single ssekify instance (no Redis, no framework).
 *
 * Open http://127.0.0.1:3000/ in one or more tabs: each tab connects as a user (and
 * may join a room); the buttons send to a user, a room or everyone, and the stats
 * update live.
 */
import * as http from "node:http"
import { SSEKify } from "../../src/index.js"

const port = Number(process.env.PORT ?? 3000)
const host = process.env.HOST ?? "127.0.0.1"

const sse = new SSEKify({ keepAliveMs: 15_000, retryMs: 2_000, recentBufferSize: 20, replayGapEvent: "gap" })
sse.on("error", (e) => console.warn("[ssekify]", e.message))

const readJson = (req: http.IncomingMessage): Promise<Record<string, unknown>> =>
  new Promise((resolve) => {
    let body = ""
    req.on("data", (c) => (body += c))
    req.on("end", () => {
      try {
        resolve(body ? JSON.parse(body) : {})
      } catch {
        resolve({})
      }
    })
  })

let counter = 0

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url ?? "/", `http://${host}`)
  const json = (status: number, value: unknown) => {
    res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(value))
  }
  if (req.method === "GET" && url.pathname === "/") {
    res.writeHead(200, { "content-type": "text/html; charset=utf-8" }).end(PAGE)
    return
  }
  if (req.method === "GET" && url.pathname === "/sse") {
    const userId = url.searchParams.get("userId") || "guest"
    const room = url.searchParams.get("room")
    sse.registerConnection(userId, res, { rooms: room ? ["global", room] : ["global"] })
    return
  }
  if (req.method === "GET" && url.pathname === "/stats") return json(200, sse.stats())
  if (req.method === "POST" && url.pathname.startsWith("/send/")) {
    const body = await readJson(req)
    const text = String(body.text ?? "")
    const id = String(++counter)
    const [, , scope, target] = url.pathname.split("/")
    const data = { text, from: "demo", n: counter }
    const delivered = scope === "user"
      ? sse.sendToUser(decodeURIComponent(target ?? ""), data, { event: "notify", id })
      : scope === "room"
      ? sse.sendToRoom(decodeURIComponent(target ?? ""), data, { event: "room", id })
      : sse.sendToAll(data, { event: "broadcast", id })
    return json(200, { delivered })
  }
  json(404, { error: "not found" })
})

// Push the stats to every page once a second.
const statsTimer = setInterval(() => sse.sendToAll(sse.stats(), { event: "stats" }), 1_000)

server.listen(port, host, () => {
  console.log(`ssekify demo: http://${host}:${port}/  (Ctrl+C to stop)`)
})

const stop = async () => {
  clearInterval(statsTimer)
  server.close()
  await sse.shutdown({ graceMs: 500 })
  process.exit(0)
}
process.on("SIGINT", stop)
process.on("SIGTERM", stop)

const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>ssekify demo</title>
<style>
  body { font: 14px system-ui, sans-serif; margin: 2rem; max-width: 60rem; }
  fieldset { margin-bottom: 1rem; }
  input { margin-right: .5rem; }
  #log { border: 1px solid #ccc; height: 18rem; overflow: auto; padding: .5rem; font-family: monospace; }
  #stats { font-family: monospace; white-space: pre; background: #f6f6f6; padding: .5rem; }
  .notify { color: #0a5; } .room { color: #a50; } .broadcast { color: #05a; } .gap { color: #c00; }
</style>
</head>
<body>
<h1>ssekify demo</h1>
<fieldset>
  <legend>This tab</legend>
  user <input id="user" value="alice" size="10">
  room <input id="room" value="lobby" size="10">
  <button id="connect">connect</button> <span id="state">disconnected</span>
</fieldset>
<fieldset>
  <legend>Send</legend>
  text <input id="text" value="hello" size="20">
  to user <input id="toUser" value="alice" size="10"> <button id="sendUser">send to user</button>
  to room <input id="toRoom" value="lobby" size="10"> <button id="sendRoom">send to room</button>
  <button id="sendAll">send to everyone</button>
</fieldset>
<div id="log"></div>
<h3>stats()</h3>
<div id="stats">waiting…</div>
<script>
  const $ = (id) => document.getElementById(id)
  let es
  const log = (cls, text) => {
    const line = document.createElement("div")
    line.className = cls
    line.textContent = new Date().toLocaleTimeString() + "  " + text
    $("log").prepend(line)
  }
  $("connect").onclick = () => {
    if (es) es.close()
    es = new EventSource("/sse?userId=" + encodeURIComponent($("user").value) + "&room=" + encodeURIComponent($("room").value))
    es.onopen = () => ($("state").textContent = "connected as " + $("user").value)
    es.onerror = () => ($("state").textContent = "reconnecting…")
    for (const name of ["notify", "room", "broadcast", "gap"]) {
      es.addEventListener(name, (e) => log(name, name + " #" + e.lastEventId + ": " + e.data))
    }
    es.addEventListener("stats", (e) => ($("stats").textContent = JSON.stringify(JSON.parse(e.data), null, 2)))
  }
  const send = (path) => fetch(path, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ text: $("text").value }) })
    .then((r) => r.json()).then((r) => log("", "delivered to " + r.delivered + " connection(s)"))
  $("sendUser").onclick = () => send("/send/user/" + encodeURIComponent($("toUser").value))
  $("sendRoom").onclick = () => send("/send/room/" + encodeURIComponent($("toRoom").value))
  $("sendAll").onclick = () => send("/send/all")
  $("connect").click()
</script>
</body>
</html>`
