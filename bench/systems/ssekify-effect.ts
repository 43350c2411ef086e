/**
 * ssekify through the Effect API: the `SseKify` service built from `SseKify.layer`
 * (with `RedisTransport.layer` in scenario E) in a `ManagedRuntime`,
 * connections served by the `@effect/platform` endpoint (`ssekify/platform`:
 * `HttpSse.respond`; on `NodeHttpServer` the hub takes the Node response over once the
 * request's fiber is done) mounted on the bench's `node:http` server with
 * `NodeHttpServer.makeHandler`, and sends through the service's effects
 * (`runSync(sse.sendToAll(...))` per call; B.users runs its loop over the users as one
 * effect). The platform's per-request tracing span
 * is disabled, as the example app does for its SSE route.
 *
 * Scenario H and case E.routed (issue 16) pass `cfg.routing` and `cfg.redisCluster`
 * to `RedisTransport.layer` in ONE place, {@link redisLayerOptions}, and read back from
 * the built transport whether routing took effect (`Transport.routed`).
 */
import type * as http from "node:http"
import { distUrl, ensureBuilt } from "./build.js"
import type { SendOptions, SystemDef, SystemInstance } from "./types.js"
import { errorKind, numericStats } from "./ssekify.js"

type Mod = typeof import("../../src/index.js")
type PlatformMod = typeof import("../../src/HttpSse.js")
type RedisMod = typeof import("../../src/redis.js")

const load = async () => {
  const indexUrl = distUrl()
  const mod = (await import(indexUrl)) as Mod
  const platform = (await import(indexUrl.replace(/index\.js$/, "platform.js"))) as PlatformMod
  const redis = (await import(indexUrl.replace(/index\.js$/, "redis.js"))) as RedisMod
  const { Effect, Layer, ManagedRuntime, Stream } = await import("effect")
  const { HttpMiddleware, HttpRouter, HttpServerRequest } = await import("@effect/platform")
  const { NodeHttpServer } = await import("@effect/platform-node")
  return { mod, platform, redis, Effect, Layer, ManagedRuntime, Stream, HttpMiddleware, HttpRouter, HttpServerRequest, NodeHttpServer }
}

type RedisLayerOptions = Parameters<RedisMod["RedisTransport"]["layer"]>[0]

/**
 * THE ONE PLACE where the bench hands the routing mode of issue 16 to the library: the
 * options of `RedisTransport.layer`, `{ url | cluster, routing: "user" }` in routed mode
 * (nothing added in the default single-channel mode). If the option lands elsewhere
 * (e.g. `TransportRedis.layerWith(connection, { routing })`), adapt this function and
 * `transportLayer` below. A build without the option ignores it: the bench then finds no
 * `routed` on the built transport and reports "routed mode not available in this build".
 */
export function redisLayerOptions(cfg: {
  readonly redisUrl: string | undefined
  readonly redisCluster?: ReadonlyArray<{ readonly host: string; readonly port: number }> | undefined
  readonly routing?: "channel" | "user" | undefined
}): RedisLayerOptions {
  const routing = cfg.routing === "user" ? { routing: "user" as const } : {}
  if (cfg.redisCluster !== undefined) return { cluster: cfg.redisCluster.map((n) => ({ host: n.host, port: n.port })), ...routing }
  if (cfg.redisUrl === undefined) throw new Error("no Redis URL nor cluster")
  return { url: cfg.redisUrl, ...routing }
}

const ssekifyEffect: SystemDef = {
  name: "ssekify-effect",
  description: "ssekify through the Effect API: SseKify layer, @effect/platform endpoint (HttpSse.respond), sends via runSync",
  hasDropPolicy: true,
  routing: true,
  available: ensureBuilt,
  preload: async () => {
    await load()
  },
  async create(cfg, events) {
    const { Effect, HttpMiddleware, HttpRouter, HttpServerRequest, Layer, ManagedRuntime, mod, NodeHttpServer, platform, redis, Stream } =
      await load()
    const { SseKify, Transport } = mod
    const { RedisTransport } = redis
    const options: import("../../src/SseKify.js").LayerOptions = {
      keepAliveMs: cfg.keepAliveMs,
      retryMs: cfg.retryMs,
      channel: cfg.channel,
      shutdown: { announce: false, graceMs: 0 },
      ...(cfg.recentBufferSize !== undefined ? { recentBufferSize: cfg.recentBufferSize } : {}),
      ...(cfg.autoTimestamp ? {} : { autoFields: { timestamp: false } })
    }
    const transportLayer = cfg.redisUrl !== undefined || cfg.redisCluster !== undefined
      ? RedisTransport.layer(redisLayerOptions(cfg))
      : Transport.layerNone
    // provideMerge: the Transport stays in the runtime's context, to read `routed` off it
    const runtime = ManagedRuntime.make(SseKify.layer(options).pipe(Layer.provideMerge(transportLayer)))
    const sse = await runtime.runPromise(SseKify.SseKify)
    await runtime.runPromise(sse.ready)
    const transport: { readonly routed?: unknown } = await runtime.runPromise(Transport.Transport)
    const routed = transport.routed !== undefined
    // drops and errors reach the harness; nothing else is subscribed (no per-send event)
    runtime.runFork(
      Stream.runForEach(sse.eventsOf(["error", "drop"]), (event) =>
        Effect.sync(() => {
          if (event.type === "error") events.error(errorKind(event.payload))
          else events.drop(event.payload.frames)
        }))
    )
    const queue = {
      ...(cfg.queue.maxQueueItems !== undefined ? { maxQueueItems: cfg.queue.maxQueueItems } : {}),
      ...(cfg.queue.maxQueueBytes !== undefined ? { maxQueueBytes: cfg.queue.maxQueueBytes } : {}),
      ...(cfg.queue.dropPolicy !== undefined ? { dropPolicy: cfg.queue.dropPolicy } : {})
    }
    const app = HttpRouter.empty.pipe(
      HttpRouter.get(
        "/sse",
        Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => {
          const userId = new URL(request.url, "http://x").searchParams.get("u") ?? "anon"
          return platform.respond(userId, { rooms: ["r1"], ...queue })
        }).pipe(Effect.catchAll((e) => Effect.succeed(platform.errorResponse(e))))
      )
    )
    const handler = await runtime.runPromise(
      Effect.locally(NodeHttpServer.makeHandler(app), HttpMiddleware.currentTracerDisabledWhen, () => true)
    )
    const send = (effect: import("effect").Effect.Effect<number, unknown>): number => {
      const exit = runtime.runSyncExit(effect)
      if (exit._tag === "Success") return exit.value
      events.error(errorKind(exit.cause))
      return 0
    }
    const instance: SystemInstance = {
      attach: (server: http.Server) => {
        server.on("request", (req, res) => {
          if ((req.url ?? "").startsWith("/sse?")) handler(req, res)
        })
      },
      sendToAll: (data, o: SendOptions) => send(sse.sendToAll(data, o)),
      sendToRoom: (room, data, o) => send(sse.sendToRoom(room, data, o)),
      sendToUser: (userId, data, o) => send(sse.sendToUser(userId, data, o)),
      // B.users: the loop over the users as one effect (an Effect app sends from a fiber)
      sendToUsers: (userIds, data, o) =>
        send(Effect.reduce(userIds, 0, (n, u) => Effect.map(sse.sendToUser(u, data, o), (d) => n + d))),
      sendToUserDirect: (userId, data, o) => {
        const r = sse.unsafeSendToUser(userId, data, o)
        if (typeof r === "number") return r
        events.error(errorKind(r))
        return 0
      },
      publish: (data, o) => runtime.runPromise(sse.publish(data, undefined, o)),
      publishToUser: (userId, data, o) => runtime.runPromise(sse.publish(data, userId, o)),
      routed: () => routed,
      stats: () => numericStats(runtime.runSync(sse.stats) as unknown as Record<string, unknown>),
      shutdown: async () => {
        await runtime.dispose()
      }
    }
    return instance
  }
}

export default ssekifyEffect
