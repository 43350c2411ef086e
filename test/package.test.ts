/**
 * The published package: `npm pack` (which builds), installed into a fresh folder
 * without ioredis, loaded with `require`, `import` (named and default) and
 * type-checked by `tsc` from an ESM and a CommonJS consumer.
 */
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { ensureBuilt } from "./examples/harness.js"

const root = path.resolve(__dirname, "..")
let dir = ""

const run = (cmd: string, args: Array<string>, cwd = dir) =>
  execFileSync(cmd, args, { cwd, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], timeout: 180_000 })

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "ssekify-pkg-"))
  // Build through the shared, lock-guarded build (which never empties dist/ under the
  // examples that are running), then pack without the prepack build.
  await ensureBuilt()
  const out = run("npm", ["pack", "--pack-destination", dir, "--silent", "--ignore-scripts"], root)
  const tarball = path.join(dir, out.trim().split("\n").at(-1)!)
  const effectVersion = JSON.parse(fs.readFileSync(path.join(root, "node_modules/effect/package.json"), "utf8")).version
  fs.writeFileSync(path.join(dir, "package.json"), JSON.stringify({ name: "consumer", private: true }))
  run("npm", ["install", "--no-audit", "--no-fund", "--prefer-offline", "--omit=peer", tarball, `effect@${effectVersion}`])
}, 240_000)

afterAll(() => {
  if (dir) fs.rmSync(dir, { recursive: true, force: true })
})

describe("package", () => {
  it("ships dist and no test or bench code", () => {
    const files = run("npm", ["pack", "--dry-run", "--json", "--ignore-scripts"], root)
    const list: Array<{ path: string }> = JSON.parse(files)[0].files
    const paths = list.map((f) => f.path)
    expect(paths).toEqual(expect.arrayContaining(["dist/index.js", "dist/index.cjs", "dist/index.d.ts", "dist/index.d.cts", "package.json"]))
    expect(paths.some((p) => p.startsWith("test/") || p.startsWith("bench/"))).toBe(false)
  })

  it("require('ssekify') gives SSEKify and createIORedisAdapter (ioredis not installed)", () => {
    expect(fs.existsSync(path.join(dir, "node_modules/ioredis"))).toBe(false)
    const out = run("node", ["-e", `
      const { SSEKify, createIORedisAdapter } = require('ssekify')
      const sse = new SSEKify({ channel: 'x' })
      let message = ''
      try { createIORedisAdapter('redis://127.0.0.1:1') } catch (e) { message = e.message }
      console.log(JSON.stringify({ cls: typeof SSEKify, fn: typeof createIORedisAdapter, stats: sse.stats().connections, message }))
      sse.shutdown({ graceMs: 0 })
    `])
    const result = JSON.parse(out)
    expect(result).toMatchObject({ cls: "function", fn: "function", stats: 0 })
    expect(result.message).toMatch(/npm i(nstall)? ioredis/)
  })

  it("import, named and default, works from ESM", () => {
    const out = run("node", ["--input-type=module", "-e", `
      import ssekify, { SSEKify, SseKify, Transport } from 'ssekify'
      const { SSEKify: FromDefault, createIORedisAdapter } = ssekify
      const sse = new FromDefault()
      console.log(JSON.stringify({ same: FromDefault === SSEKify, fn: typeof createIORedisAdapter, layer: typeof SseKify.layer, none: typeof Transport.layerNone }))
      await sse.shutdown({ graceMs: 0 })
    `])
    expect(JSON.parse(out)).toEqual({ same: true, fn: "function", layer: "function", none: "object" })
  })

  it("the main entry's declarations import no ioredis: a strict consumer with skipLibCheck: false type-checks without it", () => {
    expect(fs.existsSync(path.join(dir, "node_modules/ioredis"))).toBe(false)
    const dts = fs.readdirSync(path.join(dir, "node_modules/ssekify/dist")).filter((f) => /\.d\.c?ts$/.test(f))
    const importing = dts.filter((f) =>
      /from ['"]ioredis['"]|import\(['"]ioredis['"]\)/.test(fs.readFileSync(path.join(dir, "node_modules/ssekify/dist", f), "utf8"))
    )
    // only the ssekify/redis entry names ioredis' types
    expect(importing.sort()).toEqual(["redis.d.cts", "redis.d.ts"])
    fs.writeFileSync(path.join(dir, "strict.mts"), `
      import { SSEKify, createIORedisAdapter, type IORedisAdapterInput, SseKify, Transport } from "ssekify"
      import { Effect, Layer } from "effect"
      const input: IORedisAdapterInput = { host: "127.0.0.1", port: 6379, lazyConnect: true }
      const make = () => createIORedisAdapter(input, { connectionName: "app", commandTimeout: "2 seconds" })
      const sse = new SSEKify({ keepAliveMs: 1000 })
      const program = Effect.flatMap(SseKify.SseKify, (s) => s.sendToAll("x")).pipe(
        Effect.provide(SseKify.layer({ keepAlive: "1 second" }).pipe(Layer.provide(Transport.layerNone)))
      )
      export { make, sse, program }
    `)
    const tsc = path.join(root, "node_modules/typescript/bin/tsc")
    try {
      run("node", [
        tsc, "--noEmit", "--strict", "--skipLibCheck", "false", "--module", "nodenext", "--moduleResolution", "nodenext",
        "--target", "es2022", "--types", "node", "--typeRoots", path.join(root, "node_modules/@types"), "strict.mts"
      ])
    } catch (e) {
      throw new Error(`tsc with skipLibCheck: false failed:\n${(e as { stdout?: string }).stdout ?? e}`)
    }
  }, 180_000) // tsc over effect's declarations too (no skipLibCheck): ~40 s alone

  it("ssekify/redis loads without ioredis installed (ioredis is loaded when a connection opens)", () => {
    const out = run("node", ["--input-type=module", "-e", `
      import { RedisTransport, RedisConnection, createIORedisAdapter } from 'ssekify/redis'
      const { RedisTransport: R } = await import('ssekify/redis')
      console.log(JSON.stringify({ layer: typeof RedisTransport.layer, conn: typeof RedisConnection.layer, fn: typeof createIORedisAdapter, same: R === RedisTransport }))
    `])
    expect(JSON.parse(out)).toEqual({ layer: "function", conn: "function", fn: "function", same: true })
    const cjs = run("node", ["-e", `const { RedisTransport } = require('ssekify/redis'); console.log(typeof RedisTransport.layer)`])
    expect(cjs.trim()).toBe("function")
  })

  it("type-checks ESM and CommonJS consumers with tsc", () => {
    const consumer = `
      import ssekify, { SSEKify, type SSEKifyOptions, createIORedisAdapter, SseKify, SseKifyLive, Transport } from "ssekify"
      import type { ServerResponse } from "node:http"
      import { Effect, Layer } from "effect"
      const sse = new SSEKify({ channel: "ssekify:bus", keepAliveMs: 15000, recentBufferSize: 20 } satisfies SSEKifyOptions)
      declare const res: ServerResponse
      const handle = sse.registerConnection("alice", res, { rooms: ["global"], dropPolicy: "oldest", maxQueueItems: 100 })
      const id: string = handle.connId
      const joined: boolean = handle.join("room")
      const n: number = sse.sendToUser("alice", { a: 1 }, { event: "notify", id: "1" })
      const p: Promise<void> = sse.publish({ requestId: "r" }, undefined, { event: "broadcast" })
      sse.on("connect", ({ userId, connId }) => console.log(userId.length + connId.length))
      sse.on("message-sent", (e) => console.log(e.count))
      sse.on("error", (e) => console.log(e.message))
      const stats: number = sse.stats().queueBytesMax + sse.stats().seqIncrsRedis
      const adapter = ssekify.createIORedisAdapter === createIORedisAdapter
      const program = Effect.gen(function* () {
        const s = yield* SseKify.SseKify
        return yield* s.sendToAll("x")
      }).pipe(Effect.provide(SseKifyLive.pipe(Layer.provide(Transport.layerNone))))
      // @ts-expect-error dropPolicy is checked
      sse.registerConnection("a", res, { dropPolicy: "sometimes" })
      export { id, joined, n, p, stats, adapter, program }
    `
    fs.writeFileSync(path.join(dir, "esm.mts"), consumer)
    fs.writeFileSync(path.join(dir, "cjs.cts"), `
      import { SSEKify, type SSEKifyOptions } from "ssekify"
      const sse = new SSEKify({ retryMs: 2000 } satisfies SSEKifyOptions)
      const n: number = sse.sendToAll({ x: 1 })
      export = n
    `)
    const tsc = path.join(root, "node_modules/typescript/bin/tsc")
    const common = ["--noEmit", "--strict", "--skipLibCheck", "--module", "nodenext", "--moduleResolution", "nodenext", "--types", "node", "--typeRoots", path.join(root, "node_modules/@types")]
    run("node", [tsc, ...common, "esm.mts"])
    run("node", [tsc, ...common, "cjs.cts"])
  }, 120_000) // two tsc runs: ~25 s alone, more under load
})
