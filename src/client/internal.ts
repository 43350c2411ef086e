/**
 * Helpers of `ssekify/client`: platform look-ups, ids, URLs, a bounded set. No import
 * of Node modules: this file runs in browsers.
 */

interface CryptoLike {
  readonly randomUUID?: () => string
  readonly getRandomValues?: (array: Uint8Array) => Uint8Array
}

/** A global, looked up at call time (tests and polyfills may install it late). */
export const globalValue = <T>(name: string): T | undefined => {
  const value = (globalThis as Record<string, unknown>)[name]
  return value === undefined || value === null ? undefined : (value as T)
}

const hex = (bytes: Uint8Array): string => {
  let out = ""
  for (let i = 0; i < bytes.length; i++) out += bytes[i]!.toString(16).padStart(2, "0")
  return out
}

/** `crypto.randomUUID()` when available (browsers expose it in secure contexts only), else a v4 UUID. */
export const randomId = (): string => {
  const crypto = globalValue<CryptoLike>("crypto")
  if (crypto !== undefined && typeof crypto.randomUUID === "function") {
    try {
      return crypto.randomUUID()
    } catch {
      // not a secure context: fall through
    }
  }
  const bytes = new Uint8Array(16)
  if (crypto !== undefined && typeof crypto.getRandomValues === "function") crypto.getRandomValues(bytes)
  else for (let i = 0; i < 16; i++) bytes[i] = Math.floor(Math.random() * 256)
  bytes[6] = (bytes[6]! & 0x0f) | 0x40
  bytes[8] = (bytes[8]! & 0x3f) | 0x80
  const h = hex(bytes)
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`
}

const escapeRegExp = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")

/**
 * `url` with the query parameter `name` set to `value` (replacing an existing one),
 * without parsing it as a URL (it may be relative).
 */
export const withQueryParam = (url: string, name: string, value: string): string => {
  const hash = url.indexOf("#")
  const base = hash < 0 ? url : url.slice(0, hash)
  const fragment = hash < 0 ? "" : url.slice(hash)
  const q = base.indexOf("?")
  const path = q < 0 ? base : base.slice(0, q)
  const query = q < 0 ? "" : base.slice(q + 1)
  const key = new RegExp(`^${escapeRegExp(encodeURIComponent(name))}(=|$)`)
  const kept = query.split("&").filter((part) => part !== "" && !key.test(part))
  kept.push(`${encodeURIComponent(name)}=${encodeURIComponent(value)}`)
  return `${path}?${kept.join("&")}${fragment}`
}

/** A set that forgets its oldest entries beyond `limit`. */
export class BoundedSet {
  readonly #items = new Set<string>()
  constructor(readonly limit: number) {}

  has(value: string): boolean {
    return this.#items.has(value)
  }

  add(value: string): void {
    if (this.#items.has(value)) return
    this.#items.add(value)
    if (this.#items.size > this.limit) {
      const oldest = this.#items.values().next()
      if (oldest.done !== true) this.#items.delete(oldest.value)
    }
  }

  delete(value: string): void {
    this.#items.delete(value)
  }

  clear(): void {
    this.#items.clear()
  }
}

/** A non-negative finite number option, or the default. */
export const msOption = (name: string, value: number | undefined, fallback: number): number => {
  if (value === undefined) return fallback
  if (typeof value !== "number" || !Number.isFinite(value) || value < 0) {
    throw new TypeError(`ssekify/client: option ${name} must be a non-negative number, got ${String(value)}`)
  }
  return value
}

/** Lets a timer not keep Node alive (no-op in browsers). */
export const unref = (timer: unknown): void => {
  const t = timer as { unref?: () => void } | null
  if (t !== null && typeof t === "object" && typeof t.unref === "function") t.unref()
}

export const isPlainRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value)
