/**
 * The page of the browser test: the seed's "完整示例：AI 对话场景" frontend, with
 * `ssekify/client` in place of vsse. Bundled by esbuild (IIFE, global `ChatPage`) and
 * served by the test server. It runs in Chromium, so no Node import here.
 */
import { type ListenMessage, SSEClient, type SubscriptionEnd } from "../../src/client/index.js"

interface BrowserGlobals {
  readonly localStorage: { getItem(key: string): string | null }
  readonly location: { readonly search: string }
}
const page = globalThis as unknown as BrowserGlobals

const params = new URLSearchParams(page.location.search)
const expectedPingInterval = Number(params.get("ping") ?? "15000")

/** What the page saw of one chat, for the test to check. */
export interface ChatRecord {
  readonly requestId: string
  readonly status: number
  readonly body: unknown
  readonly progress: Array<{ readonly content: string; readonly percent: number; readonly seq: number | undefined }>
  readonly done: Array<{ readonly payload: unknown; readonly seq: number | undefined }>
  readonly errors: Array<unknown>
  /** The text as the UI shows it (`updateUI` / `showComplete`). */
  readonly ui: Array<string>
  readonly completed: string | undefined
  readonly end: SubscriptionEnd
  /** Messages after `done` (must stay empty). */
  readonly afterDone: number
}

// ========== 前端（ssekify/client，代替 vsse）==========
export const sse = new SSEClient({
  url: "/sse?userId=alice",
  eventName: "notify",
  expectedPingInterval,
  keepAliveEvent: "ping",
  token: page.localStorage.getItem("authToken") // 自动添加 Authorization 头
})

export const broadcasts: Array<unknown> = []
sse.on("broadcast", ({ message }) => broadcasts.push(message))
export const heartbeats = { count: 0 }
sse.on("heartbeat", () => heartbeats.count++)

interface ChatPayload {
  readonly content: string
  readonly percent?: number
  readonly totalChunks?: number
}

// 发起对话
export async function chat(message: string): Promise<ChatRecord> {
  let fullContent = ""
  const ui: Array<string> = []
  let completed: string | undefined
  const progress: Array<ChatRecord["progress"][number]> = []
  const done: Array<ChatRecord["done"][number]> = []
  const errors: Array<unknown> = []
  let afterDone = 0
  const { requestId, response, ended } = await sse.postAndListen<ChatPayload>(
    "/api/chat",
    { message },
    ({ phase, type, payload, error, seq }: ListenMessage<ChatPayload>) => {
      if (done.length > 0 || errors.length > 0) afterDone++
      if (phase === "progress" && type === "chat" && payload !== undefined) {
        // 显示进度
        fullContent += payload.content
        ui.push(fullContent)
        progress.push({ content: payload.content, percent: payload.percent ?? -1, seq })
      } else if (phase === "done") {
        // 完成
        done.push({ payload, seq })
        completed = fullContent
      } else if (phase === "error") {
        // 错误
        errors.push(error)
      }
    }
  )
  const body: unknown = await response.json()
  const end = await ended
  return { requestId, status: response.status, body, progress, done, errors, ui, completed, end, afterDone }
}

export { SSEClient }
