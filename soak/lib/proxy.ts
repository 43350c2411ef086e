/**
 * A TCP proxy for the chaos scenario (node:net, 127.0.0.1 only): each accepted client
 * socket is joined to a new socket to one of the backend ports (chosen by `pick`), bytes
 * flow both ways unchanged, and every pair is cut (both sockets destroyed, as a network
 * failure or a load balancer's restart would) at a random moment of its life: a random
 * lifetime between `minLifeMs` and `maxLifeMs`, checked by one ticker for all pairs,
 * between `rage()` and `calm()`.
 */
import * as net from "node:net"

/** A small seeded PRNG (mulberry32): the same seed gives the same run of choices. */
export const prng = (seed: number): (() => number) => {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

export interface ProxyOptions {
  /** Backend ports on 127.0.0.1. */
  readonly backends: ReadonlyArray<number>
  readonly random: () => number
  /** Each pair lives a random time in [minLifeMs, maxLifeMs], then is cut. */
  readonly minLifeMs: number
  readonly maxLifeMs: number
}

interface Pair {
  readonly client: net.Socket
  readonly server: net.Socket
  readonly cutAt: number
}

export class ChaosProxy {
  readonly server: net.Server
  private readonly pairs = new Set<Pair>()
  private ticker: NodeJS.Timeout | undefined
  private cutting = false
  /** Connections accepted, per backend port. */
  readonly accepted = new Map<number, number>()
  /** Pairs cut by the chaos (not those that ended by themselves). */
  cuts = 0

  constructor(private readonly options: ProxyOptions) {
    this.server = net.createServer((client) => this.join(client))
  }

  listen(): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once("error", reject)
      this.server.listen(0, "127.0.0.1", () => {
        this.ticker = setInterval(() => this.tick(), 5)
        resolve((this.server.address() as net.AddressInfo).port)
      })
    })
  }

  /** Starts cutting (pairs whose lifetime is over are cut at once). */
  rage(): void {
    this.cutting = true
  }

  /** Stops cutting: pairs open from now on live until an end closes them. */
  calm(): void {
    this.cutting = false
  }

  get open(): number {
    return this.pairs.size
  }

  private join(client: net.Socket): void {
    const { backends, random, minLifeMs, maxLifeMs } = this.options
    const port = backends[Math.floor(random() * backends.length)]!
    this.accepted.set(port, (this.accepted.get(port) ?? 0) + 1)
    const server = net.connect({ host: "127.0.0.1", port })
    client.setNoDelay(true)
    server.setNoDelay(true)
    const pair: Pair = { client, server, cutAt: Date.now() + minLifeMs + random() * (maxLifeMs - minLifeMs) }
    this.pairs.add(pair)
    const end = () => {
      if (!this.pairs.delete(pair)) return
      client.destroy()
      server.destroy()
    }
    client.on("error", end).on("close", end)
    server.on("error", end).on("close", end)
    client.pipe(server)
    server.pipe(client)
  }

  private tick(): void {
    if (!this.cutting) return
    const now = Date.now()
    for (const pair of this.pairs) {
      if (pair.cutAt > now) continue
      this.pairs.delete(pair)
      this.cuts++
      pair.client.destroy()
      pair.server.destroy()
    }
  }

  /** Cuts every pair and stops listening. */
  close(): Promise<void> {
    clearInterval(this.ticker)
    for (const pair of this.pairs) {
      pair.client.destroy()
      pair.server.destroy()
    }
    this.pairs.clear()
    return new Promise((resolve) => this.server.close(() => resolve()))
  }
}
