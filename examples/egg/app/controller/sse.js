'use strict'

const { Controller } = require('egg')

class SseController extends Controller {
  // The SSE endpoint: Egg's `ctx.res` is Node's ServerResponse. The library owns it
  // from here, so tell Egg (Koa) not to respond.
  async stream() {
    const { ctx, app } = this
    const userId = String(ctx.query.userId || 'guest')
    app.sse.registerConnection(userId, ctx.res, { rooms: ['global'] })
    ctx.respond = false
  }

  async notify() {
    const { ctx, app } = this
    ctx.body = { delivered: app.sse.sendToUser(ctx.params.userId, ctx.request.body, { event: 'notify' }) }
  }

  async broadcast() {
    const { ctx, app } = this
    await app.sse.publish(ctx.request.body, undefined, { event: 'broadcast' })
    ctx.body = { ok: true }
  }

  async room() {
    const { ctx, app } = this
    ctx.body = { delivered: app.sse.sendToRoom(ctx.params.room, ctx.request.body, { event: 'room' }) }
  }

  async publishRoom() {
    const { ctx, app } = this
    await app.sse.publishToRoom(ctx.params.room, ctx.request.body, { event: 'room' })
    ctx.body = { ok: true }
  }

  async close() {
    const { ctx, app } = this
    app.sse.close(ctx.params.userId)
    ctx.body = { closed: true }
  }

  async stats() {
    this.ctx.body = this.app.sse.stats()
  }

  async index() {
    this.ctx.type = 'html'
    this.ctx.body = `<!doctype html><meta charset="utf-8"><title>ssekify · Egg</title>
<h1>ssekify · Egg</h1><pre id="log"></pre>
<script>
  const es = new EventSource('/sse?userId=alice')
  for (const name of ['notify', 'broadcast', 'room']) es.addEventListener(name, (e) => {
    document.getElementById('log').textContent += name + ' ' + e.data + '\\n'
  })
</script>
<p>Send with examples/egg/api.http, e.g. POST /notify/alice.</p>`
  }
}

module.exports = SseController
