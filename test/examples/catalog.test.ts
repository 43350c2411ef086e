/**
 * The examples' index stays true: examples/README.md lists every example and request
 * file and names only files that exist; every request file parses, defines what it
 * uses and is driven by a test here; examples load the package by name; the npm
 * scripts named in the README run the files they name.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { parseHttpFile, root } from "./harness.js"

const examples = path.join(root, "examples")
const readme = fs.readFileSync(path.join(examples, "README.md"), "utf8")
/** Not ours to index: documented on their own. */
const elsewhere = new Set(["demo", "effect"])

const walk = (dir: string): Array<string> =>
  fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name)
    if (e.isDirectory()) return e.name === "node_modules" || (dir === examples && elsewhere.has(e.name)) ? [] : walk(p)
    return [path.relative(examples, p).split(path.sep).join("/")]
  })
const files = walk(examples)

/** Programs a user runs (modules they share and Egg's app internals are not). */
const runnable = files.filter((f) =>
  (f.endsWith(".cjs") && !["express/upstream.cjs", "ensure-built.cjs"].includes(f)) || f === "egg/server.js"
)
const httpFiles = files.filter((f) => f.endsWith(".http"))
const testsDir = path.join(root, "test")
const tests = (fs.readdirSync(testsDir, { recursive: true }) as Array<string>).filter((f) => f.endsWith(".test.ts"))
  .map((f) => fs.readFileSync(path.join(testsDir, f), "utf8")).join("\n")

describe("examples/README.md", () => {
  it("lists every runnable example and every deploy file", () => {
    expect(runnable.length).toBeGreaterThanOrEqual(17)
    for (const f of [...runnable, "deploy/Dockerfile", "deploy/k8s-ssekify-express.yaml"]) {
      expect(readme, f).toContain(`\`${f}\``)
    }
  })

  it("names only files that exist", () => {
    const named = Array.from(readme.matchAll(/`([\w.-]+\/[\w./-]+\.(?:cjs|js|http|yaml)|deploy\/Dockerfile)`/g), (m) => m[1]!)
    expect(named.length).toBeGreaterThan(20)
    for (const f of named) expect(fs.existsSync(path.join(examples, f)), f).toBe(true)
  })
})

describe("request files", () => {
  it.each(httpFiles)("%s parses, defines every variable it uses, is in the README and is driven by a test", (file) => {
    const text = fs.readFileSync(path.join(examples, file), "utf8")
    const parsed = parseHttpFile(text)
    expect(parsed.requests.length).toBeGreaterThan(0)
    const used = new Set(Array.from(text.matchAll(/\{\{\s*([\w$-]+)\s*\}\}/g), (m) => m[1]!))
    for (const name of used) expect(parsed.variables, `{{${name}}}`).toHaveProperty(name)
    for (const r of parsed.requests) expect(r.url, r.title).toMatch(/^\{\{\w+\}\}\//)
    expect(readme).toContain(`\`${file}\``)
    // examples/auth belongs to test/auth.test.ts (another suite), which decides how to run it
    if (!file.startsWith("auth/")) expect(tests).toContain(`"examples/${file}"`)
  })
})

describe("example sources", () => {
  it.each([...runnable, "egg/app.js"])("%s loads the package by its name", (file) => {
    const source = fs.readFileSync(path.join(examples, file), "utf8")
    const required = Array.from(source.matchAll(/require\('([^']+)'\)/g), (m) => m[1]!)
    // what a user's app would write: no reaching into the build or the sources
    expect(required.filter((r) => /ssekify|dist|src/.test(r))).toEqual(
      source.includes("new SSEKify(") ? [file.startsWith("egg/") ? "./lib/ssekify" : "ssekify"] : []
    )
  })
})

describe("npm scripts", () => {
  const named = new Map(
    Array.from(readme.matchAll(/\| `([^`]+)`[^|]* \| `npm run ([\w:-]+)` \|/g), (m) => [m[2]!, m[1]!] as const)
  )
  const scripts: Record<string, string> = JSON.parse(fs.readFileSync(path.join(root, "package.json"), "utf8")).scripts ?? {}
  const added = Array.from(named.keys()).filter((s) => s in scripts)
  if (added.length === 0) {
    console.warn(`\n!!!!! examples: package.json has none of the ${named.size} dev:* scripts the README names yet; checking them is skipped. !!!!!\n`)
  }

  it.skipIf(added.length === 0)("every script the README names exists and runs its example (building first)", () => {
    expect(named.size).toBeGreaterThanOrEqual(17)
    for (const [script, file] of named) {
      const target = file === "egg/" ? "examples/egg/server.js" : `examples/${file.replace(/ \(.*$/, "")}`
      expect(scripts[script], script).toBe(`node -r ./examples/ensure-built.cjs ${target}`)
    }
  })
})
