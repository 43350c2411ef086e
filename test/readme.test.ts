/**
 * Every code block of README.md, README.zh-CN.md and docs/*.md is checked: `ts` blocks are
 * type-checked against the package's own types (strict); `js` blocks are parsed by Node
 * and type-checked with `checkJs` (so a renamed method or option fails here); `html`
 * blocks' scripts are parsed; `sh` blocks only name scripts that exist. The README's
 * Express quick start is run (against the built package) and talked to by a real client.
 * Relative links between the pages point at files that exist.
 */
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { spawn } from "node:child_process"
import { ensureBuilt, freePort, startExample } from "./examples/harness.js"
import { connect, request, until } from "./support/sse.js"

const root = path.resolve(__dirname, "..")
const docs = fs.existsSync(path.join(root, "docs"))
  ? fs.readdirSync(path.join(root, "docs")).filter((f) => f.endsWith(".md")).sort().map((f) => `docs/${f}`)
  : []
const readmes = ["README.md", "README.zh-CN.md", ...docs].filter((f) => fs.existsSync(path.join(root, f)))

interface Block {
  readonly file: string
  readonly line: number
  readonly lang: string
  readonly code: string
}

const blocksOf = (file: string): Array<Block> => {
  const text = fs.readFileSync(path.join(root, file), "utf8")
  const out: Array<Block> = []
  const re = /^```(\w*)\n([\s\S]*?)^```/gm
  let m: RegExpExecArray | null
  while ((m = re.exec(text)) !== null) {
    out.push({ file, line: text.slice(0, m.index).split("\n").length, lang: m[1]!, code: m[2]! })
  }
  return out
}

const blocks = readmes.flatMap(blocksOf)
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ssekify-readme-"))
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }))

/** Names that snippets use without defining them (the surrounding app). */
const PRELUDE = `
import type { SSEKify as SSEKifyClass } from "ssekify"
import type { Server } from "node:http"
declare global {
  var SSEKify: typeof SSEKifyClass
  var app: any
  var sse: SSEKifyClass
  var server: Server
  var es: EventSource
  var userId: string
  var requestId: string
  var REDIS_URL: string
  function refetchState(): void
  function currentTraceId(): string
  function updateUI(...args: Array<unknown>): void
  function showComplete(...args: Array<unknown>): void
  function showError(...args: Array<unknown>): void
}
export {}
`

const tsc = (files: Array<string>, extra: Array<string>) =>
  execFileSync(process.execPath, [
    path.join(root, "node_modules/typescript/bin/tsc"),
    "--noEmit",
    "--skipLibCheck",
    "--target", "es2022",
    "--module", "nodenext",
    "--moduleResolution", "nodenext",
    "--lib", "es2022,dom",
    "--types", "node",
    "--typeRoots", path.join(root, "node_modules/@types"),
    ...extra,
    ...files
  ], { cwd: dir, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] })

// Resolve `ssekify` (and its subpaths) to the sources, and the other packages from the repo.
fs.writeFileSync(path.join(dir, "package.json"), JSON.stringify({ name: "readme-check", type: "module" }))
fs.mkdirSync(path.join(dir, "node_modules"), { recursive: true })
for (const entry of fs.readdirSync(path.join(root, "node_modules"))) {
  if (entry === ".bin" || entry === "ssekify") continue
  fs.symlinkSync(path.join(root, "node_modules", entry), path.join(dir, "node_modules", entry))
}
fs.mkdirSync(path.join(dir, "node_modules/ssekify"))
fs.symlinkSync(path.join(root, "src"), path.join(dir, "node_modules/ssekify/src"))
fs.writeFileSync(path.join(dir, "node_modules/ssekify/package.json"), JSON.stringify({
  name: "ssekify",
  type: "module",
  exports: {
    ".": "./src/index.ts",
    "./client": "./src/client/index.ts",
    "./prometheus": "./src/prometheus.ts",
    "./platform": "./src/HttpSse.ts",
    "./redis": "./src/redis.ts"
  }
}))
fs.writeFileSync(path.join(dir, "globals.d.ts"), PRELUDE)

describe("README code blocks", () => {
  it("found blocks to check", () => {
    expect(blocks.length).toBeGreaterThan(10)
  })

  it("ts blocks type-check (strict)", () => {
    const files = blocks.filter((b) => b.lang === "ts").map((b, i) => {
      const name = `block-${i}-${b.file.replace(/[/.]/g, "_")}-L${b.line}.mts`
      fs.writeFileSync(path.join(dir, name), b.code + "\nexport {}\n")
      return name
    })
    expect(files.length).toBeGreaterThan(0)
    try {
      tsc(["globals.d.ts", ...files], ["--strict", "--allowImportingTsExtensions"])
    } catch (e) {
      throw new Error(`type errors in README ts blocks:\n${(e as { stdout?: string }).stdout ?? e}`)
    }
  }, 120_000) // one tsc run over every block: ~25 s alone, more under the full suite

  it("js blocks parse and type-check (checkJs)", () => {
    const files = blocks.filter((b) => b.lang === "js").map((b, i) => {
      const name = `block-${i}-${b.file.replace(/[/.]/g, "_")}-L${b.line}.cjs`
      // each snippet runs in its own async function scope (they may `await` and may
      // redeclare `sse`), CommonJS like the README's require() calls
      const code = `// @ts-check\n;(async () => {\n${b.code}\n})()\n`
      fs.writeFileSync(path.join(dir, name), code)
      execFileSync(process.execPath, ["--check", path.join(dir, name)], { stdio: "pipe" })
      return name
    })
    expect(files.length).toBeGreaterThan(0)
    try {
      tsc(["globals.d.ts", ...files], ["--allowJs", "--checkJs", "--noImplicitAny", "false", "--allowImportingTsExtensions"])
    } catch (e) {
      throw new Error(`type errors in README js blocks:\n${(e as { stdout?: string }).stdout ?? e}`)
    }
  }, 120_000)

  it("html blocks' scripts parse", () => {
    for (const b of blocks.filter((x) => x.lang === "html")) {
      for (const m of b.code.matchAll(/<script>([\s\S]*?)<\/script>/g)) {
        const name = path.join(dir, `html-${b.file.replace(/[/.]/g, "_")}-${b.line}.js`)
        fs.writeFileSync(name, m[1]!)
        execFileSync(process.execPath, ["--check", name], { stdio: "pipe" })
      }
    }
  })

  it("sh blocks only run npm scripts that exist", () => {
    const scripts = JSON.parse(fs.readFileSync(path.join(root, "package.json"), "utf8")).scripts as Record<string, string>
    for (const b of blocks.filter((x) => x.lang === "sh")) {
      for (const m of b.code.matchAll(/npm run ([\w:.-]+)/g)) {
        expect(scripts, `${b.file}:${b.line} runs npm run ${m[1]}`).toHaveProperty([m[1]!])
      }
    }
  })
})

describe("README and docs pages", () => {
  it("every page has its counterpart in the other language", () => {
    const pages = docs.filter((f) => !f.endsWith(".zh-CN.md"))
    expect(pages.length).toBeGreaterThan(10)
    for (const page of pages) expect(docs, `${page} has no Chinese page`).toContain(page.replace(/\.md$/, ".zh-CN.md"))
    for (const zh of docs.filter((f) => f.endsWith(".zh-CN.md"))) expect(docs).toContain(zh.replace(/\.zh-CN\.md$/, ".md"))
  })

  it("relative links point at files that exist", () => {
    const broken: Array<string> = []
    for (const file of readmes) {
      const text = fs.readFileSync(path.join(root, file), "utf8").replace(/^```[\s\S]*?^```/gm, "")
      for (const m of text.matchAll(/\]\(([^)\s]+)\)/g)) {
        const target = m[1]!.split("#")[0]!
        if (target === "" || /^[a-z]+:/i.test(target)) continue
        if (!fs.existsSync(path.join(root, path.dirname(file), target))) broken.push(`${file}: ${m[1]}`)
      }
    }
    expect(broken).toEqual([])
  })
})

/** The first `js` block after the heading `heading` of README.md. */
const quickStart = (heading: string): string => {
  const text = fs.readFileSync(path.join(root, "README.md"), "utf8")
  const at = text.indexOf(`\n## ${heading}\n`)
  expect(at, `README.md has a "## ${heading}" section`).toBeGreaterThan(0)
  const block = blocks.find((b) => b.file === "README.md" && b.lang === "js" && text.split("\n").slice(0, b.line).join("\n").length > at)
  expect(block).toBeDefined()
  return block!.code
}

describe("README Express quick start, run", () => {
  // `require('ssekify')` resolves to this repository's dist/ (built once by globalSetup)
  const qsDir = fs.mkdtempSync(path.join(os.tmpdir(), "ssekify-quickstart-"))
  afterAll(() => fs.rmSync(qsDir, { recursive: true, force: true }))

  it("logs its address, refuses a send without a body (400), logs skipped sends, and replays after Last-Event-ID", async () => {
    await ensureBuilt()
    fs.mkdirSync(path.join(qsDir, "node_modules"))
    fs.symlinkSync(root, path.join(qsDir, "node_modules/ssekify"))
    fs.symlinkSync(path.join(root, "node_modules/express"), path.join(qsDir, "node_modules/express"))
    fs.writeFileSync(path.join(qsDir, "quickstart.cjs"), quickStart("Quick start (Express)"))

    const app = await startExample("quickstart.cjs", { cwd: qsDir })
    try {
      expect(app.output()).toMatch(/listening on http:\/\/127\.0\.0\.1:\d+ \(SSE: \/sse\?userId=alice\)/)
      const alice = await connect(`${app.url}/sse?userId=alice`)
      await alice.waitFor((c) => c.text().includes("retry:"))

      // no body: a clear 400, nothing sent
      const empty = await request(`${app.url}/notify/alice`, { method: "POST" })
      expect(empty.status).toBe(400)
      expect(JSON.parse(empty.body)).toEqual({ error: "send a JSON body with Content-Type: application/json" })

      // a skipped send is logged by the 'error' listener
      const bad = await request(`${app.url}/notify/${"x".repeat(300)}`, { body: { hi: 0 } })
      expect(JSON.parse(bad.body)).toEqual({ delivered: 0 })
      await app.waitForOutput(/\[ssekify\] .*userId/, 5_000)

      // every frame has an id
      for (let i = 1; i <= 3; i++) {
        const sent = await request(`${app.url}/notify/alice`, { body: { hi: i } })
        expect(JSON.parse(sent.body)).toEqual({ delivered: 1 })
      }
      await alice.waitFor((c) => c.messages().length === 3)
      const frames = alice.messages()
      expect(frames.map((f) => f.event)).toEqual(["notify", "notify", "notify"])
      expect(frames.every((f) => typeof f.id === "string" && f.id.length > 0)).toBe(true)
      alice.close()

      // a reconnect that last saw the first frame gets the other two first
      const again = await connect(`${app.url}/sse?userId=alice`, { headers: { "last-event-id": frames[0]!.id! } })
      await again.waitFor((c) => c.messages().length === 2)
      expect(again.messages().map((f) => [f.id, JSON.parse(f.data).hi])).toEqual([[frames[1]!.id, 2], [frames[2]!.id, 3]])
      again.close()
      const broadcast = await request(`${app.url}/broadcast`, { method: "POST" })
      expect(broadcast.status).toBe(400)

      // a busy port: one clear line and exit code 1, no stack trace
      const busy = await startExample("quickstart.cjs", { cwd: qsDir, port: app.port }).then(
        () => undefined,
        (e: Error) => e.message
      )
      expect(busy).toMatch(/cannot listen on port \d+: .*EADDRINUSE.* \(set PORT\)/)
      expect(busy).not.toMatch(/\n\s+at /)
    } finally {
      await app.stop()
    }
  }, 60_000)
})

/** The first `ts` block after the heading `heading` of README.md. */
const tsQuickStart = (heading: string): string => {
  const text = fs.readFileSync(path.join(root, "README.md"), "utf8")
  const at = text.indexOf(`\n## ${heading}\n`)
  expect(at, `README.md has a "## ${heading}" section`).toBeGreaterThan(0)
  const block = blocks.find((b) => b.file === "README.md" && b.lang === "ts" && text.split("\n").slice(0, b.line).join("\n").length > at)
  expect(block).toBeDefined()
  return block!.code
}

describe("README Effect quick start, compiled with tsc --strict and run", () => {
  // `ssekify` (and `ssekify/platform`) resolve to this repository's dist/
  const qsDir = fs.mkdtempSync(path.join(os.tmpdir(), "ssekify-effect-quickstart-"))
  afterAll(() => fs.rmSync(qsDir, { recursive: true, force: true }))

  it("serves SSE and notify (400 without a JSON object); on SIGINT the client gets the shutdown event and the process exits 0", async () => {
    await ensureBuilt()
    fs.mkdirSync(path.join(qsDir, "node_modules"))
    fs.symlinkSync(root, path.join(qsDir, "node_modules/ssekify"))
    for (const dep of ["effect", "@effect"]) {
      fs.symlinkSync(path.join(root, "node_modules", dep), path.join(qsDir, "node_modules", dep))
    }
    fs.writeFileSync(path.join(qsDir, "package.json"), JSON.stringify({ name: "effect-quickstart", type: "module" }))
    const port = await freePort()
    const source = tsQuickStart("Quick start (Effect)")
    expect(source).toContain("{ port: 3000 }")
    fs.writeFileSync(path.join(qsDir, "main.ts"), source.replace("{ port: 3000 }", `{ port: ${port}, host: "127.0.0.1" }`))
    try {
      execFileSync(process.execPath, [
        path.join(root, "node_modules/typescript/bin/tsc"),
        "--strict", "--skipLibCheck", "--target", "es2022", "--module", "nodenext", "--moduleResolution", "nodenext",
        "--types", "node", "--typeRoots", path.join(root, "node_modules/@types"), "main.ts"
      ], { cwd: qsDir, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] })
    } catch (e) {
      throw new Error(`the Effect quick start does not compile:\n${(e as { stdout?: string }).stdout ?? e}`)
    }

    const child = spawn(process.execPath, ["main.js"], { cwd: qsDir, stdio: ["ignore", "pipe", "pipe"] })
    let output = ""
    child.stdout.on("data", (d: Buffer) => (output += d))
    child.stderr.on("data", (d: Buffer) => (output += d))
    const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)))
    try {
      await until(() => output.includes("Listening on"), 20_000, `the quick start to listen (output: ${output})`)
      const url = `http://127.0.0.1:${port}`
      const alice = await connect(`${url}/sse?userId=alice`)
      await alice.waitFor((c) => c.text().includes("retry:"))

      expect((await request(`${url}/notify/alice`, { body: { hi: 1 } })).status).toBe(204)
      await alice.waitFor((c) => c.messages().length === 1)
      expect(alice.messages()[0]!.event).toBe("notify")
      expect(JSON.parse(alice.messages()[0]!.data)).toMatchObject({ hi: 1 })
      expect((await request(`${url}/notify/alice`, { method: "POST" })).status).toBe(400)
      expect((await request(`${url}/notify/alice`, { body: [1] })).status).toBe(400)

      // Ctrl-C: the shutdown event, the stream ends, the process exits by itself with 0.
      // (Measured by hand: about 1.1 s after SIGINT with the 1 s grace; the bound here
      // only detects a hang.)
      child.kill("SIGINT")
      await alice.ended(15_000)
      expect(alice.messages().map((f) => f.event)).toEqual(["notify", "server:shutdown"])
      const code = await Promise.race([exited, new Promise<"hang">((r) => setTimeout(() => r("hang"), 15_000))])
      expect(code, output).toBe(0)
    } finally {
      if (child.exitCode === null) child.kill("SIGKILL")
    }
  }, 120_000)
})
