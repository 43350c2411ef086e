/**
 * Helpers of the library-level multi-instance suites (not a test file): `SSEKify`
 * instances, each on its own real `node:http` server on 127.0.0.1, with raw SSE clients;
 * everything made here is stopped by `Fixture.dispose()` (call it in `afterEach`), even
 * when a test fails.
 */
import { SSEKify, type SSEKifyOptions } from "../../src/index.js"
import { HOST, redisCli } from "../support/redisServer.js"
import { connect, type RawClient, type SseFrame, startServer, type TestServer, until } from "../support/sse.js"

export { until }

/** One instance: the `SSEKify`, its HTTP server, and a way to open SSE clients on it. */
export interface Node {
  readonly name: string
  readonly sse: SSEKify
  readonly server: TestServer
  /** Every event the instance emitted, in order, by name. */
  readonly events: Record<"publish" | "message-sent" | "error" | "connect" | "disconnect", Array<any>>
  /**
   * Opens `GET /sse?u=<userId>&room=…` and waits for the `retry:` line (the connection is
   * registered then). `lastEventId` goes in the `Last-Event-ID` header.
   */
  open(userId: string, options?: { readonly rooms?: ReadonlyArray<string>; readonly lastEventId?: string; readonly wait?: boolean }): Promise<RawClient>
}

/** Tracks what a test starts and stops it, last first. */
export class Fixture {
  private cleanups: Array<() => unknown> = []

  /** Registers a cleanup (run in reverse order by {@link dispose}). */
  defer(f: () => unknown): void {
    this.cleanups.push(f)
  }

  async dispose(): Promise<void> {
    const all = this.cleanups.reverse()
    this.cleanups = []
    const failures: Array<unknown> = []
    for (const f of all) {
      try {
        await f()
      } catch (e) {
        failures.push(e)
      }
    }
    if (failures.length > 0) throw failures[0]
  }

  /** A new instance with its server. `keepAliveMs: 0` unless given. */
  async node(name: string, options: SSEKifyOptions): Promise<Node> {
    const sse = new SSEKify({ keepAliveMs: 0, ...options })
    this.defer(() => sse.shutdown({ announce: false, graceMs: 0 }))
    const events: Node["events"] = { publish: [], "message-sent": [], error: [], connect: [], disconnect: [] }
    for (const type of Object.keys(events) as Array<keyof Node["events"]>) {
      sse.on(type, (payload: unknown) => events[type].push(payload))
    }
    const server = await startServer((req, res) => {
      const url = new URL(req.url ?? "/", `http://${HOST}`)
      sse.registerConnection(url.searchParams.get("u") ?? "guest", res, { rooms: url.searchParams.getAll("room") })
    })
    this.defer(() => server.close())
    const open: Node["open"] = async (userId, o) => {
      const query = new URLSearchParams({ u: userId })
      for (const room of o?.rooms ?? []) query.append("room", room)
      const client = await connect(
        `${server.url}/sse?${query}`,
        o?.lastEventId === undefined ? undefined : { headers: { "last-event-id": o.lastEventId } }
      )
      this.defer(() => client.close())
      if (o?.wait !== false) await client.waitFor((c) => c.text().includes("retry:"), 5_000, `${name}: ${userId}'s retry line`)
      return client
    }
    return { name, sse, server, events, open }
  }
}

/** `[event, data]` of each message frame (heartbeats have no data and are not messages). */
export const frames = (client: RawClient): Array<[string | undefined, string]> =>
  client.messages().filter((f) => f.data !== "").map((f) => [f.event, f.data])

/** The frames that carry data, with their ids. */
export const dataFrames = (client: RawClient): Array<SseFrame> => client.messages().filter((f) => f.data !== "")

/** Data of the frames of one event name. */
export const dataOf = (client: RawClient, event?: string): Array<string> =>
  client.messages().filter((f) => f.data !== "" && f.event === event).map((f) => f.data)

/** Waits (bounded) until the client has at least `n` frames of `event` (any event when omitted). */
export const waitFrames = (client: RawClient, n: number, what: string, timeoutMs = 5_000, event?: string | null): Promise<void> =>
  client.waitFor(
    (c) => c.messages().filter((f) => f.data !== "" && (event === undefined ? true : f.event === (event ?? undefined))).length >= n,
    timeoutMs,
    what
  )

/**
 * A fence after which every frame that could still arrive has arrived: each instance in
 * turn broadcasts `{ fence: <name> }` (event `fence`) and every client waits for it. A
 * message an instance published earlier (and would wrongly deliver twice through its own
 * echo) reaches every subscriber before another instance's later fence does: Redis
 * writes a PUBLISH to all subscribers before it runs the next command, and each
 * instance's fence is sent only after the previous one reached everyone.
 */
export const fence = async (nodes: ReadonlyArray<Node>, clients: ReadonlyArray<RawClient>): Promise<void> => {
  for (const node of nodes) {
    await node.sse.publish({ fence: node.name }, undefined, { event: "fence" })
    for (const client of clients) {
      await client.waitFor((c) => fencesOf(c).includes(node.name), 5_000, `fence ${node.name}`)
    }
  }
}

/** The names in the fences a client got, in order. */
export const fencesOf = (client: RawClient): Array<string> =>
  dataOf(client, "fence").map((d) => (JSON.parse(d) as { fence: string }).fence)

/**
 * Runs one send and waits (bounded) until each listed client has `n` frames in total.
 * Pub/Sub orders the messages of one publisher, not those of several: a test that wants
 * an exact order across publishers lets each message arrive before the next is sent.
 */
export const step = async (send: () => Promise<unknown> | unknown, ...expect: Array<readonly [RawClient, number]>): Promise<void> => {
  await send()
  for (const [client, n] of expect) await waitFrames(client, n, `${n} frames`)
}

/** The frames of a client without the fences. */
export const withoutFences = (client: RawClient): Array<[string | undefined, string]> =>
  frames(client).filter(([event]) => event !== "fence")

/** Every key of the Redis on `port` matching `pattern` (SCAN, not KEYS), sorted. */
export const scanKeys = async (port: number, pattern = "*"): Promise<Array<string>> => {
  const out = await redisCli(port, ["--scan", "--pattern", pattern])
  return out.split("\n").map((l) => l.trim()).filter((l) => l !== "").sort()
}

/** `CLIENT LIST` of the Redis on `port`: one `{ id, name, cmd }` per connection. */
export const clientList = async (port: number): Promise<Array<{ id: string; name: string; cmd: string }>> => {
  const out = await redisCli(port, ["client", "list"])
  return out.split("\n").filter((l) => l.trim() !== "").map((line) => ({
    id: /(?:^| )id=(\S*)/.exec(line)?.[1] ?? "",
    name: /(?:^| )name=(\S*)/.exec(line)?.[1] ?? "",
    cmd: /(?:^| )cmd=(\S*)/.exec(line)?.[1] ?? ""
  }))
}

/** Subscribers of `channel` on the Redis on `port`. */
export const numsub = async (port: number, channel: string): Promise<number> => {
  const out = (await redisCli(port, ["pubsub", "numsub", channel])).trim().split(/\s+/)
  return Number(out[1] ?? 0)
}

/** A name unique to this run. */
export const unique = (prefix: string): string => `${prefix}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/** Every `'error'` event's code (`undefined` for plain errors). */
export const codes = (node: Node): Array<string | undefined> => node.events.error.map((e: { code?: string }) => e.code)
