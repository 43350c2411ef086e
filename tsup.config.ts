import { defineConfig } from "tsup"

export default defineConfig({
  entry: {
    index: "src/index.ts",
    client: "src/client/index.ts",
    platform: "src/HttpSse.ts",
    redis: "src/redis.ts",
    prometheus: "src/prometheus.ts"
  },
  format: ["esm", "cjs"],
  dts: true,
  sourcemap: true,
  clean: true,
  target: "node20",
  platform: "node",
  splitting: true,
  treeshake: true,
  shims: true,
  external: ["effect", "@effect/platform", "@effect/platform-node", "ioredis", "prom-client"]
})
