import { Effect } from "effect"
import { request } from "undici"
import { systemErrorCode } from "./HttpOutcome.js"
import { Permanent, Retryable } from "./Plugin.js"

export interface HttpAnswer {
  readonly status: number
  /** By lower-case name. */
  readonly headers: Readonly<Record<string, string | ReadonlyArray<string> | undefined>>
  /** The body as UTF-8, at most its first MAX_ANSWER_BYTES: a receipt id is all a plugin reads of it. */
  readonly text: string
}

/** Most of an answer's body kept; the rest is not read, so a destination cannot fill the service's memory. */
export const MAX_ANSWER_BYTES = 64 * 1024

const readAtMost = async (body: AsyncIterable<Buffer> & { destroy: () => unknown }, limit: number) => {
  const chunks: Array<Buffer> = []
  let size = 0
  for await (const chunk of body) {
    chunks.push(chunk)
    size += chunk.length
    if (size >= limit) {
      body.destroy()
      break
    }
  }
  return Buffer.concat(chunks, size).subarray(0, limit).toString("utf8")
}

// undici's codes for a request it refuses to send (a malformed URL, header or method): retrying cannot help.
const REFUSED = new Set(["ERR_INVALID_URL", "UND_ERR_INVALID_ARG", "ERR_INVALID_ARG_TYPE", "ERR_INVALID_ARG_VALUE"])

/**
 * One HTTP call and its answer, on undici directly. A delivery needs one request and its status, and
 * `@effect/platform`'s HttpClient spent more CPU per delivery than the call itself (BENCHMARKS.md). Interrupting
 * the effect (the host's timeout) aborts the call. Errors name the method and a system code, never the URL,
 * which may carry personal data or a token.
 */
export const httpCall = (
  method: string,
  url: string,
  headers: Readonly<Record<string, string>>,
  body: string
): Effect.Effect<HttpAnswer, Retryable | Permanent> =>
  Effect.tryPromise({
    try: async (signal) => {
      const response = await request(url, { method: method as "POST", headers, body, signal })
      return { status: response.statusCode, headers: response.headers, text: await readAtMost(response.body, MAX_ANSWER_BYTES) }
    },
    catch: (cause) => {
      const code = systemErrorCode(cause)
      return code !== undefined && REFUSED.has(code)
        ? new Permanent({ message: `${method} request could not be built (${code})` })
        : new Retryable({ message: `${method} request failed: ${code ?? "no answer"}` })
    }
  })

/** A header's value, the first one if it was sent more than once. */
export const headerOf = (answer: HttpAnswer, name: string): string | undefined => {
  const value = answer.headers[name]
  return typeof value === "string" ? value : value?.[0]
}
