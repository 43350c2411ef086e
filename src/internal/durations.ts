/**
 * Durations of the options: the Effect API takes `Duration.DurationInput` (`keepAlive`,
 * `retry`, `recentTTL`, `shutdown.grace`, …) next to the millisecond numbers of 0.1.6
 * (`keepAliveMs`, …). One of the two, checked, in milliseconds.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { InvalidInput } from "../Errors.js"

const fail = (field: string, reason: string): never => {
  throw new InvalidInput({ field, reason })
}

const show = (value: unknown): string =>
  value === null
    ? "null"
    : typeof value === "string"
    ? `'${value.slice(0, 40)}'`
    : typeof value === "number" || typeof value === "bigint" || typeof value === "boolean"
    ? String(value)
    : Array.isArray(value)
    ? "an array"
    : Duration.isDuration(value)
    ? Duration.format(value)
    : typeof value

/** A number written as text (or a number) below zero, or not a number at all. */
const negativeOrNaN = (n: unknown): boolean =>
  typeof n === "number" ? !(n >= 0) : typeof n === "bigint" ? n < 0n : typeof n === "string" && /^\s*-/.test(n)

/**
 * A `Duration.DurationInput` in milliseconds: a finite duration of at least `minMs`
 * (a number is milliseconds, a bigint nanoseconds, `"5 seconds"`, `[s, ns]`, a
 * `Duration`). Anything else, negative, NaN or infinite is `InvalidInput` on `field`
 * (`Duration.decode` would read `-1` or `NaN` as zero).
 */
export const toMillis = (field: string, value: unknown, minMs = 0): number => {
  const parts: ReadonlyArray<unknown> = Array.isArray(value) ? value : [value]
  const decoded = parts.some(negativeOrNaN) || (Array.isArray(value) && value.length !== 2)
    ? Option.none()
    : Duration.decodeUnknown(value)
  if (Option.isNone(decoded) || !Duration.isFinite(decoded.value)) {
    return fail(field, `must be a finite, non-negative Duration (e.g. "5 seconds" or a number of milliseconds), got ${show(value)}`)
  }
  const ms = Duration.toMillis(decoded.value)
  if (ms < minMs) return fail(field, `must be at least ${minMs} ms, got ${Duration.format(decoded.value)}`)
  return ms
}

/**
 * The option given either as a Duration (`field`) or as milliseconds (`msField`, the
 * 0.1.6 name): both at once is `InvalidInput`; neither is `fallback`. `ms` is checked
 * by `millis` (the caller's number check).
 */
export const either = (
  field: string,
  value: unknown,
  msField: string,
  ms: unknown,
  millis: (field: string, value: unknown) => number,
  fallback: number,
  minMs = 0
): number => {
  if (value === undefined) return ms === undefined ? fallback : millis(msField, ms)
  if (ms !== undefined) return fail(field, `give ${field} or ${msField}, not both`)
  return toMillis(field, value, minMs)
}

/** {@link either} as an effect failing with the `InvalidInput` (for the stores' constructors). */
export const eitherEffect = (
  field: string,
  value: unknown,
  msField: string,
  ms: unknown,
  fallback: number
): Effect.Effect<number, InvalidInput> =>
  Effect.suspend(() => {
    try {
      return Effect.succeed(either(field, value, msField, ms, nonNegative, fallback))
    } catch (e) {
      return e instanceof InvalidInput ? Effect.fail(e) : Effect.die(e)
    }
  })

const nonNegative = (field: string, value: unknown): number =>
  typeof value === "number" && value >= 0 && Number.isFinite(value)
    ? value
    : fail(field, `must be a finite number >= 0, got ${show(value)}`)
