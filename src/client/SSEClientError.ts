/**
 * The error `SSEClient` throws and rejects with, and its codes.
 *
 * @since 0.2.0
 */

/**
 * Codes of {@link SSEClientError}.
 *
 * - `'NO_EVENTSOURCE'` / `'NO_FETCH'`: no global `EventSource` / `fetch` and none passed;
 * - `'CLOSED'`: the client was closed;
 * - `'CONNECT_TIMEOUT'`: the EventSource did not open within `connectTimeoutMs`;
 * - `'DUPLICATE_REQUEST_ID'`: a subscription with this requestId is active;
 * - `'POST_FAILED'`: `fetch` rejected (network error);
 * - `'POST_TIMEOUT'`: no response within `timeoutMs`;
 * - `'ABORTED'`: the caller's `signal` fired.
 *
 * @since 0.2.0
 * @category errors
 */
export type SSEClientErrorCode =
  | "NO_EVENTSOURCE"
  | "NO_FETCH"
  | "CLOSED"
  | "CONNECT_TIMEOUT"
  | "DUPLICATE_REQUEST_ID"
  | "POST_FAILED"
  | "POST_TIMEOUT"
  | "ABORTED"

/**
 * The error `SSEClient` throws and rejects with.
 *
 * @since 0.2.0
 * @category errors
 */
export class SSEClientError extends Error {
  override readonly name = "SSEClientError"
  readonly code: SSEClientErrorCode
  /** The requestId concerned, when there is one. */
  readonly requestId: string | undefined

  constructor(code: SSEClientErrorCode, message: string, options?: { readonly cause?: unknown; readonly requestId?: string | undefined }) {
    super(message, options !== undefined && "cause" in options ? { cause: options.cause } : undefined)
    this.code = code
    this.requestId = options?.requestId
  }
}

/** The error of a call on a closed client. */
export const closedError = (): SSEClientError => new SSEClientError("CLOSED", "the client is closed")
