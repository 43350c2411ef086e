'use strict'
/**
 * An upstream SSE source, as the bridges consume it (a module, not an example to run).
 *
 * - `open()` connects (idempotent); `close()` disconnects and cancels any reconnect.
 * - Network errors and a stream the upstream ends: the `eventsource` package reconnects
 *   by itself after the upstream's `retry:` and sends `Last-Event-ID`.
 * - A fatal answer (non-200, not text/event-stream): it gives up, so we reconnect with
 *   exponential backoff (1 s, 2 s, 4 s ... 30 s), resuming after the last id we saw.
 * - `headers()` is called for every request (e.g. an `X-Upstream-To` or a fresh token).
 *
 * eventsource v4 is CommonJS-friendly with a named export:
 * `const { EventSource } = require('eventsource')`.
 */
const { EventSource } = require('eventsource')

class Upstream {
  /**
   * @param {object} options
   * @param {string} options.url the upstream SSE endpoint
   * @param {string[]} [options.events] event names to forward (default ['message'])
   * @param {() => Record<string, string>} [options.headers] extra request headers
   * @param {(event: string, data: unknown, id: string) => void} options.onEvent
   * @param {(line: string) => void} [options.log]
   */
  constructor({ url, events = ['message'], headers = () => ({}), onEvent, log = console.log }) {
    this.url = url
    this.events = events
    this.headers = headers
    this.onEvent = onEvent
    this.log = log
    this.es = null
    this.lastEventId = null
    this.retry = 0
    this.reconnectTimer = null
    /** 'idle' | 'connecting' | 'open' */
    this.status = 'idle'
    this.connects = 0
  }

  open() {
    if (this.es || this.reconnectTimer) return
    this.connect()
  }

  close() {
    clearTimeout(this.reconnectTimer)
    this.reconnectTimer = null
    if (this.es) {
      this.es.close()
      this.es = null
      this.log(`[upstream] closed (last id ${this.lastEventId ?? '-'})`)
    }
    this.status = 'idle'
  }

  connect() {
    this.status = 'connecting'
    this.connects++
    this.log(`[upstream] connecting to ${this.url} (last id ${this.lastEventId ?? '-'})`)
    const es = new EventSource(this.url, {
      // the package's own headers (Accept, and Last-Event-ID on its reconnects) win
      fetch: (input, init) =>
        fetch(input, {
          ...init,
          headers: {
            ...this.headers(),
            ...(this.lastEventId ? { 'Last-Event-ID': this.lastEventId } : {}),
            ...init.headers
          }
        })
    })
    this.es = es
    es.addEventListener('open', () => {
      this.status = 'open'
      this.retry = 0
      this.log('[upstream] open')
    })
    for (const name of this.events) {
      es.addEventListener(name, (ev) => {
        if (ev.lastEventId) this.lastEventId = ev.lastEventId
        this.onEvent(name, parse(ev.data), ev.lastEventId)
      })
    }
    es.addEventListener('error', (err) => {
      if (this.es !== es) return
      if (es.readyState === EventSource.CLOSED) {
        // fatal for the package: our own backoff
        this.es = null
        this.status = 'connecting'
        const wait = Math.min(1000 * 2 ** this.retry, 30000)
        this.retry = Math.min(this.retry + 1, 10)
        this.log(`[upstream] failed (${err.message || err.code || 'error'}); retrying in ${wait} ms`)
        this.reconnectTimer = setTimeout(() => {
          this.reconnectTimer = null
          this.connect()
        }, wait)
      } else {
        this.status = 'connecting'
        this.log('[upstream] connection lost; the client reconnects')
      }
    })
  }
}

const parse = (text) => {
  try {
    return JSON.parse(text)
  } catch {
    return text
  }
}

module.exports = { Upstream }
