/**
 * SSE endpoints on `@effect/platform` (`HttpRouter`, `HttpServer`, `NodeHttpServer`):
 * the same connection as `registerConnection` on a Node response — SSE headers,
 * `retry:`, heartbeats, `Last-Event-ID` replay, backpressure with the connection's
 * `dropPolicy`, 503 + `Retry-After` while not accepting, 400 on invalid input.
 *
 * On `@effect/platform-node`'s server the response the handler returns is sent by the
 * platform's rules (status, headers and cookies after every middleware), then the
 * connection is handed to the hub on the Node response itself once the request's fiber
 * is done: it costs what a Node-path connection costs (no fiber, no stream per
 * connection; the hub writes to the socket). On other servers (no Node response
 * underneath) the response's body is a `Stream` of the connection: registered when the
 * server starts sending the body, removed when the server interrupts it.
 *
 * ```ts
 * import { HttpRouter } from "@effect/platform"
 * import { NodeHttpServer, NodeRuntime } from "@effect/platform-node"
 * import { Layer } from "effect"
 * import { createServer } from "node:http"
 * import { SseKify, Transport } from "ssekify"
 * import * as HttpSse from "ssekify/platform"
 *
 * const app = HttpRouter.empty.pipe(
 *   HttpRouter.get("/sse", HttpSse.handler({ rooms: ["global"] })) // ?userId=alice
 * )
 * HttpSse.serve(app).pipe(
 *   Layer.provide(SseKify.layer()),
 *   Layer.provide(Transport.layerNone),
 *   Layer.provide(NodeHttpServer.layer(createServer, { port: 3000 })),
 *   Layer.launch,
 *   NodeRuntime.runMain
 * )
 * ```
 *
 * Shutdown: `@effect/platform-node`'s server waits for every open response when its
 * scope closes (Effect-TS/effect#3922). The SSE responses end then, whichever of the
 * `SseKify` and server layers is released first: {@link serve} shuts the instance down
 * (announce, grace, close) before the server closes; with `HttpServer.serve`, the
 * server's `close()` starts the instance's shutdown for the connections handed to the
 * hub. The grace period ends as soon as every client is gone.
 *
 * @since 0.2.0
 */
import * as HttpApp from "@effect/platform/HttpApp"
import * as HttpServer from "@effect/platform/HttpServer"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import type * as Stream from "effect/Stream"
import type { ConnectionHandle, RegisterOptions } from "./Connection.js"
import { InvalidInput, type LimitExceeded, ShuttingDown } from "./Errors.js"
import { lastEventIdFrom } from "./internal/lastEventId.js"
import { invalidInputText } from "./internal/refusal.js"
import { connectionStream, DEFAULT_HIGH_WATER_MARK, underlyingResponse } from "./internal/platform.js"
import { nodeResponseOf, offer, Pending, portableBody, preResponse } from "./internal/platformNode.js"
import { type Admission, type Endpoint, SseKify, type SseKifyService } from "./SseKify.js"

/**
 * Options of {@link respond} and {@link stream}: those of `registerConnection`, plus
 * the body's buffer and a hook with the connection's handle.
 *
 * @since 0.2.0
 * @category models
 */
export interface RespondOptions extends RegisterOptions {
  /**
   * Bytes the body may hold that the server has not taken yet before the connection
   * counts as blocked (its frames then queue under `maxQueueItems` /
   * `maxQueueBytes` / `dropPolicy`). Default 16 384, a Node response's.
   */
  readonly highWaterMark?: number | undefined
  /**
   * Runs with the connection's handle (id, `join`, `leave`, `close`) once the
   * connection is registered, when the server starts sending the body. Default: none.
   */
  readonly onConnect?: ((handle: ConnectionHandle) => Effect.Effect<void>) | undefined
}

/**
 * Options of {@link handler}.
 *
 * @since 0.2.0
 * @category models
 */
export interface HandlerOptions extends RespondOptions {
  /** The query parameter holding the user id. Default `'userId'`. */
  readonly userIdParam?: string | undefined
  /** The user id when the query has none; without it, a request without one gets 400. Default: none. */
  readonly defaultUserId?: string | undefined
  /**
   * A query parameter with rooms to join (repeated, or comma-separated), added to
   * `rooms`. Default: none (rooms come from the options only).
   */
  readonly roomsParam?: string | undefined
}

/**
 * Why a connection was refused: a bad user id or option (`InvalidInput`, 400), the
 * instance not accepting (`ShuttingDown`, 503), or a connection limit
 * (`LimitExceeded`: `maxConnections` 503, `maxConnectionsPerUser` 429).
 *
 * @since 0.2.0
 * @category models
 */
export type SseRefusal = InvalidInput | ShuttingDown | LimitExceeded

/**
 * The headers of an SSE response: `Content-Type: text/event-stream; charset=utf-8`,
 * `Cache-Control: no-cache, no-transform`, `Connection: keep-alive`,
 * `X-Accel-Buffering: no`.
 *
 * @since 0.2.0
 * @category constants
 */
export const headers: Readonly<Record<string, string>> = Object.freeze({
  "content-type": "text/event-stream; charset=utf-8",
  "cache-control": "no-cache, no-transform",
  "connection": "keep-alive",
  "x-accel-buffering": "no"
})

const CONTENT_TYPE = headers["content-type"]!

/**
 * The id a reconnecting client sends: the `Last-Event-ID` header, else the
 * `lastEventId` / `last-event-id` / `Last-Event-ID` query parameter.
 *
 * @since 0.2.0
 * @category accessors
 */
export const lastEventIdOf = (request: HttpServerRequest.HttpServerRequest): string | undefined =>
  lastEventIdFrom(request.headers["last-event-id"], request.url)

const queryOf = (url: string): URLSearchParams | undefined => {
  const q = url.indexOf("?")
  if (q < 0) return undefined
  // URLSearchParams never throws on a string (malformed escapes are kept as they are).
  return new URLSearchParams(url.slice(q + 1))
}

/**
 * The response refusing a connection, as on the Node path (plain text): 503 +
 * `Retry-After: 2` for `ShuttingDown` and `maxConnections`, 429 for
 * `maxConnectionsPerUser`, 400 for `InvalidInput`.
 *
 * @since 0.2.0
 * @category constructors
 */
export const errorResponse = (error: SseRefusal): HttpServerResponse.HttpServerResponse => {
  switch (error._tag) {
    case "ShuttingDown":
      return HttpServerResponse.text("Server is shutting down", { status: 503, headers: { "retry-after": "2" } })
    case "LimitExceeded":
      return error.limit === "maxConnectionsPerUser"
        ? HttpServerResponse.text("Too many connections for this user", { status: 429 })
        : HttpServerResponse.text("Too many connections", { status: 503, headers: { "retry-after": "2" } })
    case "InvalidInput":
      return HttpServerResponse.text(invalidInputText(error), { status: 400 })
  }
}

interface Prepared {
  readonly endpoint: Endpoint
  readonly admission: Admission
  readonly hwm: number
}

/** The registration path of the service (`SseKifyService.endpoint`): the Node path's checks, limits and cluster cap. */
const prepare = (
  sse: SseKifyService,
  userId: string,
  options: RespondOptions | undefined
): Effect.Effect<Prepared, SseRefusal> => {
  const hwm = options?.highWaterMark ?? DEFAULT_HIGH_WATER_MARK
  const endpoint = sse.endpoint
  return Effect.map(
    endpoint.admit(userId, options, () =>
      typeof hwm !== "number" || !Number.isFinite(hwm) || hwm < 1
        ? new InvalidInput({ field: "options.highWaterMark", reason: `must be a number >= 1, got ${String(hwm)}` })
        : undefined),
    (admission) => ({ endpoint, admission, hwm })
  )
}

/**
 * The body of an SSE connection for `userId` (`lastEventId` from the options only):
 * to build the response yourself with {@link headers}, or for other transports.
 * Fails like {@link respond}.
 *
 * @since 0.2.0
 * @category constructors
 */
export const stream = (
  userId: string,
  options?: RespondOptions
): Effect.Effect<Stream.Stream<Uint8Array>, SseRefusal, SseKify> =>
  Effect.flatMap(SseKify, (sse) =>
    Effect.flatMap(prepare(sse, userId, options), ({ admission, hwm }) =>
      Effect.map(Effect.serviceOption(HttpServerRequest.HttpServerRequest), (request) =>
        connectionStream(
          admission,
          admission.lastEventId,
          hwm,
          options?.onConnect,
          request._tag === "Some" ? underlyingResponse(request.value) : undefined
        ))))

/**
 * The SSE response for `userId` on the current request: the SSE headers plus
 * `options.headers`, and a body that streams the connection (`Last-Event-ID` from the
 * options, else the request's header or query). Fails with `ShuttingDown` while the
 * instance is not accepting, `InvalidInput` on a bad user id or option and
 * `LimitExceeded` over `maxConnections` / `maxConnectionsPerUser` (instance scope);
 * map them with {@link errorResponse} (or use {@link handler}, which does).
 *
 * On `NodeHttpServer` the connection is registered once the request's fiber is done
 * (the platform has sent nothing but may have added headers: they are sent), on the
 * Node response; elsewhere when the server starts sending the body (it is the body's
 * lifetime). `onConnect` gets its handle then. A response replaced or rewrapped after
 * `respond` (another body) registers nothing; a `HEAD` request gets the headers only.
 * `highWaterMark` applies to the `Stream` body only (the Node response has its own).
 *
 * @since 0.2.0
 * @category constructors
 */
export const respond = (
  userId: string,
  options?: RespondOptions
): Effect.Effect<
  HttpServerResponse.HttpServerResponse,
  SseRefusal,
  SseKify | HttpServerRequest.HttpServerRequest
> =>
  Effect.flatMap(SseKify, (sse) =>
    Effect.flatMap(prepare(sse, userId, options), ({ admission, endpoint, hwm }) =>
      Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => {
        const lastEventId = admission.lastEventId ?? lastEventIdOf(request)
        const init = { status: 200, headers: responseHeaders(admission.headers), contentType: contentTypeOf(admission.headers) }
        const res = nodeResponseOf(request)
        if (res === undefined) {
          return Effect.succeed(HttpServerResponse.stream(
            connectionStream(admission, lastEventId, hwm, options?.onConnect, underlyingResponse(request)),
            init
          ))
        }
        const pending = new Pending(endpoint, admission, lastEventId, hwm, options?.onConnect, res)
        const response = HttpServerResponse.stream(portableBody, init)
        offer(response.body, pending)
        return Effect.as(HttpApp.appendPreResponseHandler(preResponse), response)
      })))

/** The SSE headers plus the connection's extra headers, checked by the admission (no `undefined` values left). */
const responseHeaders = (extra: Admission["headers"]): Record<string, string | ReadonlyArray<string>> => {
  // no prototype: a header named `__proto__` is a header like any other
  const out: Record<string, string | ReadonlyArray<string>> = Object.assign(Object.create(null), headers)
  if (extra === undefined) return out
  for (const name of Object.keys(extra)) out[name.toLowerCase()] = extra[name]!
  return out
}

const contentTypeOf = (extra: Admission["headers"]): string => {
  if (extra === undefined) return CONTENT_TYPE
  for (const name of Object.keys(extra)) {
    if (name.toLowerCase() === "content-type") return String(extra[name])
  }
  return CONTENT_TYPE
}

/**
 * A route handler: the user id from the query (`?userId=`), rooms from the options
 * (and `roomsParam`), refusals as responses (400 / 429 / 503, see {@link errorResponse}).
 *
 * ```ts
 * HttpRouter.get("/sse", HttpSse.handler({ rooms: ["global"], dropPolicy: "disconnect" }))
 * ```
 *
 * @since 0.2.0
 * @category constructors
 */
export const handler = (
  options?: HandlerOptions
): Effect.Effect<HttpServerResponse.HttpServerResponse, never, SseKify | HttpServerRequest.HttpServerRequest> =>
  Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => {
    const params = queryOf(request.url)
    const userId = params?.get(options?.userIdParam ?? "userId") || options?.defaultUserId || ""
    let register: RespondOptions | undefined = options
    const roomsParam = options?.roomsParam
    if (roomsParam !== undefined && params !== undefined) {
      const extra = params.getAll(roomsParam).flatMap((value) => value.split(",")).map((room) => room.trim())
        .filter((room) => room.length > 0)
      if (extra.length > 0) register = { ...options, rooms: [...(options?.rooms ?? []), ...extra] }
    }
    return respond(userId, register).pipe(Effect.catchAll((error) => Effect.succeed(errorResponse(error))))
  })

/**
 * Shuts the `SseKify` instance down (its layer's `shutdown` options: announce, grace,
 * close) when this layer is released: provided to `HttpServer.serve(app)` it is
 * released after the app stops being served and before the HTTP server closes, so
 * the SSE responses have ended when `server.close()` waits for them.
 */
const shutdownBeforeServer: Layer.Layer<never, never, SseKify | HttpServer.HttpServer> = Layer.scopedDiscard(
  Effect.flatMap(HttpServer.HttpServer, () =>
    Effect.flatMap(SseKify, (sse) =>
      Effect.addFinalizer(() => sse.endpoint.layerShutdown)))
)

/**
 * `HttpServer.serve(app)` for an app with SSE endpoints: the SSE responses get the
 * shutdown event and end (the `SseKify` layer's `shutdown` options: announce, grace
 * ended early when every client is gone, close) before the HTTP server closes, whatever
 * the order in which the `SseKify` and server layers are provided.
 *
 * ```ts
 * HttpSse.serve(app).pipe(
 *   Layer.provide(SseKify.layer()),
 *   Layer.provide(Transport.layerNone),
 *   Layer.provide(NodeHttpServer.layer(createServer, { port: 3000 })),
 *   Layer.launch,
 *   NodeRuntime.runMain
 * )
 * ```
 *
 * @since 0.2.0
 * @category layers
 */
export const serve = <E, R>(
  app: HttpApp.Default<E, R>,
  middleware?: (app: HttpApp.Default) => HttpApp.Default
): Layer.Layer<
  never,
  never,
  SseKify | HttpServer.HttpServer | Exclude<R, HttpServerRequest.HttpServerRequest | Scope.Scope>
> =>
  (middleware === undefined ? HttpServer.serve(app) : HttpServer.serve(app, middleware as never)).pipe(
    Layer.provide(shutdownBeforeServer)
  ) as Layer.Layer<never, never, SseKify | HttpServer.HttpServer | Exclude<R, HttpServerRequest.HttpServerRequest | Scope.Scope>>
