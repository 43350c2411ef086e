/**
 * Every code block of README.md and README.zh-CN.md is checked: `ts` blocks are
 * type-checked against the package's own types (strict); `js` blocks are parsed by Node
 * and type-checked with `checkJs` (so a renamed method or option fails here); `html`
 * blocks' scripts are parsed; `sh` blocks only name scripts that exist.
 */
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, describe, expect, it } from "vitest"

const root = path.resolve(__dirname, "..")
const readmes = ["README.md", "README.zh-CN.md"].filter((f) => fs.existsSync(path.join(root, f)))

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
    "./platform": "./src/HttpSse.ts"
  }
}))
fs.writeFileSync(path.join(dir, "globals.d.ts"), PRELUDE)

describe("README code blocks", () => {
  it("found blocks to check", () => {
    expect(blocks.length).toBeGreaterThan(10)
  })

  it("ts blocks type-check (strict)", () => {
    const files = blocks.filter((b) => b.lang === "ts").map((b, i) => {
      const name = `block-${i}-${path.basename(b.file, ".md")}-L${b.line}.mts`
      fs.writeFileSync(path.join(dir, name), b.code + "\nexport {}\n")
      return name
    })
    expect(files.length).toBeGreaterThan(0)
    try {
      tsc(["globals.d.ts", ...files], ["--strict", "--allowImportingTsExtensions"])
    } catch (e) {
      throw new Error(`type errors in README ts blocks:\n${(e as { stdout?: string }).stdout ?? e}`)
    }
  })

  it("js blocks parse and type-check (checkJs)", () => {
    const files = blocks.filter((b) => b.lang === "js").map((b, i) => {
      const name = `block-${i}-${path.basename(b.file, ".md")}-L${b.line}.cjs`
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
  })

  it("html blocks' scripts parse", () => {
    for (const b of blocks.filter((x) => x.lang === "html")) {
      for (const m of b.code.matchAll(/<script>([\s\S]*?)<\/script>/g)) {
        const name = path.join(dir, `html-${b.line}.js`)
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
