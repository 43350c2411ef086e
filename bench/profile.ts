/**
 * Summarise a V8 CPU profile (from `bench/run.ts --cpu-prof`): the functions with
 * the most self time, and the share of time spent in GC, idle and native code.
 *
 *   node --import tsx bench/profile.ts bench/results/profiles/<run>/<file>.cpuprofile [top=25]
 */
import * as fs from "node:fs"

interface Node {
  readonly id: number
  readonly callFrame: { readonly functionName: string; readonly url: string; readonly lineNumber: number }
  readonly children?: ReadonlyArray<number>
}
interface Profile {
  readonly nodes: ReadonlyArray<Node>
  readonly samples: ReadonlyArray<number>
  readonly timeDeltas: ReadonlyArray<number>
}

const file = process.argv[2]
if (file === undefined) {
  process.stderr.write("usage: node --import tsx bench/profile.ts <file.cpuprofile> [top]\n")
  process.exit(2)
}
const top = Number(process.argv[3] ?? 25)
const prof = JSON.parse(fs.readFileSync(file, "utf8")) as Profile
const byId = new Map(prof.nodes.map((n) => [n.id, n]))
const self = new Map<string, number>()
let total = 0
for (let i = 0; i < prof.samples.length; i++) {
  const n = byId.get(prof.samples[i] as number)
  const dt = prof.timeDeltas[i] ?? 0
  if (n === undefined) continue
  total += dt
  const f = n.callFrame
  const where = f.url === "" ? "" : ` ${f.url.replace(/^.*\/(node_modules|work\/main)\//, "")}:${f.lineNumber + 1}`
  const key = `${f.functionName === "" ? "(anonymous)" : f.functionName}${where}`
  self.set(key, (self.get(key) ?? 0) + dt)
}
const rows = [...self.entries()].sort((a, b) => b[1] - a[1]).slice(0, top)
process.stdout.write(`${file}: ${(total / 1000).toFixed(0)} ms sampled\n`)
for (const [k, v] of rows) {
  process.stdout.write(`${((v / total) * 100).toFixed(1).padStart(5)}%  ${(v / 1000).toFixed(1).padStart(8)} ms  ${k}\n`)
}
