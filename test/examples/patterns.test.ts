/**
 * The pattern examples that need no Redis: the upstream bridges (against a small local
 * SSE upstream started here), cross-server via HTTP callback, multi-tenant, user
 * connection stats and the AI-chat postAndListen flow. Each runs as
 * a child process; every request of its api.http is sent and what arrives is checked.
 */
import type * as http from "node:http"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { connect, startServer, type TestServer, until } from "../support/sse.js"
import { ensureBuilt, events, freePort, loadApi, opened, startExample, stopExamples, waitEvents } from "./harness.js"

const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/
const stamped = (data: object) => ({ ...data, timestamp: expect.stringMatching(ISO) })

beforeAll(ensureBuilt, 180_000)
afterAll(stopExamples)

// ---------------------------------------------------------------------------
// a local upstream SSE source for the bridges
// ---------------------------------------------------------------------------

interface Upstream {
  readonly server: TestServer
  readonly url: string
  /** Every request the bridge made, with the headers that matter. */
  readonly requests: Array<{ lastEventId: string | undefined; upstreamTo: string | undefined }>
  /** Open streams now. */
  count(): number
  /** Sends an event to every open stream; returns its id. */
  emit(event: string, data: unknown): string
  /** Cuts every open stream (the bridge should reconnect with Last-Event-ID). */
  drop(): void
}

const startUpstream = async (): Promise<Upstream> => {
  const streams = new Set<http.ServerResponse>()
  const requests: Upstream["requests"] = []
  let nextId = 1
  const server = await startServer((req, res) => {
    if (req.url !== "/stream") {
      res.writeHead(404).end()
      return
    }
    requests.push({
      lastEventId: req.headers["last-event-id"] as string | undefined,
      upstreamTo: req.headers["x-upstream-to"] as string | undefined
    })
    res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" })
    res.write("retry: 100\n\n") // reconnect fast after a drop
    streams.add(res)
    res.on("close", () => streams.delete(res))
  })
  return {
    server,
    url: `${server.url}/stream`,
    requests,
    count: () => streams.size,
    emit: (event, data) => {
      const id = `up-${nextId++}`
      const frame = `id: ${id}\n${event === "message" ? "" : `event: ${event}\n`}data: ${JSON.stringify(data)}\n\n`
      for (const s of streams) s.write(frame)
      return id
    },
    drop: () => {
      for (const s of streams) s.socket?.destroy()
    }
  }
}

describe("upstream bridges", () => {
  const upstreams: Array<Upstream> = []
  afterAll(async () => {
    await Promise.all(upstreams.map((u) => u.server.close()))
  })

  it("bridge-basic connects upstream at start, routes by userId, forwards named events, resumes with Last-Event-ID", async () => {
    const upstream = await startUpstream()
    upstreams.push(upstream)
    const bridge = await startExample("examples/express/bridge-basic.cjs", {
      env: { UPSTREAM_URL: upstream.url, UPSTREAM_TO: "alice" }
    })
    const api = loadApi("examples/express/bridge-upstream.api.http", { host: bridge.url })

    // connected at start, before any browser, with the X-Upstream-To header
    await until(() => upstream.count() === 1, 5_000, "the upstream connection at start")
    expect(upstream.requests).toEqual([{ lastEventId: undefined, upstreamTo: "alice" }])
    await until(() => /\[upstream\] open/.test(bridge.output()), 5_000, "upstream open")
    const health = await api.send("Health (downstream connections, upstream status, last upstream id)")
    expect(health.json()).toEqual({ ok: true, downstream: 0, upstream: "open", lastUpstreamEventId: null })
    const home = await api.send("Home page")
    expect([home.status, home.headers["content-type"]]).toEqual([200, expect.stringMatching(/^text\/html/)])

    const alice = await api.open("Open an SSE connection as alice")
    const bob = await api.open("Open an SSE connection as bob")
    await opened(alice)
    await opened(bob)

    upstream.emit("message", { text: "to everyone" })
    upstream.emit("tick", { userId: "alice", n: 1 })
    upstream.emit("not-forwarded", { text: "ignored: not in UPSTREAM_EVENTS" })
    const lastId = upstream.emit("tick", { n: 2 })
    await waitEvents(alice, 3, "alice's 3 upstream events")
    await waitEvents(bob, 2, "bob's 2 upstream events")
    expect(events(alice)).toEqual([
      ["message", stamped({ text: "to everyone" })],
      ["tick", stamped({ userId: "alice", n: 1 })],
      ["tick", stamped({ n: 2 })]
    ])
    expect(events(bob)).toEqual([["message", stamped({ text: "to everyone" })], ["tick", stamped({ n: 2 })]])

    // the local routes
    expect((await api.send("Notify alice (local)")).json()).toEqual({ delivered: 1 })
    expect((await api.send("Broadcast (local)")).json()).toEqual({ delivered: 2 })
    expect((await api.send("Send to room global")).json()).toEqual({ delivered: 2 })
    await waitEvents(alice, 6)
    expect(events(alice).slice(3)).toEqual([
      ["notify", stamped({ msg: "hi alice" })],
      ["broadcast", stamped({ msg: "hello everyone" })],
      ["room", stamped({ msg: "hi room" })]
    ])

    // the upstream cuts the stream: the bridge comes back, resuming after the last id
    upstream.drop()
    await until(() => upstream.requests.length === 2 && upstream.count() === 1, 5_000, "the bridge to reconnect upstream")
    expect(upstream.requests[1]).toEqual({ lastEventId: lastId, upstreamTo: "alice" })
    upstream.emit("message", { text: "after the drop" })
    await waitEvents(bob, 5, "bob's event after the drop")
    expect(events(bob).at(-1)).toEqual(["message", stamped({ text: "after the drop" })])
    expect((await api.send("Health (downstream connections, upstream status, last upstream id)")).json())
      .toEqual({ ok: true, downstream: 2, upstream: "open", lastUpstreamEventId: expect.stringMatching(/^up-\d+$/) })

    expect((await api.send("Close alice's connections")).json()).toEqual({ closed: true })
    await alice.ended()
    expect(bob.isEnded()).toBe(false)
    expect(api.unused()).toEqual([])
    bob.close()
    expect(await bridge.stop()).toEqual({ code: 0, signal: null })
  })

  it("bridge-lazy connects upstream only while a client is connected, lets go when idle, resumes on the next client", async () => {
    const upstream = await startUpstream()
    upstreams.push(upstream)
    const bridge = await startExample("examples/express/bridge-lazy.cjs", {
      env: { UPSTREAM_URL: upstream.url, IDLE_GRACE_MS: "300" }
    })
    const api = loadApi("examples/express/bridge-upstream.api.http", { host: bridge.url })

    const home = await api.send("Home page")
    expect(home.status).toBe(200)
    expect(home.body).toContain("new EventSource('/sse?userId=")
    expect((await api.send("Health (downstream connections, upstream status, last upstream id)")).json())
      .toEqual({ ok: true, downstream: 0, upstream: "idle", lastUpstreamEventId: null })
    expect(upstream.requests).toEqual([])

    // the first client brings the upstream up
    const alice = await api.open("Open an SSE connection as alice")
    await opened(alice)
    await until(() => upstream.count() === 1, 5_000, "the upstream connection on the first client")
    expect(upstream.requests).toEqual([{ lastEventId: undefined, upstreamTo: undefined }])
    const bob = await api.open("Open an SSE connection as bob")
    await opened(bob)
    await until(() => /\[upstream\] open/.test(bridge.output()), 5_000, "upstream open")
    expect((await api.send("Health (downstream connections, upstream status, last upstream id)")).json())
      .toEqual({ ok: true, downstream: 2, upstream: "open", lastUpstreamEventId: null })

    upstream.emit("message", { text: "to everyone" })
    const lastId = upstream.emit("message", { userId: "bob", text: "to bob" })
    await waitEvents(bob, 2)
    await waitEvents(alice, 1)
    expect(events(alice)).toEqual([["message", stamped({ text: "to everyone" })]])
    expect(events(bob)).toEqual([
      ["message", stamped({ text: "to everyone" })],
      ["message", stamped({ userId: "bob", text: "to bob" })]
    ])
    expect((await api.send("Notify alice (local)")).json()).toEqual({ delivered: 1 })
    expect((await api.send("Broadcast (local)")).json()).toEqual({ delivered: 2 })
    expect((await api.send("Send to room global")).json()).toEqual({ delivered: 2 })
    await waitEvents(alice, 4)
    expect(events(alice).slice(1)).toEqual([
      ["notify", stamped({ msg: "hi alice" })],
      ["broadcast", stamped({ msg: "hello everyone" })],
      ["room", stamped({ msg: "hi room" })]
    ])

    // the server closes alice, bob leaves: no client left, the upstream goes after the grace
    expect((await api.send("Close alice's connections")).json()).toEqual({ closed: true })
    await alice.ended()
    expect(upstream.count()).toBe(1)
    bob.close()
    await until(() => upstream.count() === 0, 5_000, "the upstream to be let go when idle")
    expect((await api.send("Health (downstream connections, upstream status, last upstream id)")).json())
      .toEqual({ ok: true, downstream: 0, upstream: "idle", lastUpstreamEventId: lastId })

    // the next client brings it back, resuming after the last upstream id
    const again = await api.open("Open an SSE connection as alice")
    await opened(again)
    await until(() => upstream.count() === 1, 5_000, "the upstream to come back")
    expect(upstream.requests).toEqual([
      { lastEventId: undefined, upstreamTo: undefined },
      { lastEventId: lastId, upstreamTo: undefined }
    ])
    upstream.emit("tick", { n: 3 })
    await waitEvents(again, 1)
    expect(events(again)).toEqual([["tick", stamped({ n: 3 })]])
    expect(api.unused()).toEqual([])
    again.close()
    expect(await bridge.stop()).toEqual({ code: 0, signal: null })
  })
})

describe("upstream-source (the stand-in upstream service) with bridge-basic, two processes", () => {
  it("streams numbered ticks, addresses them with X-Upstream-To, resumes after Last-Event-ID, emits on demand; the bridge forwards", async () => {
    const source = await startExample("examples/express/upstream-source.cjs", { env: { TICK_MS: "50" } })
    const api = loadApi("examples/express/upstream-source.api.http", { upstream: source.url })
    const ticks = (c: Awaited<ReturnType<typeof api.open>>) =>
      c.messages().filter((m) => m.event === "tick").map((m) => ({ id: Number(m.id), data: JSON.parse(m.data) }))

    const plain = await api.open("Open the upstream stream (what a bridge does)")
    const forAlice = await api.open("Open the upstream stream for alice (what a bridge with UPSTREAM_TO=alice does)")
    expect([plain.status, plain.headers["content-type"]]).toEqual([200, "text/event-stream"])
    await plain.waitFor((c) => ticks(c).length >= 2, 5_000, "2 ticks")
    await forAlice.waitFor((c) => ticks(c).length >= 2, 5_000, "2 ticks for alice")
    expect(plain.text()).toMatch(/^retry: 1000\n\n/)
    expect(ticks(plain).slice(0, 2).map((t) => t.data)).toEqual([{ n: 1, at: expect.any(Number) }, { n: 2, at: expect.any(Number) }])
    expect(ticks(forAlice).slice(0, 2).map((t) => t.data)).toEqual([
      { n: 1, at: expect.any(Number), userId: "alice" },
      { n: 2, at: expect.any(Number), userId: "alice" }
    ])
    const ids = [...ticks(plain), ...ticks(forAlice)].map((t) => t.id).sort((a, b) => a - b)
    expect(new Set(ids).size).toBe(ids.length)

    // a reconnect with Last-Event-ID continues the numbering after it
    const resumed = await api.open("Open the upstream stream (what a bridge does)", { headers: { "last-event-id": "100000" } })
    await resumed.waitFor((c) => ticks(c).length >= 1, 5_000, "a tick after the resume")
    expect(ticks(resumed)[0]!.id).toBeGreaterThan(100000)

    const bridge = await startExample("examples/express/bridge-basic.cjs", { env: { UPSTREAM_URL: `${source.url}/stream` } })
    await until(() => (source.output().match(/stream opened/g) ?? []).length === 4, 5_000, "the bridge's upstream stream")
    const alice = await connect(`${bridge.url}/sse?userId=alice`)
    const bob = await connect(`${bridge.url}/sse?userId=bob`)
    for (const c of [alice, bob]) {
      await opened(c)
      await c.waitFor((x) => events(x).filter(([e]) => e === "tick").length >= 2, 5_000, "ticks through the bridge")
    }
    expect(events(alice).find(([e]) => e === "tick")).toEqual(["tick", stamped({ n: expect.any(Number), at: expect.any(Number) })])

    const emitted = await api.send("Emit a message to every stream")
    expect([emitted.status, emitted.json()]).toEqual([200, { streams: 4 }])
    for (const c of [alice, bob]) {
      await c.waitFor((x) => events(x).some(([e]) => e === "message"), 5_000, "the emitted message through the bridge")
      expect(events(c).filter(([e]) => e === "message")).toEqual([["message", stamped({ text: "hello from upstream" })]])
    }
    await forAlice.waitFor((c) => c.messages().some((m) => m.event === undefined), 5_000, "the emitted message")
    expect(JSON.parse(forAlice.messages().find((m) => m.event === undefined)!.data)).toEqual({ text: "hello from upstream", userId: "alice" })
    expect(api.unused()).toEqual([])
    for (const c of [plain, forAlice, resumed, alice, bob]) c.close()
    expect(await Promise.all([bridge.stop(), source.stop()])).toEqual([{ code: 0, signal: null }, { code: 0, signal: null }])
  })
})

describe("cross-server via HTTP callback", () => {
  it("A → B → callback → A delivers to the user; B refuses untrusted callbacks, A refuses unsigned ones", async () => {
    const portA = await freePort()
    const urlA = `http://127.0.0.1:${portA}`
    const b = await startExample("examples/express/cross-callback-b.cjs", {
      env: { CALLBACK_ALLOWLIST: urlA, PROCESS_DELAY_MS: "50", CALLBACK_TOKEN: "t0ken" }
    })
    const a = await startExample("examples/express/cross-callback-a.cjs", {
      port: portA,
      env: { B_URL: b.url, PUBLIC_URL: urlA, CALLBACK_TOKEN: "t0ken" }
    })
    const api = loadApi("examples/express/cross-callback.api.http", { a: a.url, b: b.url })

    const alice = await api.open("A: open an SSE connection as alice")
    await opened(alice)

    const started = await api.send("A: start a job for alice (A -> B -> HTTP callback -> A -> alice)")
    expect(started.status).toBe(200)
    const { cid } = started.json()
    expect(started.json()).toEqual({ accepted: true, cid: expect.stringMatching(/^cid_[0-9a-f-]{36}$/) })
    await waitEvents(alice, 1, "the job result")
    expect(events(alice)).toEqual([
      ["job:done", stamped({ cid, ok: true, echo: { msg: "work please" }, at: expect.any(Number) })]
    ])

    const direct = await api.send("B: process a job directly (B calls A back)")
    expect([direct.status, direct.json()]).toEqual([200, { processing: true, cid: "cid_direct" }])
    await waitEvents(alice, 2, "the direct job's result")
    expect(events(alice)[1]).toEqual(
      ["job:done", stamped({ cid: "cid_direct", ok: true, echo: { msg: "straight to B" }, at: expect.any(Number) })]
    )

    const evil = await api.send("B: a callback to an origin B does not trust (refused)")
    expect([evil.status, evil.json()]).toEqual([400, { error: "callback origin not allowed" }])
    const forged = await api.send("A: fanout without the callback token (refused)")
    expect([forged.status, forged.json()]).toEqual([401, { error: "bad callback token" }])
    expect(events(alice)).toHaveLength(2)
    expect(b.output()).toMatch(new RegExp(`\\[B\\] ${cid}: callback answered 200`))
    expect(api.unused()).toEqual([])
    alice.close()
    expect(await Promise.all([a.stop(), b.stop()])).toEqual([{ code: 0, signal: null }, { code: 0, signal: null }])
  })
})

describe("multi-tenant", () => {
  it("keeps each tenant's users, broadcasts and rooms apart; unknown tenants get 404", async () => {
    const example = await startExample("examples/express/multitenant.cjs")
    const api = loadApi("examples/express/multitenant.api.http", { host: example.url })

    const t1 = await api.open("t1: open an SSE connection as alice")
    const t2 = await api.open("t2: open an SSE connection as alice")
    await opened(t1)
    await opened(t2)

    expect((await api.send("t1: notify alice (t2's alice gets nothing)")).json()).toEqual({ delivered: 1 })
    expect((await api.send("t2: notify alice")).json()).toEqual({ delivered: 1 })
    expect((await api.send("t1: broadcast (t1 only)")).json()).toEqual({ ok: true })
    expect((await api.send("t2: broadcast (t2 only)")).json()).toEqual({ ok: true })
    expect((await api.send("t2: send to room global (this instance)")).json()).toEqual({ delivered: 1 })
    expect((await api.send("t1: publish to room global (t1 on every instance)")).json()).toEqual({ ok: true })

    await waitEvents(t1, 3)
    await waitEvents(t2, 3)
    expect(events(t1)).toEqual([
      ["notify", stamped({ msg: "hi alice from t1" })],
      ["broadcast", stamped({ msg: "broadcast from t1" })],
      ["room", stamped({ msg: "published room message in t1" })]
    ])
    expect(events(t2)).toEqual([
      ["notify", stamped({ msg: "hi alice from t2" })],
      ["broadcast", stamped({ msg: "broadcast from t2" })],
      ["room", stamped({ msg: "room message from t2" })]
    ])

    expect((await api.send("t1: stats")).json()).toMatchObject({ connections: 1, users: 1, rooms: 1 })
    const unknown = await api.send("An unknown tenant (404)")
    expect([unknown.status, unknown.json()]).toEqual([404, { error: "unknown tenant t3" }])

    expect((await api.send("t1: close alice's connections")).json()).toEqual({ closed: true })
    await t1.ended()
    expect(t2.isEnded()).toBe(false)
    expect(api.unused()).toEqual([])
    t2.close()
    expect(await example.stop()).toEqual({ code: 0, signal: null })
  })
})

describe("user connection stats", () => {
  it("counts connections per user, lists their ids, sends only to online users", async () => {
    const example = await startExample("examples/user-connection-stats.cjs", { env: { STATS_LOG_MS: "0" } })
    const api = loadApi("examples/user-connection-stats.api.http", { host: example.url })

    const alice1 = await api.open("Open an SSE connection as alice")
    const alice2 = await api.open("Open a second SSE connection as alice")
    const bob = await api.open("Open an SSE connection as bob")
    for (const c of [alice1, alice2, bob]) await opened(c)

    expect((await api.send("alice's connection count")).json())
      .toEqual({ userId: "alice", connectionCount: 2, isOnline: true })
    const details = (await api.send("alice's connection details (ids)")).json()
    expect(details).toEqual({ userId: "alice", connectionCount: 2, connectionIds: [expect.any(String), expect.any(String)], isOnline: true })
    expect(new Set(details.connectionIds).size).toBe(2)
    const all = (await api.send("Every user's connections")).json()
    expect(all).toEqual({
      globalStats: { totalConnections: 3, totalUsers: 2, totalRooms: 1 },
      userStats: { alice: 2, bob: 1 },
      onlineUsers: ["alice", "bob"]
    })

    expect((await api.send("Send a message to alice (every connection of hers)")).json()).toEqual({
      success: true,
      userId: "alice",
      message: "Hello Alice!",
      connectionCount: 2,
      sentToConnections: 2
    })
    const offline = await api.send("Send a message to carol (offline: 404)")
    expect([offline.status, offline.json()]).toEqual([404, { error: "user offline", userId: "carol", connectionCount: 0 }])
    expect((await api.send("Send to several users (only the online ones get it)")).json()).toEqual({
      success: true,
      message: "Hello everyone!",
      results: [
        { userId: "alice", connectionCount: 2, isOnline: true, sentCount: 2 },
        { userId: "bob", connectionCount: 1, isOnline: true, sentCount: 1 },
        { userId: "carol", connectionCount: 0, isOnline: false, sentCount: 0 }
      ],
      totalOnlineUsers: 2
    })
    for (const c of [alice1, alice2]) {
      await waitEvents(c, 2)
      expect(events(c)).toEqual([
        ["message", stamped({ type: "message", content: "Hello Alice!" })],
        ["message", stamped({ type: "broadcast", content: "Hello everyone!" })]
      ])
    }
    await waitEvents(bob, 1)
    expect(events(bob)).toEqual([["message", stamped({ type: "broadcast", content: "Hello everyone!" })]])

    // one of alice's connections leaves: the other id remains
    alice1.close()
    await until(() => /disconnect +alice \S+: 1 connection\(s\) left/.test(example.output()), 5_000, "the disconnect log line")
    const after = (await api.send("alice's connection details (ids)")).json()
    expect(after.connectionCount).toBe(1)
    expect(details.connectionIds).toContain(after.connectionIds[0])
    expect(example.output()).toMatch(/connect +alice \S+: 2 connection\(s\), 1 user\(s\) online/)
    expect(api.unused()).toEqual([])
    alice2.close()
    bob.close()
    expect(await example.stop()).toEqual({ code: 0, signal: null })
  })
})

describe("AI chat (postAndListen)", () => {
  it("answers the POST at once, streams progress chunks and done under the requestId, reports errors, replays after Last-Event-ID", async () => {
    const example = await startExample("examples/express/ai-chat.cjs", {
      env: { CHAT_CHUNK_MS: "5", SSE_KEEPALIVE_MS: "100" }
    })
    const api = loadApi("examples/express/ai-chat.api.http", { host: example.url })
    const notify = (c: Awaited<ReturnType<typeof api.open>>) =>
      c.messages().filter((m) => m.event === "notify").map((m) => ({ id: m.id, data: JSON.parse(m.data) }))

    const page = await api.send("Chat page")
    expect(page.status).toBe(200)
    expect(page.body).toContain("postAndListen('/api/chat'")
    const anonymous = await api.send("SSE without a userId (400)")
    expect([anonymous.status, anonymous.json()]).toEqual([400, { error: "userId required" }])

    const alice = await api.open("Open an SSE connection as alice")
    await opened(alice)

    const ask = await api.send("Ask (answers at once, then streams progress and done)")
    expect([ask.status, ask.json()]).toEqual([200, { requestId: "req-1", status: "processing" }])
    await alice.waitFor((c) => notify(c).some((f) => f.data.phase === "done"), 5_000, "phase done")
    const question = "Tell me about SSE"
    const parts = Array.from({ length: 10 }, (_, i) => `Part ${i + 1} of the answer to "${question}". `)
    const first = notify(alice)
    expect(first.map((f) => f.data)).toEqual([
      ...parts.map((content, i) =>
        stamped({ requestId: "req-1", phase: "progress", type: "chat", payload: { content, percent: (i + 1) * 10 }, seq: i })
      ),
      stamped({ requestId: "req-1", phase: "done", payload: { content: parts.join(""), totalChunks: 10 }, seq: 10 })
    ])
    // every frame has its own id (frameIdPolicy), for Last-Event-ID replay
    expect(first.every((f) => typeof f.id === "string" && f.id !== "")).toBe(true)
    expect(new Set(first.map((f) => f.id)).size).toBe(first.length)

    const failing = await api.send("Ask, failing midway (phase: error)")
    expect(failing.json()).toEqual({ requestId: "req-2", status: "processing" })
    await alice.waitFor((c) => notify(c).some((f) => f.data.phase === "error"), 5_000, "phase error")
    expect(notify(alice).slice(11).map((f) => f.data)).toEqual([
      stamped({ requestId: "req-2", phase: "progress", type: "chat", payload: { content: parts[0], percent: 10 }, seq: 0 }),
      stamped({ requestId: "req-2", phase: "progress", type: "chat", payload: { content: parts[1], percent: 20 }, seq: 1 }),
      stamped({ requestId: "req-2", phase: "error", error: { code: "AI_ERROR", message: "the model went away (simulated)" }, seq: 2 })
    ])

    const noId = await api.send("Ask without a requestId (400)")
    expect([noId.status, noId.json()]).toEqual([400, { error: "requestId required" }])
    const noUser = await api.send("Ask without a user (401)")
    expect(noUser.status).toBe(401)

    // heartbeats are visible to the page as `ping` events (keepAliveEvent)
    await alice.waitFor((c) => c.messages().some((m) => m.event === "ping"), 5_000, "a ping event")

    // a page that reconnects after the 4th frame gets exactly what it missed
    const all = notify(alice)
    const back = await api.open("Open an SSE connection as alice", { headers: { "last-event-id": all[3]!.id! } })
    await back.waitFor((c) => notify(c).length >= all.length - 4, 5_000, "the replay")
    expect(notify(back)).toEqual(all.slice(4))
    expect(api.unused()).toEqual([])
    alice.close()
    back.close()
    expect(await example.stop()).toEqual({ code: 0, signal: null })
  })
})
