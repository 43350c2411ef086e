/**
 * `ssekify/client` as a package entry: built by tsup with the entry proposed for
 * `tsup.config.ts`, placed in a scratch `node_modules/ssekify` whose package.json has the
 * `exports["./client"]` proposed for the real one, then loaded with `require` and
 * `import`, and type-checked from ESM, CommonJS and DOM (browser) consumers.
 */
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { build } from "tsup"
import { afterAll, beforeAll, describe, expect, it } from "vitest"

const root = path.resolve(__dirname, "..")
let dir = ""
let pkg = ""

/** The `exports` entry proposed for package.json. */
const CLIENT_EXPORT = {
  import: { types: "./dist/client.d.ts", default: "./dist/client.js" },
  require: { types: "./dist/client.d.cts", default: "./dist/client.cjs" }
}

const run = (cmd: string, args: Array<string>): string => {
  try {
    return execFileSync(cmd, args, { cwd: dir, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], timeout: 120_000 })
  } catch (e) {
    const { stdout, stderr } = e as { stdout?: string; stderr?: string }
    throw new Error(`${cmd} ${args.join(" ")} failed:\n${stdout ?? ""}${stderr ?? ""}`)
  }
}

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "ssekify-client-"))
  pkg = path.join(dir, "node_modules", "ssekify")
  fs.mkdirSync(pkg, { recursive: true })
  // The options of tsup.config.ts, with the proposed entry `client: "src/client/index.ts"`.
  await build({
    config: false,
    silent: true,
    entry: { client: path.join(root, "src/client/index.ts") },
    format: ["esm", "cjs"],
    dts: true,
    sourcemap: false,
    clean: true,
    target: "node20",
    platform: "node",
    splitting: true,
    treeshake: true,
    shims: true,
    tsconfig: path.join(root, "tsconfig.json"),
    outDir: path.join(pkg, "dist")
  })
  fs.writeFileSync(path.join(pkg, "package.json"), JSON.stringify({
    name: "ssekify",
    version: "0.0.0-test",
    type: "module",
    exports: { "./client": CLIENT_EXPORT, "./package.json": "./package.json" }
  }))
  fs.writeFileSync(path.join(dir, "package.json"), JSON.stringify({ name: "consumer", private: true }))
  // The Node consumer's EventSource (types and runtime).
  fs.symlinkSync(path.join(root, "node_modules/eventsource"), path.join(dir, "node_modules/eventsource"), "dir")
}, 120_000)

afterAll(() => {
  if (dir) fs.rmSync(dir, { recursive: true, force: true })
})

describe("ssekify/client package entry", () => {
  it("emits ESM, CJS and both declaration files, with no Node import and no Effect", () => {
    const files = fs.readdirSync(path.join(pkg, "dist")).sort()
    expect(files).toEqual(["client.cjs", "client.d.cts", "client.d.ts", "client.js"])
    for (const file of ["client.js", "client.cjs"]) {
      const code = fs.readFileSync(path.join(pkg, "dist", file), "utf8")
      expect(code).not.toMatch(/require\(["'](node:)?(http|https|net|events|crypto|stream|url|fs)["']\)|from ["']node:/)
      expect(code).not.toMatch(/["']effect(\/[^"']*)?["']/)
    }
    const dts = fs.readFileSync(path.join(pkg, "dist", "client.d.ts"), "utf8")
    expect(dts).not.toMatch(/\bany\b/)
    expect(dts).not.toMatch(/NodeJS\.|from ["']node:/)
  })

  it("require('ssekify/client') and import('ssekify/client') give the same API", () => {
    const check = `
      const ids = []
      class FakeSource { constructor(url) { this.url = url; this.readyState = 0 } addEventListener() {} removeEventListener() {} close() {} }
      const client = new SSEClient({ url: 'http://127.0.0.1:1/sse', EventSource: FakeSource, autoConnect: false })
      let error = ''
      try { new SSEClient({ url: 'http://127.0.0.1:1/sse' }) } catch (e) { error = e instanceof SSEClientError ? e.code : String(e) }
      console.log(JSON.stringify({ cls: typeof SSEClient, state: client.state, error, keys: Object.keys(mod).sort() }))
      client.close()
    `
    const cjs = JSON.parse(run("node", ["-e", `const mod = require('ssekify/client'); const { SSEClient, SSEClientError } = mod; ${check}`]))
    const esm = JSON.parse(run("node", ["--input-type=module", "-e", `import * as mod from 'ssekify/client'; import { SSEClient, SSEClientError } from 'ssekify/client'; ${check}`]))
    expect(cjs).toEqual({ cls: "function", state: "idle", error: "NO_EVENTSOURCE", keys: ["SSEClient", "SSEClientError"] })
    expect(esm).toEqual(cjs)
  })

  it("type-checks ESM, CommonJS and browser (DOM) consumers", () => {
    const tsc = path.join(root, "node_modules/typescript/bin/tsc")
    const common = ["--noEmit", "--strict", "--exactOptionalPropertyTypes", "--skipLibCheck", "--module", "nodenext", "--moduleResolution", "nodenext"]
    const node = [...common, "--types", "node", "--typeRoots", path.join(root, "node_modules/@types")]
    fs.writeFileSync(path.join(dir, "esm.mts"), `
      import { EventSource } from "eventsource"
      import { SSEClient, SSEClientError, type ListenMessage, type SSEClientOptions, type SubscriptionEnd } from "ssekify/client"
      const options = { url: "http://127.0.0.1:3000/sse?userId=alice", eventName: "notify", expectedPingInterval: 15_000, token: "t", EventSource, fetch: globalThis.fetch } satisfies SSEClientOptions<Response>
      const sse = new SSEClient<Response>(options)
      const { requestId, response, unsubscribe, ended } = await sse.postAndListen<{ content: string }>(
        "http://127.0.0.1:3000/api/chat",
        { message: "hi" },
        (msg: ListenMessage<{ content: string }>, meta) => {
          const content: string | undefined = msg.payload?.content
          const phase: string | undefined = msg.phase
          console.log(content, phase, msg.error?.message, meta.id)
        },
        { timeoutMs: 5_000, signal: new AbortController().signal, onEnd: (end: SubscriptionEnd) => console.log(end.reason) }
      )
      const body: unknown = await response.json()
      const status: number = response.status
      unsubscribe()
      const end: SubscriptionEnd = await ended
      const off = sse.on("reconnect", (e) => console.log(e.reason, e.silentMs))
      off()
      sse.on("dropped", (e) => console.log(e.reason === "frame-id" || e.reason === "seq" || e.reason === "ended"))
      const err: unknown = null
      if (err instanceof SSEClientError && err.code === "POST_TIMEOUT") console.log(err.requestId)
      // @ts-expect-error the event name is checked
      sse.on("nope", () => {})
      // @ts-expect-error a timeout is a number
      void sse.postAndListen("/x", {}, () => {}, { timeoutMs: "5" })
      sse.close()
      export { requestId, body, status, end }
    `)
    fs.writeFileSync(path.join(dir, "cjs.cts"), `
      import { SSEClient, type SSEClientOptions } from "ssekify/client"
      import { EventSource } from "eventsource"
      const sse = new SSEClient({ url: "http://127.0.0.1:3000/sse", EventSource, onBroadcast: (m: unknown) => console.log(m) } satisfies SSEClientOptions)
      export = sse
    `)
    // A browser project: DOM lib, no Node types; the DOM's EventSource, fetch and Response fit.
    fs.writeFileSync(path.join(dir, "browser.mts"), `
      import { SSEClient } from "ssekify/client"
      const sse = new SSEClient<Response>({
        url: "/sse?userId=alice",
        eventName: "notify",
        token: localStorage.getItem("authToken"),
        EventSource: window.EventSource,
        fetch: window.fetch.bind(window),
        eventSourceInit: { withCredentials: true }
      })
      const r = await sse.postAndListen("/api/chat", { message: "hi" }, ({ phase, payload }) => console.log(phase, payload), {
        signal: new AbortController().signal
      })
      const blob: Blob = await r.response.blob()
      export { blob }
    `)
    run("node", [tsc, ...node, "esm.mts"])
    run("node", [tsc, ...node, "cjs.cts"])
    run("node", [tsc, ...common, "--lib", "es2022,dom", "browser.mts"])
  })
})
