/**
 * ssekify through the Effect API (`SseKify` service / platform endpoint).
 * PLACEHOLDER: the lead provides the server entry. To enable it, implement
 * `create` (either `register(userId, req, res, rooms)` on the bench's node:http
 * server, or `attach(server)` to mount an `@effect/platform` app answering
 * `GET /sse?u=<userId>&i=<index>` with the user in room "r1") and make
 * `available` return `ensureBuilt()`.
 */
import type { SystemDef } from "./types.js"

const ssekifyEffect: SystemDef = {
  name: "ssekify-effect",
  description: "ssekify through the Effect API (SseKify service / @effect/platform endpoint)",
  hasDropPolicy: true,
  available: () => Promise.resolve({ ok: false, reason: "server entry not written yet (bench/systems/ssekify-effect.ts)" }),
  create: () => Promise.reject(new Error("ssekify-effect: not available yet"))
}

export default ssekifyEffect
