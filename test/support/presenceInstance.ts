/**
 * One ssekify instance in its own process, for the cluster-wide presence tests:
 * `node --import tsx test/support/presenceInstance.ts`, configured by the environment
 * (REDIS_URL, CHANNEL, HEARTBEAT_MS, TTL_MS, MAX_PER_USER, POLICY, INSTANCE_ID).
 * Prints `{"port":…,"instanceId":…}` on stdout once it listens on 127.0.0.1.
 *
 * - GET /sse?u=<user>            an SSE connection
 * - GET /count?u=<user>          {"cluster":n,"local":n} (cluster from Redis)
 * - GET /stats                   stats() and the error codes reported so far
 */
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import { SSEKify } from "../../src/index.js"

const env = process.env
const sse = new SSEKify({
  redis: env.REDIS_URL!,
  channel: env.CHANNEL ?? "presence-test",
  keepAliveMs: 0,
  presence: { heartbeatMs: Number(env.HEARTBEAT_MS ?? 200), ttlMs: Number(env.TTL_MS ?? 1000) },
  maxConnectionsPerUser: Number(env.MAX_PER_USER ?? 0),
  connectionLimitScope: env.MAX_PER_USER !== undefined ? "cluster" : "instance",
  connectionLimitPolicy: env.POLICY === "closeOldest" ? "closeOldest" : "reject",
  ...(env.INSTANCE_ID !== undefined ? { instanceId: env.INSTANCE_ID } : {})
})
const errors: Array<string> = []
sse.on("error", (e) => errors.push(String((e as { code?: unknown }).code ?? e.message)))

const server = http.createServer((req, res) => {
  const url = new URL(req.url ?? "/", "http://x")
  const user = url.searchParams.get("u") ?? "guest"
  if (url.pathname === "/sse") {
    sse.registerConnection(user, res)
    return
  }
  const json = (value: unknown) => {
    res.setHeader("content-type", "application/json")
    res.end(JSON.stringify(value))
  }
  if (url.pathname === "/count") {
    sse.getUserConnectionCount(user, { scope: "cluster" }).then(
      (cluster) => json({ cluster, local: sse.getUserConnectionCount(user) }),
      (e: unknown) => {
        res.statusCode = 500
        json({ error: String(e) })
      }
    )
    return
  }
  if (url.pathname === "/stats") return json({ stats: sse.stats(), errors })
  res.statusCode = 404
  res.end()
})

server.listen(0, "127.0.0.1", () => {
  process.stdout.write(JSON.stringify({ port: (server.address() as AddressInfo).port, instanceId: sse.instanceId }) + "\n")
})

const stop = () => {
  void sse.shutdown({ announce: false, graceMs: 0 }).then(() => {
    server.close()
    server.closeAllConnections()
  })
}
process.once("SIGTERM", stop)
process.once("SIGINT", stop)
// the parent went away: do not linger
process.stdin.on("end", stop)
process.stdin.resume()
