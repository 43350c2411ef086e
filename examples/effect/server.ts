/**
 * The Effect quick start: the routes of the Express example on `@effect/platform`
 * (`HttpRouter` + `NodeHttpServer`), with ssekify as layers.
 *
 *   npm run dev:effect                                     PORT=3000 by default
 *   REDIS_URL=redis://127.0.0.1:6379 npm run dev:effect    # publish* across instances
 *
 * Requests to try: examples/effect/api.http. The instance's options come from the
 * environment (`SseKifyLive`: SSEKIFY_KEEP_ALIVE_MS, SSEKIFY_RETRY_MS,
 * SSEKIFY_SHUTDOWN_GRACE_MS, ...); the bus is Redis when REDIS_URL (or
 * REDIS_CLUSTER_NODES / REDIS_SENTINELS) is set, this instance only otherwise.
 *
 * Ctrl+C / SIGTERM: `HttpSse.serve` runs the SseKify shutdown first (stop accepting,
 * announce `server:shutdown`, wait the grace period or until every client is gone, end
 * every stream), then the HTTP server closes with nothing left open, Redis is closed,
 * and the process exits.
 */
import { HttpMiddleware, HttpRouter, HttpServer, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { NodeHttpServer, NodeRuntime } from "@effect/platform-node"
import { Config, Effect, Layer, Option } from "effect"
import { createServer } from "node:http"
import * as HttpSse from "../../src/HttpSse.js"
import { SseKify, SseKifyLive, Transport } from "../../src/index.js"
import { RedisTransport } from "../../src/redis.js"

/** The request's JSON body; `{}` when there is none or it is not JSON. */
const body = HttpServerRequest.HttpServerRequest.pipe(
  Effect.flatMap((request) => request.json),
  Effect.orElseSucceed((): unknown => ({}))
)

const param = (name: string) => Effect.map(HttpRouter.params, (params) => params[name] ?? "")

const query = (name: string) =>
  Effect.map(HttpServerRequest.HttpServerRequest, (request) =>
    new URL(request.url, "http://localhost").searchParams.get(name) ?? undefined)

const json = (value: unknown, status = 200) => HttpServerResponse.unsafeJson(value, { status })

/** Sends fail with typed errors (bad input, payload too large, Redis down): answer 400 / 502. */
const failed = (error: { readonly _tag: string; readonly message: string }) =>
  Effect.succeed(json({ error: error._tag, message: error.message }, error._tag === "TransportError" ? 502 : 400))

const app = HttpRouter.empty.pipe(
  // The SSE endpoint: ?userId=alice (default 'guest'), in room 'global'; Last-Event-ID
  // from the header or ?lastEventId=. Refusals are answered 400 / 429 / 503.
  HttpRouter.get("/sse", HttpSse.handler({ defaultUserId: "guest", rooms: ["global"] })),
  // To one user, on this instance. `?id=` sets the frame's id: a client that reconnects
  // with `Last-Event-ID` gets what it missed after it.
  HttpRouter.post(
    "/notify/:userId",
    Effect.gen(function*() {
      const sse = yield* SseKify.SseKify
      const id = yield* query("id")
      const delivered = yield* sse.sendToUser(yield* param("userId"), yield* body, { event: "notify", id })
      return json({ delivered })
    }).pipe(Effect.catchAll(failed))
  ),
  // To everyone, on every instance (through Redis when configured).
  HttpRouter.post(
    "/broadcast",
    Effect.gen(function*() {
      const sse = yield* SseKify.SseKify
      yield* sse.publish(yield* body, undefined, { event: "broadcast" })
      return json({ ok: true })
    }).pipe(Effect.catchAll(failed))
  ),
  // To a room, on this instance.
  HttpRouter.post(
    "/room/:room",
    Effect.gen(function*() {
      const sse = yield* SseKify.SseKify
      const delivered = yield* sse.sendToRoom(yield* param("room"), yield* body, { event: "room" })
      return json({ delivered })
    }).pipe(Effect.catchAll(failed))
  ),
  // To a room, on every instance.
  HttpRouter.post(
    "/publish-room/:room",
    Effect.gen(function*() {
      const sse = yield* SseKify.SseKify
      yield* sse.publishToRoom(yield* param("room"), yield* body, { event: "room" })
      return json({ ok: true })
    }).pipe(Effect.catchAll(failed))
  ),
  // Ends a user's connections (the browser reconnects after `retry`).
  HttpRouter.post(
    "/close/:userId",
    Effect.gen(function*() {
      const sse = yield* SseKify.SseKify
      yield* sse.close(yield* param("userId"))
      return json({ closed: true })
    })
  ),
  HttpRouter.get("/stats", Effect.flatMap(SseKify.SseKify, (sse) => Effect.map(sse.stats, (stats) => json(stats)))),
  // Readiness: 503 once the instance stops accepting.
  HttpRouter.get(
    "/healthz",
    Effect.flatMap(SseKify.SseKify, (sse) =>
      Effect.map(sse.stats, ({ accepting, connections }) => json({ ready: accepting, connections }, accepting ? 200 : 503)))
  )
)

/** Redis when the environment names one (see `RedisTransport.config`), else this instance only. */
const TransportLive = Layer.unwrapEffect(
  Effect.map(
    Config.all([
      Config.option(Config.string("REDIS_URL")),
      Config.option(Config.string("REDIS_CLUSTER_NODES")),
      Config.option(Config.string("REDIS_SENTINELS"))
    ]),
    (names) => names.some(Option.isSome) ? RedisTransport.layerConfig() : Transport.layerNone
  )
)

const ServerLive = NodeHttpServer.layer(createServer, {
  port: Number(process.env.PORT ?? 3000),
  ...(process.env.HOST ? { host: process.env.HOST } : {})
})

// Logs the address once the bus subscription is confirmed (`sse.ready`): from then on,
// what other instances publish reaches this one's clients.
const LogAddress = Layer.effectDiscard(
  Effect.flatMap(Effect.zipRight(Effect.flatMap(SseKify.SseKify, (sse) => sse.ready), HttpServer.HttpServer), (server) =>
    Effect.sync(() => {
      const a = server.address
      const where = a._tag === "UnixAddress" ? a.path : `http://${a.hostname === "0.0.0.0" ? "localhost" : a.hostname}:${a.port}`
      console.log(`ssekify effect example listening on ${where}`)
    }))
)

// `HttpSse.serve` (not `HttpServer.serve`): the open SSE streams get the shutdown event
// and end before the HTTP server's release waits for its responses, whatever the order
// of the layers below (Effect-TS/effect#3922).
// The platform opens a tracing span per request, kept for the life of an SSE stream
// (measured: ~7 KiB of heap per idle connection); skip it for the SSE route.
const Serve = HttpSse.serve(app).pipe(HttpMiddleware.withTracerDisabledWhen((request) => request.url.startsWith("/sse")))

const Main = Layer.mergeAll(Serve, LogAddress).pipe(
  Layer.provide(SseKifyLive),
  Layer.provide(TransportLive),
  Layer.provide(ServerLive)
)

NodeRuntime.runMain(Layer.launch(Main))
