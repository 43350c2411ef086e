'use strict'
/**
 * Preload of the `npm run dev:*` scripts (`node -r ./examples/ensure-built.cjs ...`):
 * the examples `require('ssekify')`, which resolves to this repository's `dist/`; build
 * it first when it is missing or older than `src/` (a fresh clone, or after an edit).
 */
const { execFileSync } = require('child_process')
const fs = require('fs')
const path = require('path')

const root = path.join(__dirname, '..')

const newest = (dir) =>
  fs.readdirSync(dir, { withFileTypes: true }).reduce((max, entry) => {
    const p = path.join(dir, entry.name)
    return Math.max(max, entry.isDirectory() ? newest(p) : fs.statSync(p).mtimeMs)
  }, 0)

const outputs = ['index.cjs', 'index.js'].map((f) => path.join(root, 'dist', f))
const stale =
  !outputs.every((f) => fs.existsSync(f)) ||
  Math.max(newest(path.join(root, 'src')), fs.statSync(path.join(root, 'package.json')).mtimeMs) >
    Math.min(...outputs.map((f) => fs.statSync(f).mtimeMs))

if (stale) {
  console.log('building ssekify (dist/ is missing or older than src/) ...')
  try {
    execFileSync(process.execPath, [path.join(root, 'node_modules', 'tsup', 'dist', 'cli-default.js')], {
      cwd: root,
      stdio: 'pipe'
    })
  } catch (err) {
    process.stderr.write(String(err.stdout || '') + String(err.stderr || ''))
    console.error('the build failed: run `npm run build` to see why')
    process.exit(1)
  }
}
