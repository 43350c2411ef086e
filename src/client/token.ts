/**
 * The bearer token of the `postAndListen` POSTs: where it comes from and the
 * `Authorization` header it makes.
 *
 * @since 0.2.0
 */

/**
 * A bearer token, or a function returning the current one (called for each POST).
 * `null` / `undefined` / `''`: no `Authorization` header.
 *
 * @since 0.2.0
 * @category models
 */
export type TokenSource =
  | string
  | null
  | undefined
  | (() => string | null | undefined | Promise<string | null | undefined>)

/** The current token of `source` (calling it when it is a function), or `undefined` when there is none. */
export const resolveToken = async (source: TokenSource): Promise<string | undefined> => {
  const value = typeof source === "function" ? await source() : source
  return typeof value === "string" && value.length > 0 ? value : undefined
}

/** Sets `authorization: Bearer <token>` on `headers` when there is a token. */
export const withBearer = (headers: Record<string, string>, token: string | undefined): Record<string, string> => {
  if (token) headers.authorization = `Bearer ${token}`
  return headers
}
