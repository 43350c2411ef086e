/**
 * The plain-text body of a 400 refusing a connection, shared by the Node path
 * (`registerConnection`) and the `ssekify/platform` endpoint so both say the same thing.
 */
import type { InvalidInput } from "../Errors.js"

const TOO_LONG = "is longer than maxUserIdLength"

/** The `reason` of the `InvalidInput` for a user id over `maxUserIdLength`. */
export const userIdTooLong = (limit: number): string => `${TOO_LONG} (${limit})`

/**
 * What a 400 says: `userId required` for a missing / empty id (as 0.1.6), `userId longer
 * than maxUserIdLength (256)` for one over the limit, else the generic options message.
 */
export const invalidInputText = (error: InvalidInput): string => {
  if (error.field !== "userId") return "invalid SSE connection options"
  return error.reason.startsWith(TOO_LONG) ? `userId longer than${error.reason.slice("is longer than".length)}` : "userId required"
}
