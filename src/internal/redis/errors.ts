/**
 * Connection errors of an ioredis client, reported without flooding: while Redis is
 * away ioredis fails a reconnect attempt every second, each with the same error. The
 * watcher reports the loss of a ready connection once, then each distinct error once
 * (at most a few) until the connection is ready again.
 *
 * @internal
 */
import { type Client, isCluster } from "./clients.js"

/** How many distinct errors one outage reports at most. */
export const maxErrorsPerOutage = 8

const asError = (cause: unknown): Error => (cause instanceof Error ? cause : new Error(String(cause)))

/**
 * Watches `clients` (with their role names) and calls `report` with deduplicated
 * connection errors, shared among them: an error several connections hit at once
 * (`ECONNREFUSED` when Redis is down) is reported once. The outage ends, and the same
 * errors are reported again, when every watched connection is ready again. Returns
 * the function that removes the watcher's listeners.
 */
export const watch = (
  clients: ReadonlyArray<readonly [Client, string]>,
  report: (error: Error) => void
): () => void => {
  let seen = new Set<string>()
  const emit = (cause: unknown) => {
    const error = asError(sanitize(cause))
    if (seen.has(error.message) || seen.size >= maxErrorsPerOutage) return
    seen.add(error.message)
    try {
      report(error)
    } catch {
      // a failing listener must not break ioredis' event handling
    }
  }
  const detachers = clients.map(([client, role]) => {
    let wasReady = client.status === "ready"
    const onReady = () => {
      wasReady = true
      if (clients.every(([c]) => c.status === "ready")) seen = new Set()
    }
    const onClose = () => {
      if (!wasReady) return
      wasReady = false
      emit(new Error(`redis ${role} connection lost; reconnecting`))
    }
    client.on("ready", onReady)
    client.on("close", onClose)
    client.on("error", emit)
    if (isCluster(client)) client.on("node error", emit)
    return () => {
      client.off("ready", onReady)
      client.off("close", onClose)
      client.off("error", emit)
      if (isCluster(client)) client.off("node error", emit)
    }
  })
  return () => {
    for (const detach of detachers) detach()
  }
}

/** Commands whose arguments may hold credentials. */
const secretCommands = new Set(["auth", "hello", "migrate", "acl", "config"])

/**
 * `cause` without credentials: ioredis attaches the failed command to a reply error
 * (`command: { name: 'auth', args: [password] }`), so logging a failed `AUTH` would
 * print the password. Such an error is copied with the command's arguments redacted;
 * anything else is returned as it is.
 */
export const sanitize = (cause: unknown): unknown => {
  if (!(cause instanceof Error)) return cause
  const command = (cause as { command?: { name?: unknown; args?: unknown } }).command
  if (typeof command !== "object" || command === null) return cause
  const name = typeof command.name === "string" ? command.name.toLowerCase() : ""
  if (!secretCommands.has(name)) return cause
  const copy = new Error(cause.message)
  copy.name = cause.name
  if (cause.stack !== undefined) copy.stack = cause.stack
  Object.defineProperty(copy, "command", {
    value: { name, args: Array.isArray(command.args) ? command.args.map(() => "<redacted>") : [] },
    enumerable: true
  })
  return copy
}
