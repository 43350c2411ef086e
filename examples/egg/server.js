'use strict'
/**
 * Egg 3 in single-process mode (no egg-bin / egg-scripts needed):
 *
 *   npm run dev:egg      PORT=7001 by default
 *
 * Requests to try: examples/egg/api.http
 */
const http = require('http')
const egg = require('egg')

const PORT = Number(process.env.PORT || 7001)
const HOST = process.env.HOST

const main = async () => {
  const app = await egg.start({ baseDir: __dirname, ignoreWarning: true })
  const server = http.createServer(app.callback())
  app.emit('server', server)
  server.listen(PORT, HOST, () => {
    console.log(`ssekify egg example listening on http://${HOST || 'localhost'}:${PORT}`)
  })
  process.once('SIGTERM', async () => {
    await app.close() // runs the boot hook's beforeClose: sse.shutdown()
    server.close()
    server.closeIdleConnections()
  })
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
