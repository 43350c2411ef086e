/**
 * The deployment files: the Kubernetes manifest parses and is consistent (probes,
 * preStop, grace periods, ingress timeouts against the heartbeat, ports and selectors),
 * and its preStop command really makes the app stop accepting; the Dockerfile's paths
 * exist and are not excluded from the context, and the runtime image's layout (the
 * files it copies, nothing else) runs the example it defaults to.
 */
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { parseAllDocuments } from "yaml"
import { connect, request } from "../support/sse.js"
import { ensureBuilt, loadApi, opened, root, startExample, stopExamples } from "./harness.js"

const manifestPath = path.join(root, "examples/deploy/k8s-ssekify-express.yaml")
const dockerfilePath = path.join(root, "examples/deploy/Dockerfile")

beforeAll(ensureBuilt, 180_000)
afterAll(stopExamples)

const docs = parseAllDocuments(fs.readFileSync(manifestPath, "utf8"))
const objects: Array<any> = docs.map((d) => d.toJS())
const byKind = (kind: string) => {
  const found = objects.filter((o) => o?.kind === kind)
  expect(found, kind).toHaveLength(1)
  return found[0]
}

describe("k8s-ssekify-express.yaml", () => {
  it("parses into a Deployment, a Service and an Ingress", () => {
    for (const doc of docs) expect(doc.errors).toEqual([])
    expect(objects.map((o) => o.kind).sort()).toEqual(["Deployment", "Ingress", "Service"])
  })

  const deployment = () => byKind("Deployment")
  const container = () => deployment().spec.template.spec.containers[0]
  const env = (): Record<string, string> =>
    Object.fromEntries(container().env.filter((e: any) => "value" in e).map((e: any) => [e.name, String(e.value)]))
  const namedPort = (name: string) => container().ports.find((p: any) => p.name === name)?.containerPort

  it("runs an example that exists, on the port it listens on", () => {
    const [node, script] = container().command
    expect(node).toBe("node")
    expect(fs.existsSync(path.join(root, script))).toBe(true)
    expect(namedPort("http")).toBe(Number(env().PORT))
    expect(deployment().spec.selector.matchLabels).toEqual(deployment().spec.template.metadata.labels)
  })

  it("has a readiness probe, a liveness probe and a preStop hook", () => {
    const c = container()
    expect(c.readinessProbe.httpGet).toEqual({ path: "/healthz", port: "http" })
    expect(c.livenessProbe.httpGet).toEqual({ path: "/livez", port: "http" })
    expect(c.lifecycle.preStop.exec.command[0]).toBe("node")
    expect(c.lifecycle.preStop.exec.command.join(" ")).toContain("/admin/stop-accepting")
  })

  it("gives the pod more time than preStop's drain plus the app's shutdown grace", () => {
    const { PRESTOP_SLEEP_SECONDS, SHUTDOWN_GRACE_MS } = env()
    const needed = Number(PRESTOP_SLEEP_SECONDS) + Number(SHUTDOWN_GRACE_MS) / 1000
    expect(needed).toBeGreaterThan(0)
    expect(deployment().spec.template.spec.terminationGracePeriodSeconds).toBeGreaterThan(needed)
    // a rolling update never takes a pod away before its replacement is ready
    expect(deployment().spec.strategy.rollingUpdate.maxUnavailable).toBe(0)
  })

  it("routes Service and Ingress to the container, with no proxy buffering and timeouts above the heartbeat", () => {
    const service = byKind("Service")
    expect(service.spec.selector).toEqual(deployment().spec.template.metadata.labels)
    expect(service.spec.ports[0].targetPort).toBe("http")
    const ingress = byKind("Ingress")
    const backend = ingress.spec.rules[0].http.paths[0].backend.service
    expect(backend).toEqual({ name: service.metadata.name, port: { name: service.spec.ports[0].name } })
    const a = ingress.metadata.annotations
    expect(a["nginx.ingress.kubernetes.io/proxy-buffering"]).toBe("off")
    const keepAliveSeconds = Number(env().SSE_KEEPALIVE_MS) / 1000
    expect(keepAliveSeconds).toBeGreaterThan(0)
    for (const key of ["proxy-read-timeout", "proxy-send-timeout"]) {
      expect(Number(a[`nginx.ingress.kubernetes.io/${key}`]), key).toBeGreaterThan(2 * keepAliveSeconds)
    }
  })

  it("its preStop command makes the running app stop accepting: readiness fails, new streams get 503, open ones stay", async () => {
    const c = container()
    const example = await startExample(c.command[1], {
      env: { ...env(), SHUTDOWN_GRACE_MS: "200" }
    })
    const api = loadApi("examples/deploy/api.http", { host: example.url })
    expect(api.spec("Readiness probe (200 while accepting, 503 while draining)").url).toBe(`${example.url}${c.readinessProbe.httpGet.path}`)
    expect(api.spec("Liveness probe").url).toBe(`${example.url}${c.livenessProbe.httpGet.path}`)
    const ready = await api.send("Readiness probe (200 while accepting, 503 while draining)")
    expect([ready.status, ready.json()]).toEqual([200, { ready: true, connections: 0 }])
    const live = await api.send("Liveness probe")
    expect([live.status, live.json()]).toEqual([200, { ok: true }])
    const open = await api.open("Open an SSE connection as alice")
    await opened(open)

    // what the kubelet runs in the container (no drain wait here)
    const [cmd, ...args] = c.lifecycle.preStop.exec.command
    const hook = spawn(cmd === "node" ? process.execPath : cmd, args, {
      env: { ...process.env, ...env(), PORT: String(example.port), PRESTOP_SLEEP_SECONDS: "0" },
      stdio: ["ignore", "pipe", "pipe"]
    })
    let hookOutput = ""
    hook.stdout.on("data", (d) => (hookOutput += d))
    hook.stderr.on("data", (d) => (hookOutput += d))
    const code = await new Promise<number | null>((resolve, reject) => {
      const timer = setTimeout(() => {
        hook.kill("SIGKILL")
        reject(new Error(`preStop did not finish within 10 s: ${hookOutput}`))
      }, 10_000)
      hook.once("exit", (c) => {
        clearTimeout(timer)
        resolve(c)
      })
    })
    expect(code, hookOutput).toBe(0)

    const notReady = await api.send("Readiness probe (200 while accepting, 503 while draining)")
    expect([notReady.status, notReady.json()]).toEqual([503, { ready: false, connections: 1 }])
    // the liveness probe still passes: draining is not dead
    expect((await api.send("Liveness probe")).status).toBe(200)
    const refused = await connect(`${example.url}/sse?userId=bob`)
    expect(refused.status).toBe(503)
    await refused.ended()
    expect(open.isEnded()).toBe(false)
    expect((await api.send("Stats")).json()).toMatchObject({ connections: 1, accepting: false })
    expect(api.unused()).toEqual([])
    open.close()
  })
})

// ---------------------------------------------------------------------------

interface Instruction {
  readonly op: string
  readonly args: string
}

/** Dockerfile instructions (comments dropped, `\` continuations joined). */
const instructions = (text: string): Array<Instruction> => {
  const out: Array<Instruction> = []
  let pending = ""
  for (const line of text.split(/\r?\n/)) {
    if (/^\s*#/.test(line)) continue
    pending += line.replace(/\\\s*$/, " ")
    if (/\\\s*$/.test(line)) continue
    const m = /^\s*(\w+)\s+(.*)$/.exec(pending)
    if (m) out.push({ op: m[1]!.toUpperCase(), args: m[2]!.trim() })
    pending = ""
  }
  return out
}

/** A .dockerignore pattern as a RegExp over context-relative paths. */
const ignoreRegExp = (pattern: string) =>
  new RegExp(
    "^" + pattern.replace(/[.+^${}()|[\]]/g, "\\$&").replace(/\*\*\//g, "(?:.*/)?").replace(/\*/g, "[^/]*") + "(?:/.*)?$"
  )

describe("Dockerfile", () => {
  const steps = instructions(fs.readFileSync(dockerfilePath, "utf8"))
  const stages = steps.filter((s) => s.op === "FROM")
  const runtime = steps.slice(steps.lastIndexOf(stages.at(-1)!))
  const copies = (list: Array<Instruction>) =>
    list.filter((s) => s.op === "COPY").map((s) => {
      const parts = s.args.split(/\s+/)
      const from = parts.find((p) => p.startsWith("--from="))?.slice("--from=".length)
      const rest = parts.filter((p) => !p.startsWith("--"))
      return { from, sources: rest.slice(0, -1), dest: rest.at(-1)! }
    })
  const exampleDefault = () => {
    const arg = steps.find((s) => s.op === "ARG" && s.args.startsWith("EXAMPLE_PATH="))
    expect(arg).toBeDefined()
    return arg!.args.slice("EXAMPLE_PATH=".length)
  }

  it("copies paths that exist in the build context and are not excluded by its .dockerignore", () => {
    const ignored = fs.readFileSync(`${dockerfilePath}.dockerignore`, "utf8").split(/\r?\n/)
      .map((l) => l.trim()).filter((l) => l !== "" && !l.startsWith("#")).map(ignoreRegExp)
    const fromContext = copies(steps).filter((c) => c.from === undefined).flatMap((c) => c.sources)
    expect(fromContext.length).toBeGreaterThan(0)
    for (const source of fromContext) {
      expect(fs.existsSync(path.join(root, source)), `${source} exists`).toBe(true)
      expect(ignored.some((re) => re.test(source)), `${source} is not ignored`).toBe(false)
    }
    // what the build stage produces and the runtime stage takes
    for (const c of copies(runtime).filter((c) => c.from !== undefined)) {
      expect(stages.some((s) => s.args.endsWith(` AS ${c.from}`)), `stage ${c.from}`).toBe(true)
      for (const source of c.sources) expect(["/app/node_modules", "/app/dist"]).toContain(source)
    }
    expect(steps.some((s) => s.op === "RUN" && s.args === "npm ci --no-audit --no-fund")).toBe(true)
    expect(steps.some((s) => s.op === "RUN" && s.args === "npm run build")).toBe(true)
    expect(JSON.parse(fs.readFileSync(path.join(root, "package.json"), "utf8")).scripts.build).toBeDefined()
  })

  it("runs EXAMPLE_PATH (default: an example that exists) as PID 1 on the port the manifest uses", () => {
    expect(fs.existsSync(path.join(root, exampleDefault()))).toBe(true)
    expect(steps.find((s) => s.op === "CMD")!.args).toBe(`["sh", "-c", "exec node \\"$EXAMPLE_PATH\\""]`)
    const expose = Number(steps.find((s) => s.op === "EXPOSE")!.args)
    expect(expose).toBe(byKind("Deployment").spec.template.spec.containers[0].ports[0].containerPort)
  })

  it("the runtime image's files alone run the default example", async () => {
    // lay out /app as the runtime stage does: its COPYs, the build's node_modules and dist
    const app = fs.mkdtempSync(path.join(os.tmpdir(), "ssekify-image-"))
    try {
      for (const c of copies(runtime)) {
        for (const source of c.sources) {
          const from = c.from === undefined ? path.join(root, source) : path.join(root, source.replace(/^\/app\//, ""))
          // Docker's rules: a directory's contents go to dest; a file goes into dest/ or to dest
          const to = fs.statSync(from).isFile() && c.dest.endsWith("/")
            ? path.join(app, c.dest, path.basename(source))
            : path.join(app, c.dest)
          if (source === "/app/node_modules") fs.symlinkSync(from, to, "dir")
          else fs.cpSync(from, to, { recursive: true })
        }
      }
      const example = await startExample(exampleDefault(), { cwd: app })
      expect(example.output()).toMatch(/listening on/)
      const client = await connect(`${example.url}/sse?userId=alice`)
      await opened(client)
      const sent = await request(`${example.url}/notify/alice`, { body: { msg: "from the image" } })
      expect(JSON.parse(sent.body)).toEqual({ delivered: 1 })
      await client.waitFor((c) => c.text().includes("from the image"))
      client.close()
      await example.stop()
    } finally {
      fs.rmSync(app, { recursive: true, force: true })
    }
  })
})
