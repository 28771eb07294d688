import { Duration, Option } from "effect"
import { Permanent, RateLimited, Retryable, type PluginError } from "./Plugin.js"
import { parseRetryAfter } from "./RetryAfter.js"

/** Used when a 429 carries no readable Retry-After. */
const DEFAULT_RATE_LIMIT_WAIT = Duration.seconds(30)

/**
 * The usual reading of an HTTP answer for a delivery: 2xx done; 429 rate limited (honouring Retry-After);
 * 408 and 5xx worth retrying, not before their Retry-After if they carry one (a 503 during maintenance);
 * any other status will not get better by retrying.
 */
export const classifyStatus = (
  status: number,
  retryAfter: string | undefined,
  now: number
): Option.Option<PluginError> => {
  if (status >= 200 && status < 300) return Option.none()
  if (status === 429) {
    return Option.some(
      new RateLimited({
        message: "HTTP 429",
        retryAfter: Option.getOrElse(parseRetryAfter(retryAfter, now), () => DEFAULT_RATE_LIMIT_WAIT)
      })
    )
  }
  if (status === 408 || status >= 500) {
    return Option.some(Option.match(parseRetryAfter(retryAfter, now), {
      onNone: () => new Retryable({ message: `HTTP ${status}` }),
      onSome: (wait) => new RateLimited({ message: `HTTP ${status}`, retryAfter: wait })
    }))
  }
  return Option.some(new Permanent({ message: `HTTP ${status}` }))
}

/** A system error code such as ECONNREFUSED, from the error or its causes: safe to store, unlike messages with URLs. */
export const systemErrorCode = (error: unknown, depth = 0): string | undefined => {
  if (typeof error !== "object" || error === null || depth > 3) return undefined
  const code = (error as { readonly code?: unknown }).code
  return typeof code === "string" && /^[A-Z][A-Z0-9_]*$/.test(code)
    ? code
    : systemErrorCode((error as { readonly cause?: unknown }).cause, depth + 1)
}
