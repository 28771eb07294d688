import { EventEmitter } from "node:events"
import { Effect } from "effect"
import { request } from "undici"
import { systemErrorCode } from "./HttpOutcome.js"
import { Permanent, Retryable } from "./Plugin.js"

export interface HttpAnswer {
  readonly status: number
  /** By lower-case name. */
  readonly headers: Readonly<Record<string, string | ReadonlyArray<string> | undefined>>
  /** The body as UTF-8; only its beginning when `complete` is false. */
  readonly text: string
  /** False when the body was longer than MAX_ANSWER_BYTES or broke off: plugins should not read it then. */
  readonly complete: boolean
}

/** Most of an answer's body read; the rest is not, so a destination cannot fill the service's memory. */
export const MAX_ANSWER_BYTES = 1024 * 1024

/**
 * The status decides a delivery: a body that breaks off or runs long after it still leaves an answer, so the
 * destination is not called again for a change it took.
 */
const readBody = async (body: AsyncIterable<Buffer> & { destroy: () => unknown }) => {
  const chunks: Array<Buffer> = []
  let size = 0
  let complete = true
  try {
    for await (const chunk of body) {
      if (size + chunk.length > MAX_ANSWER_BYTES) {
        complete = false
        body.destroy()
        break
      }
      chunks.push(chunk)
      size += chunk.length
    }
  } catch {
    complete = false
  }
  return { text: Buffer.concat(chunks, size).toString("utf8"), complete }
}

// Names as HTTP compares them: a header given twice in different cases is sent once, the later value winning.
const byLowerCaseName = (headers: Readonly<Record<string, string>>) => {
  const named: Record<string, string> = {}
  for (const [name, value] of Object.entries(headers)) named[name.toLowerCase()] = value
  return named
}

// undici's codes for a request it refuses to send (a malformed URL, header or method): retrying cannot help.
const REFUSED = new Set(["ERR_INVALID_URL", "UND_ERR_INVALID_ARG", "ERR_INVALID_ARG_TYPE", "ERR_INVALID_ARG_VALUE"])

const failure = (method: string, cause: unknown): Retryable | Permanent => {
  const code = systemErrorCode(cause)
  return code !== undefined && REFUSED.has(code)
    ? new Permanent({ message: `${method} request could not be built (${code})` })
    : new Retryable({ message: `${method} request failed: ${code ?? "no answer"}` })
}

const send = async (method: string, url: string, headers: Readonly<Record<string, string>>, body: string, signal: EventEmitter) => {
  const response = await request(url, { method: method as "POST", headers: byLowerCaseName(headers), body, signal })
  return { status: response.statusCode, headers: response.headers, ...(await readBody(response.body)) }
}

/**
 * One HTTP call and its answer, on undici directly. A delivery needs one request and its status, and
 * `@effect/platform`'s HttpClient spent more CPU per delivery than the call itself (BENCHMARKS.md). Interrupting
 * the effect (the host's timeout) aborts the call, through an EventEmitter: undici takes one as its signal, and an
 * AbortController cost a fifth of the call. Later headers win over earlier ones of the same name in any case, so
 * a plugin's own values replace a user's. Errors name the method and a system code, never the URL, which may
 * carry personal data or a token.
 */
export const httpCall = (
  method: string,
  url: string,
  headers: Readonly<Record<string, string>>,
  body: string
): Effect.Effect<HttpAnswer, Retryable | Permanent> =>
  Effect.async((resume) => {
    const abort = new EventEmitter()
    send(method, url, headers, body, abort).then(
      (answer) => resume(Effect.succeed(answer)),
      (cause) => resume(Effect.fail(failure(method, cause)))
    )
    return Effect.sync(() => abort.emit("abort"))
  })

/** A header's value, the first one if it was sent more than once. */
export const headerOf = (answer: HttpAnswer, name: string): string | undefined => {
  const value = answer.headers[name]
  return typeof value === "string" ? value : value?.[0]
}
