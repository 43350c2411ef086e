/**
 * The (un)subscribe commands of a subscriber connection, held until it is `ready`.
 *
 * @internal
 */
import type { Client } from "./clients.js"

/**
 * Runs (un)subscribe commands on a subscriber connection once it is `ready`, in the order
 * they were asked for. ioredis writes a `SUBSCRIBE` at once in the `connect` state (the
 * command is allowed while Redis loads), before its ready check: the check's `INFO` is
 * then refused in subscriber mode, the connection starts over, and as it was never
 * `ready` ioredis does not resubscribe: the subscription is lost. Held until `ready`, a
 * command goes out after ioredis' own resubscription, as its offline queue would send it.
 * One pair of listeners, whatever the number of waiting commands.
 */
export class SubscriberQueue {
  private queue: Array<() => void> = []
  private listening = false

  constructor(private readonly client: Client) {}

  run<A>(send: () => Promise<A>): Promise<A> {
    const status = this.client.status
    if (this.queue.length === 0 && (status === "ready" || status === "end")) return send()
    return new Promise<A>((resolve, reject) => {
      this.queue.push(() => {
        send().then(resolve, reject)
      })
      if (!this.listening) {
        this.listening = true
        this.client.on("ready", this.drain)
        this.client.on("end", this.drain)
      }
    })
  }

  private readonly drain = (): void => {
    this.client.off("ready", this.drain)
    this.client.off("end", this.drain)
    this.listening = false
    const queue = this.queue
    this.queue = []
    for (const send of queue) send()
  }

  /** Removes the listeners; waiting commands are sent now (they fail on a closed connection). */
  detach(): void {
    if (this.listening) this.drain()
  }
}
