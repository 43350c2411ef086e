/**
 * Lazy loading of the optional `ioredis` peer dependency.
 *
 * ssekify works without Redis, so `ioredis` is never imported statically (only its
 * types are). It is `require`d the first time a Redis connection is made, through
 * `createRequire(import.meta.url)`, which works in the ESM build and, with tsup's
 * `shims`, in the CJS build.
 *
 * @internal
 */
import { createRequire } from "node:module"
import type * as IORedis from "ioredis"

/** The part of the `ioredis` module ssekify uses. */
export interface IORedisModule {
  readonly Redis: typeof IORedis.Redis
  readonly Cluster: typeof IORedis.Cluster
}

/** The message of the error thrown when `ioredis` cannot be loaded. */
export const missingMessage =
  "ssekify: Redis support needs the optional peer dependency 'ioredis' (v5), which could not be loaded. " +
  "Install it with `npm i ioredis`."

/** Thrown when `ioredis` is not installed. */
export class IORedisMissingError extends Error {
  readonly code = "IOREDIS_MISSING"
  constructor(cause: unknown) {
    super(missingMessage, { cause })
    this.name = "IORedisMissingError"
  }
}

const isModuleNotFound = (error: unknown): boolean =>
  typeof error === "object" && error !== null &&
  ((error as { code?: unknown }).code === "MODULE_NOT_FOUND" ||
    (error as { code?: unknown }).code === "ERR_MODULE_NOT_FOUND")

/**
 * Loads `ioredis` as seen from `base` (a file URL or path; a directory path must end
 * with `/`). Exposed so the missing-module path can be tested from a directory where
 * `ioredis` does not resolve.
 */
export const loadFrom = (base: string | URL): IORedisModule => {
  const require = createRequire(base)
  let mod: unknown
  try {
    mod = require("ioredis")
  } catch (error) {
    if (isModuleNotFound(error)) throw new IORedisMissingError(error)
    throw error
  }
  const m = mod as Partial<IORedisModule> | undefined
  if (m === undefined || typeof m.Redis !== "function" || typeof m.Cluster !== "function") {
    throw new IORedisMissingError(new Error("the loaded 'ioredis' module has no Redis / Cluster export (ioredis 5 is required)"))
  }
  return m as IORedisModule
}

let cached: IORedisModule | undefined

/** Loads `ioredis` once; throws {@link IORedisMissingError} when it is not installed. */
export const load = (): IORedisModule => {
  if (cached === undefined) cached = loadFrom(import.meta.url)
  return cached
}
