/**
 * better-sse 0.16, used the way its docs show: `createSession(req, res)` per
 * connection, `createChannel()` per room plus one for everyone, `channel.broadcast`
 * for all / room, `session.push` for a user. better-sse has no write queue: it
 * ignores `res.write`'s return value (Node buffers), so there is no dropPolicy.
 * Cross-instance (E): `{ data, event, id }` as JSON through Redis, broadcast on arrival.
 */
import { createChannel, createSession, type Channel, type Session } from "better-sse"
import type { Payload } from "../lib/stats.js"
import { openBus, type Bus } from "./bus.js"
import type { SendOptions, SystemDef, SystemInstance } from "./types.js"

const betterSse: SystemDef = {
  name: "better-sse",
  description: "better-sse 0.16: sessions, a channel per room and one for all, session.push per user",
  hasDropPolicy: false,
  available: () => Promise.resolve({ ok: true }),
  preload: async () => {
    await import("better-sse")
  },
  async create(cfg, events) {
    const everyone = createChannel()
    const rooms = new Map<string, Channel>()
    const users = new Map<string, Session[]>()
    let sent = 0
    const room = (name: string): Channel => {
      let c = rooms.get(name)
      if (c === undefined) rooms.set(name, (c = createChannel()))
      return c
    }

    const broadcast = (channel: Channel, data: Payload, o: SendOptions): number => {
      const n = channel.sessionCount
      channel.broadcast(data, o.event, { eventId: o.id })
      sent += n
      return n
    }

    let bus: Bus | undefined
    if (cfg.redisUrl !== undefined) {
      bus = await openBus(
        cfg.redisUrl,
        cfg.channel,
        cfg.role === "main"
          ? (message) => {
              const m = JSON.parse(message.toString("utf8")) as { data: Payload; event: string; id: string }
              sent += everyone.sessionCount
              everyone.broadcast(m.data, m.event, { eventId: m.id })
            }
          : undefined
      )
    }

    const instance: SystemInstance = {
      register(userId, req, res, roomNames) {
        createSession(req, res, { keepAlive: cfg.keepAliveMs, retry: cfg.retryMs }).then(
          (session) => {
            everyone.register(session)
            for (const r of roomNames) room(r).register(session)
            const list = users.get(userId)
            if (list === undefined) users.set(userId, [session])
            else list.push(session)
            session.once("disconnected", () => {
              const l = users.get(userId)
              if (l === undefined) return
              const i = l.indexOf(session)
              if (i >= 0) l.splice(i, 1)
              if (l.length === 0) users.delete(userId)
            })
          },
          (e: unknown) => events.error(e instanceof Error ? e.message : String(e))
        )
      },
      sendToAll: (data, o) => broadcast(everyone, data, o),
      sendToRoom(name, data, o) {
        const c = rooms.get(name)
        return c === undefined ? 0 : broadcast(c, data, o)
      },
      sendToUser(userId, data, o) {
        const list = users.get(userId)
        if (list === undefined) return 0
        for (const s of list) s.push(data, o.event, o.id)
        sent += list.length
        return list.length
      },
      publish(data, o) {
        if (bus === undefined) return Promise.reject(new Error("better-sse: no redisUrl"))
        return bus.publish(JSON.stringify({ data, event: o.event, id: o.id }))
      },
      stats: () => ({ connections: everyone.sessionCount, sent }),
      async shutdown() {
        await bus?.close()
      }
    }
    return instance
  }
}

export default betterSse
