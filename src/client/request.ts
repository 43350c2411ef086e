/**
 * `postAndListen`: one request, from its `requestId` to its subscription and its POST
 * (JSON body, bearer token, timeout, abort), and what the call resolves to.
 *
 * @since 0.2.0
 */
import type { Connection } from "./connection.js"
import type { SubscriptionEnd } from "./events.js"
import type { MessageHandler } from "./frames.js"
import { type ClientConfig, msOption } from "./options.js"
import { type AbortSignalLike, type FetchLike, globalValue, type PostRequestInit, type ResponseLike, type Timer } from "./platform.js"
import type { RequestRegistry } from "./registry.js"
import { closedError, SSEClientError } from "./SSEClientError.js"
import { resolveToken, type TokenSource, withBearer } from "./token.js"

/**
 * What `postAndListen` resolves to.
 *
 * @since 0.2.0
 * @category models
 */
export interface PostAndListenResult<R extends ResponseLike = ResponseLike> {
  /** The id the client generated (or was given) and sent in the body. */
  readonly requestId: string
  /** The POST's response (its body is left unread). */
  readonly response: R
  /** Stops routing this request's frames to the callback (idempotent). */
  readonly unsubscribe: () => void
  /** Resolves when the subscription ends, whatever the reason (never rejects). */
  readonly ended: Promise<SubscriptionEnd>
}

/**
 * Options of one `postAndListen` call.
 *
 * @since 0.2.0
 * @category models
 */
export interface PostAndListenOptions {
  /** Use this requestId instead of a generated one. */
  readonly requestId?: string | undefined
  /** Extra request headers (after the client's `headers`). */
  readonly headers?: Readonly<Record<string, string>> | undefined
  /** Overrides the client's `token` for this call. */
  readonly token?: TokenSource
  /** fetch `credentials`. Default: the client's (`'same-origin'`). */
  readonly credentials?: "omit" | "same-origin" | "include" | undefined
  /**
   * Rejects with `ABORTED` when it fires before the response: while the client waits for
   * the EventSource to open (nothing was sent), or during the POST (which is aborted, and
   * the subscription ended with `'failed'`).
   */
  readonly signal?: AbortSignalLike | undefined
  /** Fails the POST after this many ms without a response. Default: the client's `postTimeoutMs` (30 000); 0: none. */
  readonly timeoutMs?: number | undefined
  /** Ends the subscription with `'timeout'` when nothing arrives for it this long. Default: the client's `idleTimeoutMs` (0: never). */
  readonly idleTimeoutMs?: number | undefined
  /** Called once when the subscription ends. */
  readonly onEnd?: ((end: SubscriptionEnd) => void) | undefined
}


/** What a request uses of its client. */
export interface RequestContext<R extends ResponseLike> {
  readonly config: ClientConfig<R>
  readonly connection: Connection
  readonly registry: RequestRegistry
}

const duplicate = (requestId: string): SSEClientError =>
  new SSEClientError("DUPLICATE_REQUEST_ID", `a subscription for requestId ${requestId} is active`, { requestId })

const describeError = (error: unknown): string =>
  error instanceof Error ? error.message : typeof error === "string" ? error : "unknown error"

/** See `SSEClient#postAndListen`. */
export const postAndListen = async <R extends ResponseLike>(
  ctx: RequestContext<R>,
  url: string,
  body: object | null | undefined,
  onMessage: MessageHandler<unknown>,
  options: PostAndListenOptions | undefined
): Promise<PostAndListenResult<R>> => {
  const { config, connection, registry } = ctx
  const o: PostAndListenOptions = options ?? {}
  if (connection.closed) throw closedError()
  const fetchFn = config.fetch ?? globalValue<FetchLike<R>>("fetch")
  if (fetchFn === undefined) throw new SSEClientError("NO_FETCH", "no global fetch: pass options.fetch")
  if (typeof onMessage !== "function") throw new TypeError("ssekify/client: onMessage must be a function")
  const requestId: unknown = o.requestId ?? config.generateRequestId()
  // A requestId that is not a non-empty string never matches a frame's (the routing
  // reads string ids only; the server keys its seq on a truthy one).
  if (typeof requestId !== "string" || requestId === "") {
    throw new TypeError(`ssekify/client: a requestId must be a non-empty string, got ${typeof requestId === "string" ? "''" : typeof requestId}`)
  }
  if (registry.has(requestId)) throw duplicate(requestId)
  const signal: AbortSignalLike | undefined = o.signal
  const aborted = () => new SSEClientError("ABORTED", `request ${requestId} aborted`, { requestId })
  if (signal?.aborted === true) throw new SSEClientError("ABORTED", "aborted before the request", { requestId })
  // Frames sent before the EventSource is open would be lost: wait for it first.
  await connection.connect(signal === undefined ? undefined : { signal, error: aborted })
  if (connection.closed) throw closedError()
  if (registry.has(requestId)) throw duplicate(requestId)
  // Subscribe before the POST: the server may send frames before it answers.
  const idleMs = msOption("idleTimeoutMs", o.idleTimeoutMs, config.idleTimeoutMs)
  const sub = registry.subscribe(requestId, onMessage, o.onEnd, idleMs)
  let response: R
  try {
    const token = await resolveToken(o.token !== undefined ? o.token : config.token)
    // close() while the token was being fetched: the task must not start.
    if (connection.closed) throw closedError()
    const headers = withBearer({ "content-type": "application/json", accept: "application/json", ...config.headers, ...o.headers }, token)
    const payload = JSON.stringify({ ...(body ?? {}), requestId })
    const timeoutMs = msOption("timeoutMs", o.timeoutMs, config.postTimeoutMs)
    response = await post(fetchFn, url, {
      method: "POST",
      headers,
      body: payload,
      credentials: o.credentials ?? config.credentials
    }, { requestId, timeoutMs, signal, aborted })
  } catch (error) {
    registry.end(sub, "failed")
    throw error
  }
  if (!response.ok) registry.end(sub, "http")
  return {
    requestId,
    response,
    unsubscribe: () => registry.end(sub, "unsubscribed"),
    ended: sub.ended
  }
}

interface PostControl {
  readonly requestId: string
  /** 0: none. */
  readonly timeoutMs: number
  readonly signal: AbortSignalLike | undefined
  readonly aborted: () => SSEClientError
}

/** `fetch` with a timeout and the caller's signal; its failures become `SSEClientError`s. */
const post = <R extends ResponseLike>(
  fetchFn: FetchLike<R>,
  url: string,
  init: Omit<PostRequestInit, "signal">,
  { aborted, requestId, signal, timeoutMs }: PostControl
): Promise<R> => {
  const Controller = globalValue<typeof AbortController>("AbortController")
  const controller = Controller === undefined ? undefined : new Controller()
  return new Promise<R>((resolve, reject) => {
    let settled = false
    let timer: Timer | undefined
    const settle = (): boolean => {
      if (settled) return false
      settled = true
      if (timer !== undefined) clearTimeout(timer)
      signal?.removeEventListener("abort", onAbort)
      return true
    }
    const fail = (error: SSEClientError) => {
      if (!settle()) return
      reject(error)
      try {
        controller?.abort(error)
      } catch {
        // nothing to abort
      }
    }
    const onAbort = () => fail(aborted())
    if (timeoutMs > 0) {
      timer = setTimeout(
        () => fail(new SSEClientError("POST_TIMEOUT", `no response to POST ${url} within ${timeoutMs} ms`, { requestId })),
        timeoutMs
      )
    }
    if (signal?.aborted === true) {
      onAbort()
      return
    }
    signal?.addEventListener("abort", onAbort)
    const full: PostRequestInit = controller === undefined ? init : { ...init, signal: controller.signal }
    let pending: Promise<R>
    try {
      pending = fetchFn(url, full)
    } catch (error) {
      pending = Promise.reject(error)
    }
    pending.then(
      (response) => {
        if (settle()) resolve(response)
      },
      (error: unknown) => fail(new SSEClientError("POST_FAILED", `POST ${url} failed: ${describeError(error)}`, { cause: error, requestId }))
    )
  })
}
