import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // Builds dist/ once (into a temp dir, then renamed in) before any file runs: the
    // examples and the package test load the built package.
    globalSetup: ["test/examples/globalSetup.ts"],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Suites start real servers, redis-server processes and a browser: keep the
    // number of parallel files modest on a 2-core machine.
    pool: "forks",
    poolOptions: { forks: { maxForks: 2, minForks: 1 } },
    sequence: { concurrent: false }
  }
})
