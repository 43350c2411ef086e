/**
 * The harness of the examples suites (not a test file):
 *
 * - {@link ensureBuilt}: the examples `require('ssekify')`, which resolves to `dist/`;
 *   builds it when it is missing or older than `src/`, without ever leaving `dist/`
 *   half-written (another suite's child process may be loading it).
 * - {@link startExample}: runs an example as a child process on a free loopback port and
 *   waits (bounded) for its one "listening on" line. {@link stopExamples} (in `afterAll`)
 *   stops every child; a process `exit` hook SIGKILLs whatever is left.
 * - {@link loadApi}: parses an example's `api.http` and runs its requests by title, so
 *   the file the README points users to is what the test drives; {@link Api.unused}
 *   lists the requests no test ran.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { freePort } from "../support/redisServer.js"
import { connect, type RawClient, request } from "../support/sse.js"

export const root = path.resolve(__dirname, "..", "..")
export { freePort }

// ---------------------------------------------------------------------------
// build
// ---------------------------------------------------------------------------

const newest = (dir: string): number => {
  let max = 0
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name)
    max = Math.max(max, entry.isDirectory() ? newest(p) : fs.statSync(p).mtimeMs)
  }
  return max
}

const stale = (): boolean => {
  const outputs = ["index.js", "index.cjs"].map((f) => path.join(root, "dist", f))
  if (!outputs.every((f) => fs.existsSync(f))) return true
  const built = Math.min(...outputs.map((f) => fs.statSync(f).mtimeMs))
  const inputs = Math.max(
    newest(path.join(root, "src")),
    ...["package.json", "tsup.config.ts"].map((f) => fs.statSync(path.join(root, f)).mtimeMs)
  )
  return inputs > built
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/**
 * Builds `dist/` when it is missing or older than its sources. tsup cleans its output
 * directory first, so it builds into a temporary directory and the files are then
 * renamed into `dist/` one by one (each rename is atomic) and leftovers removed: a
 * process starting meanwhile finds the old or the new build, never none. Suites in
 * parallel workers take a lock directory so one builds and the others wait (bounded).
 */
export const ensureBuilt = async (): Promise<void> => {
  if (!stale()) return
  const lock = path.join(os.tmpdir(), `ssekify-examples-build-${Buffer.from(root).toString("hex").slice(-24)}.lock`)
  const deadline = Date.now() + 180_000
  for (;;) {
    try {
      fs.mkdirSync(lock)
      break
    } catch {
      // held by another worker; a lock older than 3 minutes is from a dead one
      try {
        if (Date.now() - fs.statSync(lock).mtimeMs > 180_000) fs.rmSync(lock, { recursive: true, force: true })
      } catch {
        // gone meanwhile
      }
      if (Date.now() > deadline) throw new Error(`timed out waiting for the build lock ${lock}`)
      await sleep(200)
    }
  }
  try {
    if (!stale()) return
    fs.mkdirSync(path.join(root, ".vitest-tmp"), { recursive: true })
    const out = fs.mkdtempSync(path.join(root, ".vitest-tmp", "ssekify-build-"))
    try {
      execFileSync(process.execPath, [path.join(root, "node_modules", "tsup", "dist", "cli-default.js"), "--out-dir", out], {
        cwd: root,
        stdio: ["ignore", "pipe", "pipe"],
        timeout: 150_000
      })
      const dist = path.join(root, "dist")
      fs.mkdirSync(dist, { recursive: true })
      const fresh = new Set(fs.readdirSync(out))
      for (const file of fresh) {
        if (file.endsWith(".map")) {
          // source maps name their sources relative to where they were written
          const map = JSON.parse(fs.readFileSync(path.join(out, file), "utf8"))
          map.sources = map.sources.map((s: string) => path.relative(dist, path.resolve(out, s)).split(path.sep).join("/"))
          fs.writeFileSync(path.join(out, file), JSON.stringify(map))
        }
        fs.renameSync(path.join(out, file), path.join(dist, file))
      }
      for (const file of fs.readdirSync(dist)) {
        if (!fresh.has(file)) fs.rmSync(path.join(dist, file), { recursive: true, force: true })
      }
    } finally {
      fs.rmSync(out, { recursive: true, force: true })
    }
  } finally {
    fs.rmSync(lock, { recursive: true, force: true })
  }
}

// ---------------------------------------------------------------------------
// child processes
// ---------------------------------------------------------------------------

const live = new Set<ChildProcess>()

process.once("exit", () => {
  for (const child of live) {
    try {
      child.kill("SIGKILL")
    } catch {
      // already gone
    }
  }
})

export interface Exit {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
}

export interface RunningExample {
  readonly script: string
  readonly port: number
  /** `http://127.0.0.1:<port>` */
  readonly url: string
  readonly child: ChildProcess
  /** stdout and stderr so far. */
  output(): string
  /** Resolves when `pattern` appears in the output (bounded). */
  waitForOutput(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>
  /** Resolves when the process has exited (bounded; rejects on timeout). */
  exited(timeoutMs?: number): Promise<Exit>
  /** SIGTERM, then SIGKILL after `graceMs`; resolves once it is gone. */
  stop(graceMs?: number): Promise<Exit>
}

const waitExit = (child: ChildProcess, timeoutMs: number): Promise<Exit | undefined> =>
  child.exitCode !== null || child.signalCode !== null
    ? Promise.resolve({ code: child.exitCode, signal: child.signalCode })
    : new Promise((resolve) => {
      const timer = setTimeout(() => resolve(undefined), timeoutMs)
      child.once("exit", (code, signal) => {
        clearTimeout(timer)
        resolve({ code, signal })
      })
    })

/**
 * Starts `node <script>` (relative to `cwd`, default the repository root) with `PORT`
 * (free, unless given) and `HOST=127.0.0.1`, and waits for its "listening on http://…"
 * line.
 */
export const startExample = async (
  script: string,
  options: {
    readonly env?: Record<string, string>
    readonly port?: number
    readonly timeoutMs?: number
    readonly cwd?: string
  } = {}
): Promise<RunningExample> => {
  const cwd = options.cwd ?? root
  const port = options.port ?? await freePort()
  const env: Record<string, string | undefined> = {
    ...process.env,
    NODE_ENV: "development",
    SHUTDOWN_GRACE_MS: "200",
    ...options.env,
    // always the chosen port, on loopback only
    PORT: String(port),
    HOST: "127.0.0.1"
  }
  // the parent's Redis settings never leak into an example
  for (const key of ["REDIS_URL", "REDIS_CLUSTER_NODES", "REDIS_SENTINELS", "REDIS_SENTINEL_MASTER", "REDIS_PASSWORD"]) {
    if (options.env?.[key] === undefined) delete env[key]
  }
  const child = spawn(process.execPath, [path.join(cwd, script)], { cwd, env, stdio: ["ignore", "pipe", "pipe"] })
  live.add(child)
  child.once("exit", () => live.delete(child))
  let output = ""
  const waiters = new Set<() => void>()
  const append = (chunk: Buffer) => {
    output += chunk.toString("utf8")
    for (const w of Array.from(waiters)) w()
  }
  child.stdout!.on("data", append)
  child.stderr!.on("data", append)
  child.once("exit", () => {
    for (const w of Array.from(waiters)) w()
  })

  const waitForOutput = (pattern: RegExp, timeoutMs = 10_000) =>
    new Promise<RegExpMatchArray>((resolve, reject) => {
      const check = () => {
        const match = output.match(pattern)
        if (match) {
          done()
          resolve(match)
        } else if (child.exitCode !== null || child.signalCode !== null) {
          done()
          reject(new Error(`${script} exited (${child.exitCode ?? child.signalCode}) before printing ${pattern}:\n${output}`))
        }
      }
      const timer = setTimeout(() => {
        done()
        reject(new Error(`${script}: timed out after ${timeoutMs} ms waiting for ${pattern}; output:\n${output}`))
      }, timeoutMs)
      const done = () => {
        clearTimeout(timer)
        waiters.delete(check)
      }
      waiters.add(check)
      check()
    })

  const exited = async (timeoutMs = 10_000) => {
    const exit = await waitExit(child, timeoutMs)
    if (exit === undefined) throw new Error(`${script} did not exit within ${timeoutMs} ms; output:\n${output}`)
    return exit
  }

  const stop = async (graceMs = 3_000) => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM")
    const exit = await waitExit(child, graceMs)
    if (exit !== undefined) return exit
    child.kill("SIGKILL")
    return exited(5_000)
  }

  const example: RunningExample = {
    script,
    port,
    url: `http://127.0.0.1:${port}`,
    child,
    output: () => output,
    waitForOutput,
    exited,
    stop
  }
  try {
    await waitForOutput(/listening on http:\/\/\S+/, options.timeoutMs ?? 20_000)
  } catch (error) {
    child.kill("SIGKILL")
    throw error
  }
  return example
}

/** Stops every example still running (call it in `afterAll`). */
export const stopExamples = async (): Promise<void> => {
  await Promise.all(
    Array.from(live).map(async (child) => {
      child.kill("SIGTERM")
      if ((await waitExit(child, 3_000)) === undefined) {
        child.kill("SIGKILL")
        await waitExit(child, 5_000)
      }
    })
  )
}

// ---------------------------------------------------------------------------
// api.http
// ---------------------------------------------------------------------------

export interface HttpRequestSpec {
  /** The text after `###`. */
  readonly title: string
  readonly method: string
  /** With `{{variables}}` unresolved. */
  readonly url: string
  readonly headers: Readonly<Record<string, string>>
  readonly body: string | undefined
}

export interface HttpFile {
  readonly variables: Readonly<Record<string, string>>
  readonly requests: ReadonlyArray<HttpRequestSpec>
}

const METHODS = new Set(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])

/**
 * Parses the IDE HTTP-client format (JetBrains / VS Code REST Client): `@name = value`
 * variables, `###`-separated requests whose title is the rest of the `###` line, `#` or
 * `//` comments, the request line, headers, a blank line and the body. A block of
 * comments only is skipped, as the IDEs do. Throws on what an IDE would not run: a block
 * whose first line is not a request line, a duplicate title.
 */
export const parseHttpFile = (text: string): HttpFile => {
  const variables: Record<string, string> = {}
  const requests: Array<HttpRequestSpec> = []
  const blocks: Array<{ title: string; lines: Array<string> }> = []
  let current: { title: string; lines: Array<string> } | undefined
  for (const line of text.split(/\r?\n/)) {
    if (line.startsWith("###")) {
      current = { title: line.slice(3).trim(), lines: [] }
      blocks.push(current)
      continue
    }
    const variable = /^@([A-Za-z_][\w-]*)\s*=\s*(.*)$/.exec(line)
    if (variable) {
      variables[variable[1]!] = variable[2]!.trim()
      continue
    }
    current?.lines.push(line)
  }
  const titles = new Set<string>()
  for (const block of blocks) {
    const lines = block.lines.filter((l) => !/^\s*(#|\/\/)/.test(l))
    let i = 0
    while (i < lines.length && lines[i]!.trim() === "") i++
    if (i === lines.length) continue // comments only
    const requestLine = /^([A-Z]+)\s+(\S+)(?:\s+HTTP\/[\d.]+)?\s*$/.exec(lines[i] ?? "")
    if (block.title === "") throw new Error("api.http: a request without a title after ###")
    if (titles.has(block.title)) throw new Error(`api.http: duplicate title '${block.title}'`)
    titles.add(block.title)
    if (!requestLine || !METHODS.has(requestLine[1]!)) {
      throw new Error(`api.http: '${block.title}' has no request line (got ${JSON.stringify(lines[i] ?? "")})`)
    }
    i++
    const headers: Record<string, string> = {}
    for (; i < lines.length && lines[i]!.trim() !== ""; i++) {
      const header = /^([\w-]+):\s*(.*)$/.exec(lines[i]!)
      if (!header) throw new Error(`api.http: '${block.title}': bad header line ${JSON.stringify(lines[i])}`)
      headers[header[1]!.toLowerCase()] = header[2]!.trim()
    }
    const body = lines.slice(i).join("\n").trim()
    requests.push({
      title: block.title,
      method: requestLine[1]!,
      url: requestLine[2]!,
      headers,
      body: body === "" ? undefined : body
    })
  }
  return { variables, requests }
}

export interface HttpResult {
  readonly status: number
  readonly headers: Record<string, string | Array<string> | undefined>
  readonly body: string
  /** The body parsed as JSON (throws when it is not JSON). */
  json(): any
}

export interface Api {
  readonly file: string
  readonly parsed: HttpFile
  /** The request titled `title`, variables resolved. */
  spec(title: string): HttpRequestSpec
  /** Runs a plain request. Extra headers (e.g. a token obtained earlier) are merged in. */
  send(title: string, extra?: { readonly headers?: Record<string, string> }): Promise<HttpResult>
  /** Opens a request whose `Accept` is `text/event-stream` as a raw SSE client. */
  open(title: string, extra?: { readonly headers?: Record<string, string> }): Promise<RawClient>
  /** Sets a variable (e.g. a token a previous response gave, as a user pastes it). */
  set(name: string, value: string): void
  /** Titles no test has run yet. */
  unused(): Array<string>
}

/**
 * Loads `examples/...api.http`; `vars` override the file's variables (e.g. `host` with
 * the example's real address). Every `{{name}}` must resolve.
 */
export const loadApi = (file: string, vars: Record<string, string>): Api => {
  const parsed = parseHttpFile(fs.readFileSync(path.join(root, file), "utf8"))
  const values: Record<string, string> = { ...parsed.variables, ...vars }
  const resolve = (text: string, title: string) =>
    text.replace(/\{\{\s*([\w$-]+)\s*\}\}/g, (_, name: string) => {
      const value = values[name]
      if (value === undefined) throw new Error(`${file}: '${title}' uses {{${name}}}, which is not defined`)
      return value
    })
  const ran = new Set<string>()
  const spec = (title: string): HttpRequestSpec => {
    const found = parsed.requests.find((r) => r.title === title)
    if (!found) {
      throw new Error(`${file} has no request titled '${title}' (it has: ${parsed.requests.map((r) => `'${r.title}'`).join(", ")})`)
    }
    ran.add(title)
    const headers: Record<string, string> = {}
    for (const [k, v] of Object.entries(found.headers)) headers[k] = resolve(v, title)
    return {
      ...found,
      url: resolve(found.url, title),
      headers,
      body: found.body === undefined ? undefined : resolve(found.body, title)
    }
  }
  return {
    file,
    parsed,
    spec,
    send: async (title, extra) => {
      const s = spec(title)
      if (s.headers["accept"] === "text/event-stream") throw new Error(`${file}: '${title}' is an SSE request: use open()`)
      const res = await request(s.url, {
        method: s.method,
        headers: { ...s.headers, ...extra?.headers },
        ...(s.body !== undefined ? { body: s.body } : {})
      })
      return { ...res, headers: res.headers as HttpResult["headers"], json: () => JSON.parse(res.body) }
    },
    open: async (title, extra) => {
      const s = spec(title)
      if (s.method !== "GET" || s.headers["accept"] !== "text/event-stream") {
        throw new Error(`${file}: '${title}' is not a GET with Accept: text/event-stream`)
      }
      return connect(s.url, { headers: { ...s.headers, ...extra?.headers } })
    },
    set: (name, value) => {
      values[name] = value
    },
    unused: () => parsed.requests.map((r) => r.title).filter((t) => !ran.has(t))
  }
}

// ---------------------------------------------------------------------------
// SSE helpers
// ---------------------------------------------------------------------------

/** `[event, data parsed as JSON]` of the message frames a client got (heartbeats excluded). */
export const events = (client: RawClient): Array<[string, any]> =>
  client.messages()
    .filter((m) => m.data !== "" || m.event !== undefined)
    .map((m) => [m.event ?? "message", parseJson(m.data)])

const parseJson = (text: string): unknown => {
  try {
    return JSON.parse(text)
  } catch {
    return text
  }
}

/** Waits until `client` has `n` message frames (bounded). */
export const waitEvents = (client: RawClient, n: number, what = `${n} events`, timeoutMs = 5_000) =>
  client.waitFor((c) => events(c).length >= n, timeoutMs, what)

/** Waits until the client has received the opening `retry:` frame: the server registered it. */
export const opened = (client: RawClient, timeoutMs = 5_000) =>
  client.waitFor((c) => /^retry: \d+$/m.test(c.text()), timeoutMs, "the retry: frame")
