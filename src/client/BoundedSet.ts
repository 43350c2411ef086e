/**
 * The client's bounded memory of what it has seen (frame ids, ended requestIds).
 *
 * @since 0.2.0
 */

/** A set that forgets its oldest entries beyond `limit`. */
export class BoundedSet {
  readonly #items = new Set<string>()
  constructor(readonly limit: number) {}

  get size(): number {
    return this.#items.size
  }

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
