/**
 * Optional vitest `globalSetup` (register it in vitest.config.ts:
 * `globalSetup: ["test/examples/globalSetup.ts"]`): builds `dist/` once before any test
 * file runs, so the suites that start examples (which `require('ssekify')`, i.e. `dist/`)
 * do not each wait for it. The suites also call `ensureBuilt` themselves, so they work
 * without it; it is a no-op when `dist/` is fresh.
 */
import { ensureBuilt } from "./harness.js"

export default async function setup(): Promise<void> {
  await ensureBuilt()
}
