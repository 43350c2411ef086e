/**
 * Heartbeats, stopAccepting, shutdown and bad input, over real sockets.
 */
import { spawn } from "node:child_process"
import * as path from "node:path"
import { afterEach, describe, expect, it, vi } from "vitest"
import { SSEKify, type SSEKifyOptions } from "../src/index.js"
import { connect, type RawClient, request, startServer, type TestServer } from "./support/sse.js"

let cleanup: Array<() => Promise<void> | void> = []
afterEach(async () => {
  for (const f of cleanup.reverse()) await f()
  cleanup = []
})

const setup = async (options?: SSEKifyOptions, register?: (sse: SSEKify, res: import("node:http").ServerResponse, url: URL) => void) => {
  const sse = new SSEKify(options)
  const server: TestServer = await startServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://x")
    if (register) return register(sse, res, url)
    sse.registerConnection(url.searchParams.get("u") ?? "guest", res)
  })
  cleanup.push(() => server.close(), () => sse.shutdown({ announce: false, graceMs: 0 }))
  const open = async (q = "?u=guest") => {
    const c = await connect(server.url + "/" + q)
    cleanup.push(() => c.close())
    return c
  }
  return { sse, server, open }
}

/** Intervals started and not cleared since `watchIntervals()` (a spy on the global functions). */
const watchIntervals = () => {
  const live = new Set<unknown>()
  const set = vi.spyOn(globalThis, "setInterval")
  const clear = vi.spyOn(globalThis, "clearInterval")
  set.mockImplementation(((fn: () => void, ms?: number) => {
    const t = setIntervalOriginal(fn, ms)
    live.add(t)
    return t
  }) as typeof setInterval)
  clear.mockImplementation(((t?: NodeJS.Timeout) => {
    live.delete(t)
    clearIntervalOriginal(t)
  }) as typeof clearInterval)
  cleanup.push(() => {
    set.mockRestore()
    clear.mockRestore()
  })
  return () => live.size
}
const setIntervalOriginal = globalThis.setInterval
const clearIntervalOriginal = globalThis.clearInterval

describe("heartbeat", () => {
  it("writes ': ping <ms>' comment lines every keepAliveMs", async () => {
    const { open } = await setup({ keepAliveMs: 40 })
    const c = await open()
    await c.waitFor((x) => (x.text().match(/^: ping \d+$/gm) ?? []).length >= 3, 5_000, "3 pings")
    expect(c.messages()).toEqual([])
  })

  it("uses one shared ticker per distinct interval, not a timer per connection", async () => {
    const { open, sse } = await setup({ keepAliveMs: 30_000 }, (sse, res, url) => {
      const ka = url.searchParams.get("ka")
      sse.registerConnection("u", res, ka ? { keepAliveMs: Number(ka) } : undefined)
    })
    const timers = watchIntervals()
    const clients: Array<RawClient> = []
    for (let i = 0; i < 20; i++) clients.push(await open())
    for (const c of clients) await c.waitFor((x) => x.text().includes("retry:"))
    expect(timers()).toBe(1)
    for (let i = 0; i < 10; i++) clients.push(await open("?ka=10000"))
    for (const c of clients) await c.waitFor((x) => x.text().includes("retry:"))
    expect(timers()).toBe(2)
    expect(sse.getUserConnectionCount("u")).toBe(30)
    sse.close()
    for (const c of clients) await c.ended()
    expect(timers()).toBe(0)
  })

  it("a per-connection keepAliveMs overrides the instance's", async () => {
    const { open } = await setup({ keepAliveMs: 60_000 }, (sse, res) => sse.registerConnection("u", res, { keepAliveMs: 30 }))
    const c = await open()
    await c.waitFor((x) => x.text().includes(": ping "), 5_000, "a ping")
  })

  it("keepAliveEvent also sends the heartbeat as a named event", async () => {
    const { open } = await setup({ keepAliveMs: 30, keepAliveEvent: "ping" })
    const c = await open()
    await c.waitFor((x) => x.messages().some((m) => m.event === "ping"), 5_000, "ping event")
    expect(c.text()).toMatch(/: ping \d+\n\nevent: ping\ndata: \d+\n\n/)
  })
})

describe("stopAccepting and shutdown", () => {
  it("stopAccepting answers 503 with Retry-After and keeps open connections", async () => {
    let handle: ReturnType<SSEKify["registerConnection"]> | undefined
    const { open, server, sse } = await setup({}, (sse, res) => {
      handle = sse.registerConnection("u", res)
    })
    const c = await open()
    await c.waitFor((x) => x.text().includes("retry:"))
    sse.stopAccepting()
    const refused = await request(server.url + "/")
    expect(refused.status).toBe(503)
    expect(refused.headers["retry-after"]).toBe("2")
    expect(handle).toMatchObject({ connId: "" })
    expect(handle!.join("x")).toBe(false)
    expect(sse.sendToUser("u", "still")).toBe(1)
    await c.waitFor((x) => x.messages().length === 1)
    expect(sse.stats()).toMatchObject({ connections: 1, accepting: false })
  })

  it("shutdown announces, waits graceMs, then ends every connection", async () => {
    const { open, sse } = await setup()
    const a = await open("?u=a")
    const b = await open("?u=b")
    await a.waitFor((x) => x.text().includes("retry:"))
    await b.waitFor((x) => x.text().includes("retry:"))
    const t0 = Date.now()
    const done = sse.shutdown({ graceMs: 300 })
    await a.waitFor((x) => x.messages().length === 1)
    const [announce] = a.messages()
    expect(announce!.event).toBe("server:shutdown")
    expect(JSON.parse(announce!.data)).toMatchObject({ code: "SHUTDOWN", at: expect.any(Number) })
    expect(a.isEnded()).toBe(false)
    await done
    expect(Date.now() - t0).toBeGreaterThanOrEqual(290)
    await a.ended()
    await b.ended()
    expect(sse.stats().connections).toBe(0)
    expect(sse.shutdown()).toBe(done)
  })

  it("shutdown with announce: false and a custom event name", async () => {
    const { open, sse } = await setup()
    const a = await open()
    await a.waitFor((x) => x.text().includes("retry:"))
    await sse.shutdown({ announce: false, graceMs: 0 })
    await a.ended()
    expect(a.messages()).toEqual([])
    const s2 = await setup()
    const b = await s2.open()
    await b.waitFor((x) => x.text().includes("retry:"))
    await s2.sse.shutdown({ event: "bye", graceMs: 10 })
    await b.ended()
    expect(b.messages()[0]!.event).toBe("bye")
  })

  it("after shutdown, new connections get 503 and publish rejects with ShuttingDown", async () => {
    const { server, sse } = await setup()
    await sse.shutdown({ graceMs: 0 })
    expect((await request(server.url + "/")).status).toBe(503)
    await expect(sse.publish({ a: 1 })).rejects.toMatchObject({ _tag: "ShuttingDown" })
  })

  it("the process exits by itself after shutdown (no timer or socket left)", async () => {
    const script = `
      import * as http from "node:http"
      import { SSEKify } from ${JSON.stringify(path.resolve("src/index.ts"))}
      const sse = new SSEKify({ keepAliveMs: 50, recentTTLMs: 1000 })
      const server = http.createServer((req, res) => sse.registerConnection("u", res, { rooms: ["r"] }))
      server.listen(0, "127.0.0.1", () => {
        const { port } = server.address()
        http.get({ host: "127.0.0.1", port, path: "/" }, (res) => {
          res.on("data", () => {})
          res.on("end", () => console.log("client-ended"))
          setTimeout(async () => {
            await sse.shutdown({ graceMs: 100 })
            server.close()
            console.log("shutdown-done")
          }, 120)
        })
      })
    `
    const child = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], {
      cwd: process.cwd(),
      stdio: ["ignore", "pipe", "pipe"]
    })
    let out = ""
    child.stdout.on("data", (d) => (out += d))
    child.stderr.on("data", (d) => (out += d))
    const t0 = Date.now()
    const code = await new Promise<number | null>((resolve, reject) => {
      const timer = setTimeout(() => {
        child.kill("SIGKILL")
        reject(new Error(`the process did not exit by itself: ${out}`))
      }, 15_000)
      child.on("exit", (c) => {
        clearTimeout(timer)
        resolve(c)
      })
    })
    expect(out).toContain("shutdown-done")
    expect(out).toContain("client-ended")
    expect(code).toBe(0)
    expect(Date.now() - t0).toBeLessThan(15_000)
  })
})

describe("bad input", () => {
  it("an invalid userId gets 400 and an 'error' event; others are unaffected", async () => {
    const { open, server, sse } = await setup({}, (sse, res, url) => {
      const u = url.searchParams.get("u")
      sse.registerConnection((u === "number" ? 42 : u ?? "") as string, res)
    })
    const errors: Array<Error & { code?: string; field?: string }> = []
    sse.on("error", (e) => errors.push(e as never))
    const good = await open("?u=alice")
    await good.waitFor((x) => x.text().includes("retry:"))
    expect((await request(server.url + "/?u=")).status).toBe(400)
    expect((await request(server.url + "/?u=number")).status).toBe(400)
    expect(errors.map((e) => [e.code, e.field])).toEqual([["INVALID_INPUT", "userId"], ["INVALID_INPUT", "userId"]])
    expect(sse.sendToUser("alice", "ok")).toBe(1)
    expect(sse.stats().connections).toBe(1)
  })

  it("invalid connection options get 400 and a clear error", async () => {
    const { server, sse } = await setup({}, (sse, res, url) => {
      const bad = url.searchParams.get("bad")
      const options = bad === "policy"
        ? { dropPolicy: "sometimes" }
        : bad === "items"
        ? { maxQueueItems: -1 }
        : bad === "bytes"
        ? { maxQueueBytes: "lots" }
        : { rooms: ["ok", 7] }
      sse.registerConnection("u", res, options as never)
    })
    const errors: Array<Error & { field?: string }> = []
    sse.on("error", (e) => errors.push(e as never))
    for (const bad of ["policy", "items", "bytes", "rooms"]) {
      expect((await request(`${server.url}/?bad=${bad}`)).status).toBe(400)
    }
    expect(errors.map((e) => e.field)).toEqual(["options.dropPolicy", "options.maxQueueItems", "options.maxQueueBytes", "options.rooms"])
    expect(errors[0]!.message).toContain("'sometimes'")
    expect(sse.stats().connections).toBe(0)
  })

  it("a value that is not a response throws; an ended response is refused", async () => {
    const { server, sse } = await setup({}, (sse, res) => {
      res.end("done")
      sse.registerConnection("u", res)
    })
    const errors: Array<Error & { field?: string }> = []
    sse.on("error", (e) => errors.push(e as never))
    expect(() => sse.registerConnection("u", {} as never)).toThrow(/invalid_input: res/)
    expect((await request(server.url)).body).toBe("done")
    expect(errors.map((e) => e.field)).toEqual(["res"])
    expect(sse.stats().connections).toBe(0)
  })

  it("non-string rooms, events and ids are rejected with a clear error; numeric ids are accepted", async () => {
    const { open, sse } = await setup({ autoFields: { timestamp: false } })
    const c = await open("?u=u")
    await c.waitFor((x) => x.text().includes("retry:"))
    const errors: Array<Error & { field?: string }> = []
    sse.on("error", (e) => errors.push(e as never))
    expect(sse.sendToRoom(5 as never, "x")).toBe(0)
    expect(sse.sendToUser("u", "x", { event: {} as never })).toBe(0)
    expect(sse.sendToUser("u", "x", { id: { a: 1 } as never })).toBe(0)
    expect(sse.sendToUser(undefined as never, "x")).toBe(0)
    expect(errors.map((e) => e.field)).toEqual(["room", "opts.event", "opts.id", "userId"])
    expect(sse.sendToUser("u", "x", { id: 7 as never })).toBe(1)
    await c.waitFor((x) => x.messages().length === 1)
    expect(c.messages()[0]!.id).toBe("7")
  })

  it("invalid instance options throw InvalidInput", () => {
    expect(() => new SSEKify({ keepAliveMs: -1 })).toThrow(/keepAliveMs must be >= 0/)
    expect(() => new SSEKify({ recentBufferSize: "20" as never })).toThrow(/recentBufferSize must be a finite number/)
    expect(() => new SSEKify({ redis: 42 as never })).toThrow(/redis must be a Redis URL or an adapter/)
    expect(() => new SSEKify({ seq: { startAt: 2 as never } })).toThrow(/seq.startAt/)
    let error: unknown
    try {
      new SSEKify({ maxPayloadBytes: Number.NaN })
    } catch (e) {
      error = e
    }
    expect(error).toMatchObject({ _tag: "InvalidInput", code: "INVALID_INPUT", field: "maxPayloadBytes" })
  })
})
