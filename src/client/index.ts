/**
 * `ssekify/client`: the browser and Node client of the `postAndListen` pattern.
 *
 * One `EventSource` carries the frames of many requests; `postAndListen` POSTs a task
 * with a fresh `requestId` and calls back with every frame whose data carries that
 * `requestId`, until `phase: 'done'` or `'error'`. Frames of no request go to
 * `onBroadcast`. A watchdog reopens a silent connection; duplicates after a replay or
 * a reconnect are dropped. No dependency: it uses the global `EventSource` and `fetch`
 * (or ones passed in the options).
 *
 * ```ts
 * import { SSEClient } from "ssekify/client"
 *
 * const sse = new SSEClient({ url: "/sse?userId=alice", eventName: "notify", token: localStorage.getItem("authToken") })
 * const { requestId, response, unsubscribe } = await sse.postAndListen("/api/chat", { message: "Hello" }, ({ phase, payload }) => {
 *   console.log(phase, payload)
 * })
 * ```
 *
 * @since 0.2.0
 */
export { type ConnectionInfo, SSEClient } from "./SSEClient.js"
export { SSEClientError, type SSEClientErrorCode } from "./SSEClientError.js"
export type { ConnectionState } from "./connection.js"
export type { DropReason, EndReason, ReconnectReason, SSEClientEventMap, SubscriptionEnd } from "./events.js"
export type { BroadcastHandler, FrameMeta, ListenMessage, MessageHandler, Phase } from "./frames.js"
export type { SSEClientOptions } from "./options.js"
export type {
  AbortSignalLike,
  EventSourceConstructor,
  EventSourceInitLike,
  EventSourceLike,
  EventSourceListener,
  FetchLike,
  MessageEventLike,
  PostRequestInit,
  ResponseLike
} from "./platform.js"
export type { PostAndListenOptions, PostAndListenResult } from "./request.js"
export type { TokenSource } from "./token.js"
