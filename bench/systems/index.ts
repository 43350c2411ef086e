/** The systems under test, in report order. `raw` must stay first: ratios are taken against it. */
import type { SystemDef } from "./types.js"

const loaders: Record<string, () => Promise<{ default: SystemDef }>> = {
  raw: () => import("./raw.js"),
  "better-sse": () => import("./better-sse.js"),
  ssekify: () => import("./ssekify.js"),
  "ssekify-effect": () => import("./ssekify-effect.js")
}

export const SYSTEM_NAMES: ReadonlyArray<string> = Object.keys(loaders)

export async function loadSystem(name: string): Promise<SystemDef> {
  const load = loaders[name]
  if (load === undefined) throw new Error(`unknown system '${name}' (known: ${SYSTEM_NAMES.join(", ")})`)
  return (await load()).default
}
