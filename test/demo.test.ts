/**
 * `npm run demo` starts, serves its page and delivers what its buttons send.
 */
import { spawn } from "node:child_process"
import { afterAll, describe, expect, it } from "vitest"
import { connect, request, until } from "./support/sse.js"

const port = 31_000 + Math.floor(Math.random() * 1000)
const child = spawn(process.execPath, ["--import", "tsx", "examples/demo/server.ts"], {
  env: { ...process.env, PORT: String(port), HOST: "127.0.0.1" },
  stdio: ["ignore", "pipe", "pipe"]
})
let output = ""
child.stdout.on("data", (d) => (output += d))
child.stderr.on("data", (d) => (output += d))

afterAll(async () => {
  child.kill("SIGTERM")
  await new Promise((r) => child.once("exit", r))
})

describe("demo", () => {
  it("serves the page, streams events and sends to a user, a room and everyone", async () => {
    await until(() => output.includes("ssekify demo:"), 20_000, "demo start")
    const base = `http://127.0.0.1:${port}`
    const page = await request(base + "/")
    expect(page.status).toBe(200)
    expect(page.body).toContain("new EventSource")
    const alice = await connect(`${base}/sse?userId=alice&room=lobby`)
    const bob = await connect(`${base}/sse?userId=bob`)
    await until(() => alice.text().includes("retry:") && bob.text().includes("retry:"))
    expect(JSON.parse((await request(base + "/send/user/alice", { body: { text: "hi" } })).body)).toEqual({ delivered: 1 })
    expect(JSON.parse((await request(base + "/send/room/lobby", { body: { text: "room" } })).body)).toEqual({ delivered: 1 })
    expect(JSON.parse((await request(base + "/send/all", { body: { text: "all" } })).body)).toEqual({ delivered: 2 })
    await alice.waitFor((c) => c.messages().filter((m) => m.event !== "stats").length === 3)
    expect(alice.messages().filter((m) => m.event !== "stats").map((m) => [m.event, JSON.parse(m.data).text])).toEqual([
      ["notify", "hi"],
      ["room", "room"],
      ["broadcast", "all"]
    ])
    await bob.waitFor((c) => c.messages().some((m) => m.event === "stats"), 5_000, "live stats")
    const stats = JSON.parse(bob.messages().find((m) => m.event === "stats")!.data)
    expect(stats.connections).toBe(2)
    alice.close()
    bob.close()
  })
})
