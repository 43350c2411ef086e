/**
 * The Redis pub/sub the hand-written systems (raw, better-sse) use for scenario E:
 * one ioredis connection to publish, one to subscribe. ssekify brings its own.
 */
import type { Redis as RedisClient } from "ioredis"

export interface Bus {
  publish(message: Buffer | string): Promise<unknown>
  close(): Promise<void>
}

export async function openBus(
  url: string,
  channel: string,
  onMessage: ((message: Buffer) => void) | undefined
): Promise<Bus> {
  const { Redis } = await import("ioredis")
  const clients: RedisClient[] = []
  let pub: RedisClient | undefined
  if (onMessage !== undefined) {
    const sub = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 2 })
    clients.push(sub)
    await sub.connect()
    sub.on("messageBuffer", (_ch: Buffer, message: Buffer) => onMessage(message))
    await sub.subscribe(channel)
  } else {
    pub = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 2 })
    clients.push(pub)
    await pub.connect()
  }
  return {
    publish: (message) => {
      if (pub === undefined) return Promise.reject(new Error("this bus only subscribes"))
      return pub.publish(channel, message)
    },
    close: async () => {
      await Promise.all(clients.map((c) => c.quit().catch(() => c.disconnect())))
    }
  }
}
