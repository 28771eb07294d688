import { Duration } from "effect"
import type { RetryOverrides, RetrySettings } from "../config/RelayConfig.js"
import type { PluginError } from "../plugin/Plugin.js"

export type Decision =
  | { readonly _tag: "Retry"; readonly at: number }
  | { readonly _tag: "Dead"; readonly reason: string }

export const withOverrides = (defaults: RetrySettings, overrides: RetryOverrides | undefined): RetrySettings =>
  overrides === undefined ? defaults : { ...defaults, ...overrides }

/** The wait before attempt `attempt + 1`: exponential from `initial_delay`, ± `jitter`, capped at `max_delay`. */
export const backoff = (policy: RetrySettings, attempt: number, random: number): number => {
  const base = Duration.toMillis(policy.initial_delay) * policy.multiplier ** (attempt - 1)
  const jittered = base * (1 - policy.jitter + 2 * policy.jitter * random)
  return Math.min(Duration.toMillis(policy.max_delay), Math.round(jittered))
}

/**
 * What happens after attempt number `attempt` failed with `error`. Permanent errors and exhausted attempts go
 * to the dead letters; a rate limit waits at least its Retry-After, even past `max_delay`; nothing is scheduled
 * beyond `max_age` after the delivery was created.
 */
export const decide = (
  policy: RetrySettings,
  attempt: number,
  error: PluginError,
  createdAt: number,
  now: number,
  random: number
): Decision => {
  if (error._tag === "Permanent") return { _tag: "Dead", reason: `permanent failure: ${error.message}` }
  if (attempt >= policy.max_attempts) {
    return { _tag: "Dead", reason: `gave up after ${attempt} attempts: ${error.message}` }
  }
  const wait = error._tag === "RateLimited"
    ? Math.max(backoff(policy, attempt, random), Duration.toMillis(error.retryAfter))
    : backoff(policy, attempt, random)
  const at = now + wait
  if (at - createdAt > Duration.toMillis(policy.max_age)) {
    return { _tag: "Dead", reason: `gave up: the next attempt would be past max_age (${Duration.format(policy.max_age)}): ${error.message}` }
  }
  return { _tag: "Retry", at }
}
