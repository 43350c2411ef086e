/**
 * The `@effect/platform` endpoint on `@effect/platform-node`'s server: the Node response
 * handed to the hub, as on the Node path, once the platform is done with the request.
 *
 * `respond` makes its response (the portable one: its body streams the connection) and
 * marks it ({@link offer}); {@link preResponse}, a pre-response handler of the request,
 * sees the response the server is about to send: when it is still the marked one (same
 * body, whatever middleware did to its headers), it writes the status and headers the
 * platform would have written, lets the platform see the Node response as ended (so it
 * writes nothing and ends nothing), and once the request's fiber is done gives the Node
 * response to the hub. Anything else is left to the platform (the portable path).
 *
 * The server's `close()` also starts the instance's shutdown ({@link watchServer}), so
 * the SSE responses end when the HTTP server's scope closes, in any layer order.
 */
import * as Cookies from "@effect/platform/Cookies"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Effect from "effect/Effect"
import * as Runtime from "effect/Runtime"
import * as Stream from "effect/Stream"
import type { Admission, ConnectionHandle, Endpoint } from "./domain.js"
import { connectionStream, type UnderlyingResponse, underlyingResponse } from "./platform.js"

const HttpServerRequestTag = HttpServerRequest.HttpServerRequest

/**
 * The members of a Node `ServerResponse` the fast path uses (`@effect/platform-node`'s
 * request exposes it as `resolvedResponse`).
 */
export interface NodeServerResponse extends UnderlyingResponse {
  readonly headersSent: boolean
  readonly writableEnded: boolean
  readonly destroyed: boolean
  readonly socket: { readonly server?: unknown } | null
  writeHead(status: number, headers: Record<string, string | ReadonlyArray<string>>): unknown
  write(chunk: Uint8Array): boolean
  end(): unknown
  on(event: "close" | "error", listener: (...args: Array<any>) => void): unknown
  once(event: "drain", listener: (...args: Array<any>) => void): unknown
}

/** The Node response under a request served by `@effect/platform-node`, or undefined. */
export const nodeResponseOf = (request: unknown): NodeServerResponse | undefined => {
  const res = underlyingResponse(request) as Partial<NodeServerResponse> | undefined
  if (res === undefined) return undefined
  return typeof res.writeHead === "function" && typeof res.write === "function" && typeof res.end === "function" &&
      typeof res.on === "function" && typeof res.once === "function" && typeof res.headersSent === "boolean"
    ? res as NodeServerResponse
    : undefined
}

/**
 * A response made by `HttpSse.respond` on a Node server, waiting for the hand-off. What
 * the connection needs is dropped once handed off: the platform keeps the response (its
 * body included) as long as the connection lives.
 */
export class Pending {
  constructor(
    readonly endpoint: Endpoint,
    public admission: Admission | undefined,
    public lastEventId: string | undefined,
    readonly highWaterMark: number,
    public onConnect: ((handle: ConnectionHandle) => Effect.Effect<void>) | undefined,
    public res: NodeServerResponse | undefined
  ) {}

  /** The portable body: the platform runs it when the hand-off does not happen. */
  body(): Stream.Stream<Uint8Array> {
    return this.admission === undefined
      ? Stream.empty
      : connectionStream(this.admission, this.lastEventId, this.highWaterMark, this.onConnect, this.res)
  }

  /** Taken over (or dropped): forget the connection's settings. */
  take(): void {
    this.admission = undefined
    this.lastEventId = undefined
    this.onConnect = undefined
    this.res = undefined
  }
}

const SHUTTING_DOWN = HttpServerResponse.text("Server is shutting down", { status: 503, headers: { "retry-after": "2" } })

/** Pending hand-offs, by the body of the response `respond` made (garbage with it). */
const pendings = new WeakMap<object, Pending>()
/** The same, by Node response: what {@link portableBody} runs. */
const byResponse = new WeakMap<object, Pending>()

/**
 * The body of every response `respond` makes on a Node server (one stream for all: the
 * platform keeps a response as long as its connection lives, so it holds nothing of
 * the connection). Run by the platform when the hand-off did not happen, it streams the
 * connection of the request it is run for.
 */
export const portableBody: Stream.Stream<Uint8Array> = Stream.unwrap(
  Effect.map(Effect.serviceOption(HttpServerRequestTag), (request) => {
    const res = request._tag === "Some" ? nodeResponseOf(request.value) : undefined
    const pending = res === undefined ? undefined : byResponse.get(res)
    if (pending === undefined) return Stream.empty
    byResponse.delete(res!)
    return pending.body()
  })
)

/**
 * Marks the response `respond` made for the hand-off: when it is the response the
 * server is about to send (same body, whatever middleware did to its headers),
 * {@link preResponse} takes the Node response over.
 */
export const offer = (body: object, pending: Pending): void => {
  pendings.set(body, pending)
  byResponse.set(pending.res!, pending)
}

/**
 * The pre-response handler of the fast path. For a response marked by {@link offer}
 * it writes the status and headers the platform would have written (the response's,
 * after middleware, with its cookies), hides the Node response from the platform
 * until the request's fiber is done (`writableEnded` reads true on that response only,
 * so `@effect/platform-node` writes nothing and ends nothing), then — once the fiber
 * is done — attaches the Node response to the hub as the Node path does. From then on
 * the connection costs what a Node-path connection costs: no fiber, no stream.
 *
 * Anything else (another response, a HEAD request, a response already started, a
 * server other than `@effect/platform-node`) is left to the platform: the body then
 * streams the connection (the portable path).
 */
export const preResponse = (
  request: HttpServerRequest.HttpServerRequest,
  response: HttpServerResponse.HttpServerResponse
): Effect.Effect<HttpServerResponse.HttpServerResponse> => {
  const pending = pendings.get(response.body)
  if (pending === undefined) return Effect.succeed(response)
  pendings.delete(response.body)
  const res = pending.res
  const admission = pending.admission
  if (res === undefined || admission === undefined) return Effect.succeed(response)
  if (request.method === "HEAD" || res.headersSent || res.writableEnded || res.destroyed) return Effect.succeed(response)
  if (!pending.endpoint.accepting()) {
    admission.cancel()
    pending.take()
    byResponse.delete(res)
    return Effect.succeed(SHUTTING_DOWN)
  }
  return Effect.withFiberRuntime((fiber) => {
    try {
      res.writeHead(response.status, headersOf(response))
    } catch {
      return Effect.succeed(response)
    }
    hide(res)
    const runtime = pending.onConnect === undefined ? undefined : Runtime.make({
      context: fiber.currentContext,
      fiberRefs: fiber.getFiberRefs(),
      runtimeFlags: Runtime.defaultRuntimeFlags
    })
    const { endpoint, lastEventId, onConnect } = pending
    pending.take()
    byResponse.delete(res)
    fiber.addObserver(() => handOff(endpoint, admission, lastEventId, onConnect, res, runtime))
    return Effect.succeed(response)
  })
}

const headersOf = (response: HttpServerResponse.HttpServerResponse): Record<string, string | ReadonlyArray<string>> => {
  if (Cookies.isEmpty(response.cookies)) return response.headers
  const headers: Record<string, string | ReadonlyArray<string>> = { ...response.headers }
  const toSet = Cookies.toSetCookieHeaders(response.cookies)
  const existing = response.headers["set-cookie"]
  if (existing !== undefined) toSet.push(existing)
  headers["set-cookie"] = toSet
  return headers
}

/** `writableEnded` reads true on this response only (an own property, removed by {@link show}). */
const hide = (res: NodeServerResponse): void => {
  Object.defineProperty(res, "writableEnded", { value: true, configurable: true, enumerable: false, writable: false })
}

/** Removes the property {@link hide} added (the last one added: the object keeps its shape). */
const show = (res: NodeServerResponse): void => {
  delete (res as { writableEnded?: boolean }).writableEnded
}

/** The request's fiber is done: the platform has let go of the response; the hub takes it. */
const handOff = (
  endpoint: Endpoint,
  admission: Admission,
  lastEventId: string | undefined,
  onConnect: ((handle: ConnectionHandle) => Effect.Effect<void>) | undefined,
  res: NodeServerResponse,
  runtime: Runtime.Runtime<never> | undefined
): void => {
  show(res)
  if (res.destroyed || res.writableEnded) return admission.cancel() // the client left meanwhile
  // Undefined: the instance stopped accepting or `maxConnections` was reached meanwhile.
  const handle: ConnectionHandle | undefined = admission.attach(res, lastEventId)
  if (handle === undefined) {
    try {
      res.end()
    } catch {
      // the socket may be gone
    }
    return
  }
  watchServer(endpoint, res)
  // After the platform's request handler has returned (it adds its listener then).
  process.nextTick(dropPlatformListener, res)
  if (runtime !== undefined && onConnect !== undefined && !res.writableEnded) Runtime.runFork(runtime)(onConnect(handle))
}

/**
 * `@effect/platform-node` interrupts a request's fiber when its response closes before
 * it ended, with a `'close'` listener that holds the fiber. Once the hub has the response
 * the fiber is done and that listener can do nothing, but it keeps the finished fiber
 * (its fiber refs, context and response: ~2 KB) alive as long as the connection: it is
 * removed. Only that listener is (recognised by what it does); any other stays.
 */
const dropPlatformListener = (res: NodeServerResponse): void => {
  const emitter = res as unknown as {
    listeners?: (event: string) => Array<(...args: Array<unknown>) => void>
    removeListener?: (event: string, listener: (...args: Array<unknown>) => void) => unknown
  }
  if (typeof emitter.listeners !== "function" || typeof emitter.removeListener !== "function") return
  for (const listener of emitter.listeners("close")) {
    if (listener.length === 0 && isPlatformAbortListener(listener)) emitter.removeListener("close", listener)
  }
}

const isPlatformAbortListener = (listener: (...args: Array<unknown>) => void): boolean => {
  let source: string
  try {
    source = Function.prototype.toString.call(listener)
  } catch {
    return false
  }
  return source.length < 400 && source.includes("writableEnded") && source.includes("unsafeInterruptAsFork")
}

// ---------------------------------------------------------------------------
// Shutdown with the HTTP server
// ---------------------------------------------------------------------------

interface ClosableServer {
  close: (...args: Array<unknown>) => unknown
  closeIdleConnections?: () => void
  [kEngines]?: Set<Endpoint>
}

const kEngines: unique symbol = Symbol.for("ssekify/platform/engines")

/**
 * Ties the instance to the HTTP server a connection lives on: when the server starts
 * closing (`server.close()`, which `NodeHttpServer` calls when its scope closes and
 * which waits for every open response), the instance runs its layer's shutdown —
 * announce, grace (ended early when every client is gone), close — so the SSE
 * responses end and the server's close completes, whichever layer is released first.
 * Installed once per server and instance, not per connection.
 */
export const watchServer = (endpoint: Endpoint, res: NodeServerResponse): void => {
  const server = res.socket?.server as ClosableServer | undefined
  if (server === undefined || server === null || typeof server.close !== "function") return
  let engines = server[kEngines]
  if (engines === undefined) {
    engines = new Set()
    const set = engines
    const close = server.close
    server[kEngines] = set
    server.close = function(this: unknown, ...args: Array<unknown>) {
      // `close()` closes the connections idle now; an SSE response ended by the shutdown
      // leaves its socket idle later, kept alive until `keepAliveTimeout`: close it then.
      const closeIdle = () => server.closeIdleConnections?.()
      for (const e of set) {
        for (const sink of e.sinks()) {
          const r = sink as Partial<NodeServerResponse>
          if (r.socket?.server === server && typeof r.once === "function") {
            ;(r.once as (event: string, listener: () => void) => unknown)("finish", closeIdle)
          }
        }
        e.shutdownInBackground()
      }
      set.clear()
      return close.apply(this, args)
    }
  }
  if (!endpoint.shuttingDown()) engines.add(endpoint)
}
