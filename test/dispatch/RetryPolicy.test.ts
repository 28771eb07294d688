import { assert, describe, it } from "@effect/vitest"
import { Duration } from "effect"
import { RetrySettings } from "../../src/config/RelayConfig.js"
import { backoff, decide } from "../../src/dispatch/RetryPolicy.js"
import { Permanent, RateLimited, Retryable } from "../../src/plugin/Plugin.js"

const policy = RetrySettings.make({
  max_attempts: 6,
  initial_delay: Duration.seconds(1),
  max_delay: Duration.seconds(60),
  multiplier: 2,
  jitter: 0.2,
  max_age: Duration.hours(1)
})
const retryable = new Retryable({ message: "HTTP 503" })

describe("retry policy", () => {
  it("grows exponentially and stops at max_delay", () => {
    const noJitter = { ...policy, jitter: 0 }
    assert.deepStrictEqual([1, 2, 3, 4, 5, 6, 7, 8].map((n) => backoff(noJitter, n, 0.5)), [
      1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000
    ])
  })

  it("keeps jitter within ± jitter of the base delay", () => {
    for (const attempt of [1, 2, 3, 4]) {
      const base = 1000 * 2 ** (attempt - 1)
      assert.strictEqual(backoff(policy, attempt, 0), Math.round(base * 0.8))
      assert.strictEqual(backoff(policy, attempt, 0.999999), Math.round(base * 1.2 - base * 0.4 * 0.000001))
      for (let i = 0; i < 100; i++) {
        const wait = backoff(policy, attempt, Math.random())
        assert.isAtLeast(wait, base * 0.8)
        assert.isAtMost(wait, base * 1.2)
      }
    }
  })

  it("decides retry, rate limit, permanent, max attempts and max age", () => {
    const created = 1_000_000
    assert.deepStrictEqual(decide(policy, 1, retryable, created, created, 0.5), { _tag: "Retry", at: created + 1000 })
    assert.deepStrictEqual(
      decide(policy, 1, new RateLimited({ message: "HTTP 429", retryAfter: Duration.minutes(5) }), created, created, 0.5),
      { _tag: "Retry", at: created + 300_000 }
    )
    assert.deepStrictEqual(
      decide(policy, 1, new RateLimited({ message: "HTTP 429", retryAfter: Duration.millis(10) }), created, created, 0.5),
      { _tag: "Retry", at: created + 1000 }
    )
    assert.deepStrictEqual(decide(policy, 1, new Permanent({ message: "HTTP 404" }), created, created, 0.5), {
      _tag: "Dead",
      reason: "permanent failure: HTTP 404"
    })
    assert.deepStrictEqual(decide(policy, 6, retryable, created, created, 0.5), {
      _tag: "Dead",
      reason: "gave up after 6 attempts: HTTP 503"
    })
    const late = created + 3_599_500
    assert.deepStrictEqual(decide(policy, 1, retryable, created, late, 0.5), {
      _tag: "Dead",
      reason: "gave up: the next attempt would be past max_age (1h): HTTP 503"
    })
  })
})
