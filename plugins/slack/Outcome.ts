import {
  WebAPIHTTPError,
  WebAPIPlatformError,
  WebAPIRateLimitedError,
  WebAPIRequestError
} from "@slack/web-api/dist/errors.js"
import { Duration, Option } from "effect"
import { classifyStatus } from "../../src/plugin/HttpOutcome.js"
import { Permanent, RateLimited, Retryable, type PluginError } from "../../src/plugin/Plugin.js"
import { parseRetryAfter } from "../../src/plugin/RetryAfter.js"

/** Used when Slack rate-limits without a readable Retry-After (it normally sends one). */
export const DEFAULT_RATE_LIMIT_WAIT = Duration.seconds(30)

/** Slack's platform errors that describe its own trouble, not ours: worth another try. */
const TRANSIENT_CODES = new Set(["internal_error", "fatal_error", "service_unavailable", "request_timeout"])

/**
 * A Slack error code (`channel_not_found`), or none. The client puts the whole answer in `error` when it is not
 * JSON (a proxy's HTML page, an echo of the request), so anything that does not look like a code is dropped.
 */
export const slackCode = (value: unknown): string | undefined =>
  typeof value === "string" && /^[a-z0-9_.]{1,64}$/.test(value) ? value : undefined

/** Why a request did not reach Slack, as an error code or a word; never the error's text. */
const reasonOf = (error: Error): string => {
  if (error.name === "TimeoutError") return "timed out"
  const cause: unknown = error.cause
  const code = typeof cause === "object" && cause !== null && "code" in cause ? cause.code : undefined
  if (typeof code === "string" && /^[A-Z0-9_]{1,40}$/.test(code)) return code
  return error.name === "AbortError" ? "aborted" : "network error"
}

/** Slack's reading of an HTTP status is the usual one (`classifyStatus`); the messages name Slack and its code. */
const fromStatus = (status: number, retryAfter: string | undefined, code: string | undefined, now: number): PluginError => {
  const failure = classifyStatus(status, retryAfter, now)
  const what = `Slack HTTP ${status}${code === undefined ? "" : ` ${code}`}`
  if (Option.isNone(failure)) return new Permanent({ message: `${what}: not a Web API answer` })
  switch (failure.value._tag) {
    case "RateLimited":
      return new RateLimited({ message: status === 429 ? "Slack rate limited (HTTP 429)" : what, retryAfter: failure.value.retryAfter })
    case "Retryable":
      return new Retryable({ message: what })
    case "Permanent":
      return new Permanent({ message: what })
  }
}

/** Reads a failure of `@slack/web-api` (its own retries off) as the host's typed outcome. */
export const classifyApiError = (error: unknown, now: number): PluginError => {
  if (error instanceof WebAPIRateLimitedError) {
    return new RateLimited({ message: "Slack rate limited (HTTP 429)", retryAfter: Duration.seconds(error.retryAfter) })
  }
  if (error instanceof WebAPIPlatformError) {
    const code = slackCode(error.data.error)
    if (code === undefined) return new Permanent({ message: "Slack's answer was not Web API JSON (check api_url)" })
    if (code === "ratelimited") {
      const seconds = error.data.response_metadata?.retryAfter
      return new RateLimited({
        message: "Slack error ratelimited",
        retryAfter: seconds === undefined ? DEFAULT_RATE_LIMIT_WAIT : Duration.seconds(seconds)
      })
    }
    return TRANSIENT_CODES.has(code)
      ? new Retryable({ message: `Slack error ${code}` })
      : new Permanent({ message: `Slack error ${code}` })
  }
  if (error instanceof WebAPIHTTPError) {
    const body: unknown = error.body
    const code = typeof body === "object" && body !== null && "error" in body ? slackCode(body.error) : undefined
    return fromStatus(error.statusCode, error.headers["retry-after"], code, now)
  }
  if (error instanceof WebAPIRequestError) return new Retryable({ message: `Slack not reached: ${reasonOf(error.original)}` })
  return new Retryable({ message: "Slack call failed unexpectedly" })
}

/** An incoming webhook answers `ok`, or an HTTP error status with a code as plain text (`channel_not_found`). */
export const classifyWebhookAnswer = (
  status: number,
  retryAfter: string | undefined,
  body: string,
  now: number
): Option.Option<PluginError> =>
  status >= 200 && status < 300 ? Option.none() : Option.some(fromStatus(status, retryAfter, slackCode(body.trim()), now))

/**
 * The client only raises its rate-limit error (with the wait) when Retry-After is a number of seconds; turn an
 * HTTP date or a missing header into seconds so every 429 comes back as `RateLimited`.
 */
export const retryAfterSeconds = (header: string | null, now: number): string | undefined => {
  if (header !== null && /^\s*\d+\s*$/.test(header)) return undefined
  const wait = Option.getOrElse(parseRetryAfter(header ?? undefined, now), () => DEFAULT_RATE_LIMIT_WAIT)
  return String(Math.ceil(Duration.toSeconds(wait)))
}
