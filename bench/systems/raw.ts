/**
 * raw: plain `node:http`, the practical limit. Headers, a `retry:` line, then for
 * every message ONE pre-encoded Buffer written to every target response with
 * `res.write` (no queue, no backpressure handling: Node buffers what the socket
 * does not take). Users and rooms are plain Maps/Sets; one shared heartbeat timer.
 * Cross-instance (E): the pre-encoded frame itself travels through Redis and is
 * written as it arrives.
 */
import type { ServerResponse } from "node:http"
import type { Payload } from "../lib/stats.js"
import { openBus, type Bus } from "./bus.js"
import { SSE_HEADERS, type SendOptions, type SystemDef, type SystemInstance } from "./types.js"

function encode(data: Payload, o: SendOptions): Buffer {
  return Buffer.from(`event: ${o.event}\nid: ${o.id}\ndata: ${JSON.stringify(data)}\n\n`)
}

const raw: SystemDef = {
  name: "raw",
  description: "plain node:http, one pre-encoded Buffer written to every response (the limit)",
  hasDropPolicy: false,
  available: () => Promise.resolve({ ok: true }),
  async create(cfg) {
    const all = new Set<ServerResponse>()
    const users = new Map<string, ServerResponse[]>()
    const rooms = new Map<string, Set<ServerResponse>>()
    let sent = 0
    const retry = Buffer.from(`retry: ${cfg.retryMs}\n\n`)
    const ping = Buffer.from(":\n\n")
    const heartbeat = setInterval(() => {
      for (const res of all) res.write(ping)
    }, cfg.keepAliveMs)
    heartbeat.unref()

    const writeAll = (targets: Iterable<ServerResponse>, frame: Buffer): number => {
      let n = 0
      for (const res of targets) {
        res.write(frame)
        n++
      }
      sent += n
      return n
    }

    let bus: Bus | undefined
    if (cfg.redisUrl !== undefined) {
      bus = await openBus(
        cfg.redisUrl,
        cfg.channel,
        cfg.role === "main" ? (frame) => void writeAll(all, frame) : undefined
      )
    }

    const instance: SystemInstance = {
      register(userId, _req, res, roomNames) {
        res.writeHead(200, SSE_HEADERS)
        res.write(retry)
        all.add(res)
        const list = users.get(userId)
        if (list === undefined) users.set(userId, [res])
        else list.push(res)
        for (const room of roomNames) {
          let set = rooms.get(room)
          if (set === undefined) rooms.set(room, (set = new Set()))
          set.add(res)
        }
        res.once("close", () => {
          all.delete(res)
          const l = users.get(userId)
          if (l !== undefined) {
            const i = l.indexOf(res)
            if (i >= 0) l.splice(i, 1)
            if (l.length === 0) users.delete(userId)
          }
          for (const room of roomNames) rooms.get(room)?.delete(res)
        })
      },
      sendToAll: (data, o) => writeAll(all, encode(data, o)),
      sendToRoom(room, data, o) {
        const set = rooms.get(room)
        return set === undefined ? 0 : writeAll(set, encode(data, o))
      },
      sendToUser(userId, data, o) {
        const list = users.get(userId)
        return list === undefined ? 0 : writeAll(list, encode(data, o))
      },
      publish(data, o) {
        if (bus === undefined) return Promise.reject(new Error("raw: no redisUrl"))
        return bus.publish(encode(data, o))
      },
      stats: () => ({ connections: all.size, sent }),
      async shutdown() {
        clearInterval(heartbeat)
        for (const res of all) res.end()
        await bus?.close()
      }
    }
    return instance
  }
}

export default raw
