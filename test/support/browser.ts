/**
 * Headless Chromium from the Debian `chromium` package, driven by playwright-core
 * (never a downloaded browser). Without a `chromium` on the PATH the browser suites
 * skip with one loud line; under CI=true they fail instead.
 */
import { execFileSync } from "node:child_process"
import { type Browser, chromium } from "playwright-core"

export const chromiumPath = (): string | undefined => {
  try {
    const p = execFileSync("which", ["chromium"], { encoding: "utf8" }).trim()
    return p.length > 0 ? p : undefined
  } catch {
    return undefined
  }
}

/** Whether the browser suites can run; prints one loud line when they cannot. */
export const browserAvailable = (): boolean => {
  if (chromiumPath() !== undefined) return true
  if (process.env.CI === "true") {
    throw new Error("chromium is not on the PATH but CI=true: install the Debian package `chromium` (.ci/run does)")
  }
  console.warn("\n!!! SKIPPING BROWSER TESTS: `chromium` is not on the PATH (apt-get install -y chromium) !!!\n")
  return false
}

/** Launches headless Chromium (playwright gives it a fresh temporary profile). */
export const launch = async (): Promise<{ browser: Browser; close: () => Promise<void> }> => {
  const executablePath = chromiumPath()
  if (executablePath === undefined) throw new Error("chromium not found")
  const browser = await chromium.launch({
    executablePath,
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
      "--disable-quic"
    ],
    timeout: 30_000
  })
  return {
    browser,
    close: async () => {
      await browser.close().catch(() => {})
    }
  }
}
