// The demo page: plain browser JavaScript, no build step.
"use strict"
const $ = (id) => document.getElementById(id)
const params = new URLSearchParams(location.search)
const NAMES = ["alice", "bob", "carol", "dave", "erin", "frank"]
const tab = Math.random().toString(36).slice(2, 10)

let me = { user: "", room: "" }
let es = null
/** Between the stream's `open` and the server's `hello`, frames are the replay. */
let replaying = false
let replayedNow = 0
let gapNow = null
let myConnId = null
let myDrops = 0
let seenOnline = new Set()
let queueLimit = 32
const bursts = new Map()

const time = () => new Date().toLocaleTimeString([], { hour12: false })
const el = (tag, cls, text) => {
  const e = document.createElement(tag)
  if (cls) e.className = cls
  if (text !== undefined) e.textContent = text
  return e
}

// ---------------------------------------------------------------- received log

const entry = (kind, tagText, id, text, from) => {
  const li = el("li", "entry ev-" + kind)
  li.append(el("time", "", time()), el("i", "tag ev-" + kind, tagText))
  li.append(el("span", "id", id ? "#" + id : ""))
  const body = el("span", "text", text)
  if (from) body.append(el("em", "", " from " + from))
  li.append(body)
  if (replaying) {
    li.classList.add("replayed")
    li.append(el("i", "badge", "replayed"))
    replayedNow++
  }
  $("log").prepend(li)
  return li
}

const note = (cls, text) => {
  const li = el("li", "entry note " + cls)
  li.append(el("time", "", time()), el("span", "text", text))
  $("log").prepend(li)
}

const onMessage = (kind, label) => (e) => {
  const d = JSON.parse(e.data)
  $("meLast").textContent = e.lastEventId ? "#" + e.lastEventId : "–"
  entry(kind, label, e.lastEventId, d.text, d.from)
}

const onBurst = (e) => {
  const d = JSON.parse(e.data)
  $("meLast").textContent = "#" + e.lastEventId
  let b = bursts.get(d.burst)
  if (!b) {
    b = { received: 0, li: entry("burst", "burst", "", "", d.from) }
    bursts.set(d.burst, b)
  }
  b.received++
  b.li.querySelector(".id").textContent = "#" + d.burst + "…#" + e.lastEventId
  b.li.querySelector(".text").textContent = "received " + b.received + " of " + d.of + " frames"
  b.li.querySelector(".text").append(el("em", "", " from " + d.from))
}

// ---------------------------------------------------------------- connection

const status = (cls, text) => {
  $("status").className = "pill " + cls
  $("status").textContent = text
}

const showNotice = (cls, html) => {
  $("notice").hidden = false
  $("notice").className = "notice " + cls
  $("notice").textContent = ""
  $("notice").append(...html)
}

const connect = (user, room) => {
  if (es) es.close()
  me = { user, room }
  $("meUser").textContent = user
  $("meRoom").textContent = room
  history.replaceState(null, "", "?user=" + encodeURIComponent(user) + "&room=" + encodeURIComponent(room))
  document.title = user + " · ssekify demo"
  es = new EventSource("/sse?user=" + encodeURIComponent(user) + "&room=" + encodeURIComponent(room) + "&tab=" + tab)
  es.onopen = () => {
    replaying = true
    replayedNow = 0
    gapNow = null
    status("pill-wait", "replaying…")
  }
  es.onerror = () => {
    replaying = false
    myConnId = null
    if (es.readyState === EventSource.CONNECTING) status("pill-warn", "reconnecting…")
    else status("pill-off", "closed")
  }
  es.addEventListener("hello", (e) => {
    const d = JSON.parse(e.data)
    replaying = false
    myConnId = d.connId
    myDrops = 0
    $("meConn").textContent = d.connId
    status("pill-ok", "connected")
    if (d.lastEventId === null) return
    const after = el("code", "", "#" + d.lastEventId)
    if (gapNow) {
      showNotice("warn", [el("b", "", "Gap: "), "reconnected after ", after, ", but the server could not replay everything (" + gapNow + "). Replayed " + d.replayed + " frame(s)."])
    } else if (d.replayed > 0) {
      showNotice("ok", [el("b", "", "Replayed " + d.replayed + " frame" + (d.replayed === 1 ? "" : "s")), " sent while this tab was away (after ", after, "), marked below."])
    } else {
      showNotice("info", ["Reconnected after ", after, ": nothing was missed."])
    }
    $("notice").dataset.replayed = String(d.replayed)
    $("notice").dataset.counted = String(replayedNow)
  })
  es.addEventListener("gap", (e) => {
    const d = JSON.parse(e.data)
    gapNow = d.reason
    note("gap", "gap: the frames after #" + d.lastEventId + " could not all be replayed (reason: " + d.reason + ")")
  })
  es.addEventListener("user", onMessage("user", "user"))
  es.addEventListener("room", onMessage("room", "room"))
  es.addEventListener("broadcast", onMessage("broadcast", "everyone"))
  es.addEventListener("presence", onMessage("presence", "presence"))
  es.addEventListener("burst", onBurst)
}

$("drop").onclick = async () => {
  const r = await fetch("/api/drop", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ tab }) })
  const d = await r.json()
  if (!r.ok) return note("gap", d.error)
  note("info", "the server ended this tab's stream; the browser reconnects in " + d.reconnectInMs / 1000 + " s with Last-Event-ID " + ($("meLast").textContent || "–"))
  $("notice").hidden = true
}

$("switch").onsubmit = (e) => {
  e.preventDefault()
  const user = $("switchUser").value.trim() || me.user
  const room = $("switchRoom").value.trim() || me.room
  note("info", "new EventSource as " + user + " in " + room + " (a new EventSource sends no Last-Event-ID)")
  $("notice").hidden = true
  connect(user, room)
}

// ---------------------------------------------------------------- sending

const send = async (scope, target) => {
  const text = $("text").value
  const r = await fetch("/api/send", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ scope, target, text, from: me.user })
  })
  const d = await r.json()
  const li = el("li", "entry")
  li.append(el("time", "", time()))
  if (!r.ok) {
    li.append(el("span", "text err", d.error))
  } else {
    const where = scope === "all" ? "everyone" : target
    const what = scope === "burst" ? d.frames + " frames #" + d.firstId + "…#" + d.lastId : "#" + d.id
    let result = scope === "burst"
      ? d.delivered + " connection" + (d.delivered === 1 ? "" : "s") + ", queue of " + queueLimit + " frames"
      : "delivered to " + d.delivered + " connection" + (d.delivered === 1 ? "" : "s")
    if (d.delivered === 0 && (scope === "user" || scope === "burst")) {
      result += seenOnline.has(target) ? ": " + target + " is away, kept for replay" : ": nobody by that name is connected"
    }
    const kind = scope === "all" ? "broadcast" : scope
    li.append(el("i", "tag ev-" + kind, scope === "all" ? "everyone" : scope), el("span", "text", where + " " + what + " → " + result))
  }
  $("sent").prepend(li)
}
$("sendUser").onclick = () => send("user", $("toUser").value.trim())
$("sendRoom").onclick = () => send("room", $("toRoom").value.trim())
$("sendAll").onclick = () => send("all", "")
$("burst").onclick = () => send("burst", $("toUser").value.trim())

// ---------------------------------------------------------------- who is connected

const bytes = (n) => (n < 1024 ? n + " B" : (n / 1024).toFixed(1) + " KB")
const since = (ms) => {
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000))
  return s < 60 ? s + " s" : Math.floor(s / 60) + " min"
}

const render = (state) => {
  const body = $("who").tBodies[0]
  body.textContent = ""
  const users = []
  for (const u of state.users) {
    seenOnline.add(u.userId)
    users.push(u.userId)
    u.connections.forEach((c, i) => {
      const tr = el("tr", c.tab === tab ? "mine" : "")
      tr.append(el("td", "user", i === 0 ? u.userId : ""), el("td", "", c.room), el("td", "mono", c.connId + (c.tab === tab ? " (this tab)" : "")))
      tr.append(el("td", "", since(c.since)), el("td", "num", String(c.replayed)), el("td", "num" + (c.drops ? " hot" : ""), String(c.drops)))
      tr.append(el("td", "num", bytes(c.buffered) + (c.waitingForDrain ? " ⏳" : "")))
      body.append(tr)
      if (c.connId === myConnId && c.drops > myDrops) {
        note("drop", "the server dropped " + (c.drops - myDrops) + " frame(s) for this tab: its queue (" + state.queueLimit + " frames) was full; dropPolicy 'oldest' keeps the newest")
        myDrops = c.drops
      }
    })
  }
  if (state.users.length === 0) {
    const tr = el("tr")
    tr.append(Object.assign(el("td", "empty", "nobody yet"), { colSpan: 7 }))
    body.append(tr)
  }
  $("users").replaceChildren(...users.map((u) => Object.assign(el("option"), { value: u })))
  $("rooms").replaceChildren(...Object.keys(state.rooms).map((r) => Object.assign(el("option"), { value: r })))
  if (!$("toUser").dataset.touched) $("toUser").value = users.find((u) => u !== me.user) ?? me.user
  if (!$("toRoom").dataset.touched) $("toRoom").value = me.room
  $("retry").textContent = String(state.retryMs / 1000)
  queueLimit = state.queueLimit
  const s = state.stats
  const chips = [
    ["connections", s.connections], ["users", s.users], ["frames written", s.sent],
    ["dropped", s.droppedOldest + s.droppedNewest], ["replayed", s.replayed], ["replay misses", s.replayMisses], ["last id", "#" + state.lastId]
  ]
  $("stats").replaceChildren(...chips.map(([k, v]) => {
    const c = el("span", "chip")
    c.append(el("b", "", String(v)), " " + k)
    return c
  }))
}
for (const id of ["toUser", "toRoom"]) $(id).addEventListener("input", () => ($(id).dataset.touched = "1"))

const poll = async () => {
  try {
    const r = await fetch("/api/state")
    render(await r.json())
  } catch {
    // the server is gone or restarting: the status pill says so
  }
}

// ---------------------------------------------------------------- start

;(async () => {
  let user = params.get("user")
  let room = params.get("room")
  if (!user) {
    const state = await (await fetch("/api/state")).json()
    const online = new Set(state.users.map((u) => u.userId))
    const free = NAMES.findIndex((n) => !online.has(n))
    user = free >= 0 ? NAMES[free] : "guest-" + tab.slice(0, 4)
    room = room || (free % 2 === 1 ? "support" : "lobby")
  }
  connect(user, room || "lobby")
  await poll()
  setInterval(poll, 1000)
})()
