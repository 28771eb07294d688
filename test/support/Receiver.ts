import { Effect } from "effect"
import { createServer, type IncomingHttpHeaders } from "node:http"
import type { AddressInfo } from "node:net"

export interface Received {
  readonly method: string
  readonly path: string
  readonly headers: IncomingHttpHeaders
  readonly body: string
  readonly json: any
}

export interface Answer {
  readonly status: number
  readonly headers?: Record<string, string>
  readonly delayMs?: number
}

/**
 * A real HTTP server standing in for a destination: it records every request and answers from a script
 * (one answer per request, in order; the last one repeats), or from a function of the request.
 */
export const startReceiver = (script: ReadonlyArray<Answer> | ((req: Received, index: number) => Answer) = [{ status: 200 }]) =>
  Effect.acquireRelease(
    Effect.async<{ readonly url: string; readonly received: Array<Received>; readonly close: () => void }>((resume) => {
      const received: Array<Received> = []
      const server = createServer((req, res) => {
        let body = ""
        req.setEncoding("utf8")
        req.on("data", (chunk) => (body += chunk))
        req.on("end", () => {
          let json: unknown
          try {
            json = JSON.parse(body)
          } catch {
            json = undefined
          }
          const entry = { method: req.method ?? "", path: req.url ?? "", headers: req.headers, body, json }
          const index = received.length
          received.push(entry)
          const answer = typeof script === "function" ? script(entry, index) : script[Math.min(index, script.length - 1)]!
          const reply = () => {
            res.writeHead(answer.status, { "content-type": "application/json", ...answer.headers })
            res.end(JSON.stringify({ ok: answer.status < 300 }))
          }
          if (answer.delayMs === undefined) reply()
          else setTimeout(reply, answer.delayMs)
        })
      })
      server.listen(0, "127.0.0.1", () => {
        const { port } = server.address() as AddressInfo
        resume(Effect.succeed({
          url: `http://127.0.0.1:${port}`,
          received,
          close: () => {
            server.close()
            server.closeAllConnections()
          }
        }))
      })
    }),
    (receiver) => Effect.sync(() => receiver.close())
  )

/** Waits in real time (not the TestClock's) until `check` holds, for at most `timeoutMs`. */
export const eventually = (check: () => boolean, timeoutMs = 10_000) =>
  Effect.promise(async () => {
    const deadline = Date.now() + timeoutMs
    while (!check()) {
      if (Date.now() > deadline) throw new Error("condition not met in time")
      await new Promise((resolve) => setTimeout(resolve, 10))
    }
  })

/** Real-time pause, unaffected by the TestClock. */
export const pause = (ms: number) => Effect.promise(() => new Promise((resolve) => setTimeout(resolve, ms)))
