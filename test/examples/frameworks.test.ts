/**
 * The framework examples (Express, Koa, Fastify, hapi, Egg) each run as a child process
 * on a free port; every request of their api.http is sent and what each SSE client
 * receives is checked frame by frame. Express also proves its deployment hooks:
 * readiness, the preStop route, and SIGTERM → shutdown announcement → clean exit.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { connect } from "../support/sse.js"
import { type Api, ensureBuilt, events, loadApi, opened, type RunningExample, startExample, stopExamples, waitEvents } from "./harness.js"

const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/
const eggLogs = fs.mkdtempSync(path.join(os.tmpdir(), "ssekify-egg-logs-"))

const frameworks = [
  { name: "express", script: "examples/express/index.cjs", api: "examples/express/api.http" },
  { name: "koa", script: "examples/koa/index.cjs", api: "examples/koa/api.http" },
  { name: "fastify", script: "examples/fastify/index.cjs", api: "examples/fastify/api.http" },
  { name: "hapi", script: "examples/hapi/index.cjs", api: "examples/hapi/api.http" },
  { name: "egg", script: "examples/egg/server.js", api: "examples/egg/api.http", env: { EGG_LOG_DIR: eggLogs } }
] as const

const running = new Map<string, RunningExample>()

beforeAll(async () => {
  await ensureBuilt()
  // start them side by side: Egg alone takes a few seconds
  const started = await Promise.all(
    frameworks.map((f) => startExample(f.script, { env: "env" in f ? f.env : {}, timeoutMs: 30_000 }))
  )
  frameworks.forEach((f, i) => running.set(f.name, started[i]!))
}, 90_000)

afterAll(async () => {
  await stopExamples()
  fs.rmSync(eggLogs, { recursive: true, force: true })
})

/** The data of a request's JSON body with the `timestamp` ssekify adds by default. */
const sent = (api: Api, title: string) => ({ ...JSON.parse(api.spec(title).body!), timestamp: expect.stringMatching(ISO) })

describe.each(frameworks)("$name example", ({ name, api: file }) => {
  it("serves every request of its api.http: user, broadcast, room, publish-room, stats, close", async () => {
    const example = running.get(name)!
    const api = loadApi(file, { host: example.url })

    const alice = await api.open("Open an SSE connection as alice")
    const bob = await api.open("Open an SSE connection as bob")
    for (const client of [alice, bob]) {
      expect(client.status).toBe(200)
      expect(client.headers["content-type"]).toMatch(/^text\/event-stream/)
      expect(client.headers["cache-control"]).toMatch(/no-cache/)
      await opened(client)
      expect(client.text()).toBe("retry: 2000\n\n")
    }

    const notify = await api.send("Notify alice")
    expect([notify.status, notify.json()]).toEqual([200, { delivered: 1 }])
    const broadcast = await api.send("Broadcast to everyone (publish: every instance)")
    expect([broadcast.status, broadcast.json()]).toEqual([200, { ok: true }])
    const room = await api.send("Send to room global (this instance)")
    expect([room.status, room.json()]).toEqual([200, { delivered: 2 }])
    const publishRoom = await api.send("Publish to room global (every instance)")
    expect([publishRoom.status, publishRoom.json()]).toEqual([200, { ok: true }])

    await waitEvents(alice, 4, "alice's 4 events")
    await waitEvents(bob, 3, "bob's 3 events")
    expect(events(alice)).toEqual([
      ["notify", sent(api, "Notify alice")],
      ["broadcast", sent(api, "Broadcast to everyone (publish: every instance)")],
      ["room", sent(api, "Send to room global (this instance)")],
      ["room", sent(api, "Publish to room global (every instance)")]
    ])
    expect(events(bob)).toEqual([
      ["broadcast", sent(api, "Broadcast to everyone (publish: every instance)")],
      ["room", sent(api, "Send to room global (this instance)")],
      ["room", sent(api, "Publish to room global (every instance)")]
    ])

    const stats = await api.send("Stats")
    expect(stats.status).toBe(200)
    expect(stats.json()).toMatchObject({ connections: 2, users: 2, rooms: 1, errorCount: 0, accepting: true })

    const close = await api.send("Close alice's connections")
    expect([close.status, close.json()]).toEqual([200, { closed: true }])
    await alice.ended()
    expect(bob.isEnded()).toBe(false)
    expect((await api.send("Stats")).json()).toMatchObject({ connections: 1, users: 1 })
    expect(events(bob)).toHaveLength(3)

    const home = await api.send("Home page")
    expect(home.status).toBe(200)
    expect(home.headers["content-type"]).toMatch(/^text\/html/)
    expect(home.body).toContain("new EventSource('/sse?userId=")

    if (name !== "express") {
      expect(api.unused()).toEqual([])
      bob.close()
      // SIGTERM: shutdown() leaves nothing behind, the process exits by itself
      expect(await example.stop()).toEqual({ code: 0, signal: null })
      return
    }

    // Express: what the Kubernetes manifest relies on
    const ready = await api.send("Readiness probe")
    expect([ready.status, ready.json()]).toEqual([200, { ready: true, connections: 1 }])
    const stop = await api.send("Stop accepting new connections (what the preStop hook calls)")
    expect([stop.status, stop.json()]).toEqual([200, { accepting: false }])
    const notReady = await api.send("Readiness probe")
    expect([notReady.status, notReady.json()]).toEqual([503, { ready: false, connections: 1 }])
    const refused = await connect(`${example.url}/sse?userId=carol`)
    expect(refused.status).toBe(503)
    expect(refused.headers["retry-after"]).toMatch(/^\d+$/)
    await refused.ended()
    expect(api.unused()).toEqual([])

    // SIGTERM: the open stream gets the announcement, then ends; nothing is left
    // behind, so the process exits by itself with code 0
    example.child.kill("SIGTERM")
    await bob.waitFor((c) => events(c).some(([e]) => e === "server:shutdown"), 5_000, "server:shutdown")
    expect(events(bob).at(-1)).toEqual(["server:shutdown", { code: "SHUTDOWN", at: expect.any(Number), timestamp: expect.stringMatching(ISO) }])
    await bob.ended()
    expect(await example.exited(5_000)).toEqual({ code: 0, signal: null })
    expect(example.output()).toMatch(/SIGTERM: shutting down/)
  })
})
