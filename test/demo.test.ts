/**
 * `npm run demo` (examples/demo/server.ts) over HTTP: the page and its assets, sends to
 * a user, a room and everyone, the burst that overflows a queue, the "drop my
 * connection" route and the Last-Event-ID replay of what was sent meanwhile, and a busy
 * port that gives one clear line. The page itself is driven by test/browser/demo.test.ts.
 */
import { type ChildProcess, spawn } from "node:child_process"
import * as net from "node:net"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { freePort } from "./support/redisServer.js"
import { connect, type RawClient, request, until } from "./support/sse.js"

const root = path.resolve(__dirname, "..")

interface Demo {
  readonly child: ChildProcess
  output(): string
  exit: Promise<number | null>
}

const startDemo = (env: Record<string, string | undefined>): Demo => {
  const full: Record<string, string | undefined> = { ...process.env, HOST: "127.0.0.1", ...env }
  for (const [k, v] of Object.entries(env)) if (v === undefined) delete full[k]
  const child = spawn(process.execPath, ["--import", "tsx", "examples/demo/server.ts"], { cwd: root, env: full, stdio: ["ignore", "pipe", "pipe"] })
  let output = ""
  child.stdout!.on("data", (d) => (output += d))
  child.stderr!.on("data", (d) => (output += d))
  const exit = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)))
  return { child, output: () => output, exit }
}

const stopDemo = async (demo: Demo | undefined) => {
  if (demo === undefined || demo.child.exitCode !== null || demo.child.signalCode !== null) return
  demo.child.kill("SIGTERM")
  await demo.exit
}

const listenOn = (port: number): Promise<net.Server | undefined> =>
  new Promise((resolve) => {
    const server = net.createServer()
    server.once("error", () => resolve(undefined))
    server.listen(port, "127.0.0.1", () => resolve(server))
  })

const events = (c: RawClient, name: string) => c.messages().filter((m) => m.event === name)
const data = (c: RawClient, name: string) => events(c, name).map((m) => JSON.parse(m.data))

describe("demo over HTTP", () => {
  let demo: Demo
  let base = ""

  beforeAll(async () => {
    const port = await freePort()
    demo = startDemo({ PORT: String(port) })
    await until(() => demo.output().includes("listening on"), 20_000, "the demo's listening line")
    expect(demo.output().trim()).toBe(`ssekify demo: listening on http://127.0.0.1:${port}/  (open it in two tabs; Ctrl+C to stop)`)
    base = `http://127.0.0.1:${port}`
  }, 30_000)
  afterAll(() => stopDemo(demo))

  const send = async (body: Record<string, unknown>) => {
    const res = await request(`${base}/api/send`, { body })
    return { status: res.status, ...JSON.parse(res.body) }
  }

  it("serves the page, its script and styles", async () => {
    const page = await request(base + "/")
    expect([page.status, page.headers["content-type"]]).toEqual([200, "text/html; charset=utf-8"])
    expect(page.body).toContain('<script src="/app.js"></script>')
    const script = await request(base + "/app.js")
    expect([script.status, script.headers["content-type"]]).toEqual([200, "text/javascript; charset=utf-8"])
    expect(script.body).toContain("new EventSource(")
    expect((await request(base + "/style.css")).status).toBe(200)
    expect((await request(base + "/nope")).status).toBe(404)
    expect((await request(`${base}/sse?user=&room=lobby&tab=t`)).status).toBe(400)
    expect(await send({ scope: "nowhere" })).toEqual({ status: 400, error: "scope: user, room, all or burst" })
    expect(await send({ scope: "user", target: "a b" })).toMatchObject({ status: 400 })
  })

  it("user, room, everyone; a burst overflows the queue; drop + Last-Event-ID replays what was sent meanwhile", async () => {
    const carol = await connect(`${base}/sse?user=carol&room=lobby&tab=c1`)
    const dave = await connect(`${base}/sse?user=dave&room=support&tab=d1`)
    await carol.waitFor((c) => events(c, "hello").length === 1, 5_000, "carol's hello")
    expect(data(carol, "hello")[0]).toMatchObject({ lastEventId: null, replayed: 0 })

    expect(await send({ scope: "user", target: "carol", text: "to carol", from: "dave" })).toMatchObject({ delivered: 1 })
    expect(await send({ scope: "room", target: "lobby", text: "to lobby", from: "dave" })).toMatchObject({ delivered: 1 })
    expect(await send({ scope: "all", text: "to all", from: "dave" })).toMatchObject({ delivered: 2 })
    await carol.waitFor((c) => events(c, "broadcast").length === 1, 5_000, "the broadcast")
    expect(carol.messages().filter((m) => ["user", "room", "broadcast"].includes(m.event!)).map((m) => [m.event, JSON.parse(m.data).text])).toEqual([
      ["user", "to carol"],
      ["room", "to lobby"],
      ["broadcast", "to all"]
    ])
    // every send has an id
    expect(carol.messages().filter((m) => m.event !== "hello").every((m) => /^\d+$/.test(m.id ?? ""))).toBe(true)

    const burst = await send({ scope: "burst", target: "carol", from: "dave" })
    expect(burst).toMatchObject({ frames: 500, delivered: 1 })
    await carol.waitFor((c) => c.messages().some((m) => m.id === burst.lastId), 10_000, "the last burst frame")
    const state = JSON.parse((await request(`${base}/api/state`)).body)
    const mine = state.users.find((u: { userId: string }) => u.userId === "carol").connections[0]
    expect(mine.drops).toBeGreaterThan(0)
    expect(events(carol, "burst").length + mine.drops).toBe(500)

    // drop carol's connection: the server ends the stream
    const dropped = JSON.parse((await request(`${base}/api/drop`, { body: { tab: "c1" } })).body)
    expect(dropped).toEqual({ closed: mine.connId, reconnectInMs: 3000 })
    await carol.ended()
    const last = carol.messages().at(-1)!.id!
    expect(last).toBe(burst.lastId)
    expect(await send({ scope: "user", target: "carol", text: "away 1", from: "dave" })).toMatchObject({ delivered: 0 })
    expect(await send({ scope: "user", target: "carol", text: "away 2", from: "dave" })).toMatchObject({ delivered: 0 })

    // what the browser does after `retry`: the same URL with Last-Event-ID
    const back = await connect(`${base}/sse?user=carol&room=lobby&tab=c1`, { headers: { "last-event-id": last } })
    await back.waitFor((c) => events(c, "hello").length === 1, 5_000, "the hello after the replay")
    const frames = back.messages().filter((m) => m.event !== undefined)
    const hello = frames.findIndex((m) => m.event === "hello")
    // the replayed frames come first, then the hello with the server's count
    expect(frames.slice(0, hello).map((m) => [m.event, JSON.parse(m.data).text])).toEqual([["user", "away 1"], ["user", "away 2"]])
    expect(JSON.parse(frames[hello]!.data)).toMatchObject({ lastEventId: last, replayed: 2 })
    expect(events(back, "gap")).toEqual([])

    expect((await request(`${base}/api/drop`, { body: { tab: "nobody" } })).status).toBe(404)
    back.close()
    dave.close()
  })
})

describe("demo on a busy port", () => {
  it("an explicit PORT in use: one clear line, exit code 1, no stack trace", async () => {
    const port = await freePort()
    const holder = (await listenOn(port))!
    try {
      const demo = startDemo({ PORT: String(port) })
      expect(await demo.exit).toBe(1)
      expect(demo.output()).toBe(
        `ssekify demo: port ${port} on 127.0.0.1 is already in use; set PORT to another port (PORT=0: any free port)\n`
      )
    } finally {
      await new Promise((r) => holder.close(r))
    }
  }, 30_000)

  it("a PORT that is not a port number: one clear line, exit code 1", async () => {
    const demo = startDemo({ PORT: "http" })
    expect(await demo.exit).toBe(1)
    expect(demo.output()).toBe(`ssekify demo: PORT must be a port number (0-65535), got "http"\n`)
  }, 30_000)

  it("the default port 3000 in use: it says so and listens on a free port", async () => {
    // 3000 is busy either way: held here, or by something else already
    const holder = await listenOn(3000)
    let demo: Demo | undefined
    try {
      demo = startDemo({ PORT: undefined })
      await until(() => demo!.output().includes("listening on"), 20_000, "the listening line")
      const lines = demo.output().trim().split("\n")
      expect(lines[0]).toBe("ssekify demo: port 3000 is busy, using a free port instead (set PORT to choose one)")
      const port = Number(lines[1]!.match(/^ssekify demo: listening on http:\/\/127\.0\.0\.1:(\d+)\//)![1])
      expect(port).not.toBe(3000)
      expect((await request(`http://127.0.0.1:${port}/api/state`)).status).toBe(200)
    } finally {
      await stopDemo(demo)
      if (holder !== undefined) await new Promise((r) => holder.close(r))
    }
  }, 30_000)
})
