import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http"
import type { AddressInfo } from "node:net"
import { fixture } from "../support/Fixtures.js"
import { pause } from "../support/Receiver.js"
import { post, type Relay, signedHeaders, startRelay, tempSqlite } from "../support/Relay.js"

const SECRET = "faults-secret"

const COMMON = `
retry:
  initial_delay: 50ms
  max_delay: 500ms
  jitter: 0.2
  max_attempts: 50
dispatch:
  poll_interval: 50ms
`

/** Webhook instances named after their sinks, each with a 300 ms timeout, and one catch-all route per instance. */
const config = (instances: ReadonlyArray<readonly [string, string]>) =>
  [
    "plugins:",
    ...instances.flatMap(([name, url]) => [`  ${name}:`, "    use: webhook", `    url: ${url}`, "    timeout: 300ms"]),
    "routes:",
    ...instances.map(([name]) => `  - to: ${name}`),
    COMMON
  ].join("\n")

interface Reply {
  readonly status: number
  readonly headers?: Record<string, string>
  readonly delayMs?: number
}

interface Hit {
  readonly key: string
  readonly verification: string
  readonly attempt: number
  readonly at: number
  readonly status: number
  /** The relay had hung up before the answer could be written (it timed out). */
  aborted: boolean
}

interface Sink {
  readonly hits: Array<Hit>
  readonly url: string
  readonly port: number
  readonly start: () => Promise<void>
  readonly stop: () => Promise<void>
}

/** A local destination that records every request and answers from `script`; it can be stopped and restarted on its port. */
const startSink = (script: (index: number, at: number) => Reply) =>
  Effect.acquireRelease(
    Effect.promise(async (): Promise<Sink> => {
      const hits: Array<Hit> = []
      let server: Server | undefined
      let port = 0
      const handler = (req: IncomingMessage, res: ServerResponse) => {
        let body = ""
        req.setEncoding("utf8")
        req.on("data", (chunk) => (body += chunk))
        req.on("end", () => {
          const at = Date.now()
          const json = JSON.parse(body)
          const answer = script(hits.length, at)
          const hit: Hit = {
            key: String(req.headers["idempotency-key"]),
            verification: json.data.verification_id,
            attempt: Number(req.headers["x-kyc-relay-attempt"]),
            at,
            status: answer.status,
            aborted: false
          }
          hits.push(hit)
          const reply = () => {
            if (res.destroyed || res.socket === null || res.socket.destroyed) {
              hit.aborted = true
              return
            }
            res.writeHead(answer.status, { "content-type": "application/json", ...answer.headers })
            res.end(JSON.stringify({ ok: answer.status < 300 }))
          }
          if (answer.delayMs === undefined) reply()
          else setTimeout(reply, answer.delayMs)
        })
      }
      const start = () =>
        new Promise<void>((resolve, reject) => {
          const candidate = createServer(handler)
          candidate.once("error", reject)
          candidate.listen(port, "127.0.0.1", () => {
            port = (candidate.address() as AddressInfo).port
            server = candidate
            resolve()
          })
        })
      const stop = () =>
        new Promise<void>((resolve) => {
          const current = server
          server = undefined
          if (current === undefined) return resolve()
          current.close(() => resolve())
          current.closeAllConnections()
        })
      await start()
      return {
        hits,
        start,
        stop,
        get url() {
          return `http://127.0.0.1:${port}/hook`
        },
        get port() {
          return port
        }
      }
    }),
    (sink) => Effect.promise(() => sink.stop())
  )

/** Sends `count` distinct VKYC events (one verification each); returns the send time per verification id. */
const sendEvents = (relay: Relay, prefix: string, count: number) =>
  Effect.gen(function*() {
    const doc = JSON.parse(fixture("VKYC_USER_CALL_QUEUED").text)
    const sentAt = new Map<string, number>()
    for (let i = 0; i < count; i++) {
      const id = `${prefix}_${i}`
      const text = JSON.stringify({ ...doc, data: { ...doc.data, verification_id: id } })
      sentAt.set(id, Date.now())
      const answer = yield* post(relay.webhookUrl, text, signedHeaders(SECRET, text))
      assert.strictEqual(answer.status, 200, JSON.stringify(answer.body))
    }
    return sentAt
  })

/** Waits until every delivery is done (failing at once on a dead letter), then lets the metrics catch up. */
const drain = (relay: Relay, total: number, timeoutMs: number) =>
  Effect.gen(function*() {
    const deadline = Date.now() + timeoutMs
    while (true) {
      const counts = yield* relay.deliveries.countByState
      if ((counts.dead ?? 0) > 0) return yield* Effect.dieMessage(`dead letters: ${JSON.stringify(counts)}`)
      if (counts.done === total && Object.keys(counts).length === 1) break
      if (Date.now() > deadline) return yield* Effect.dieMessage(`queue did not drain in time: ${JSON.stringify(counts)}`)
      yield* pause(25)
    }
    yield* pause(100)
  })

/** `name{labels} value` lines of the relay's Prometheus exposition. */
const scrape = (relay: Relay) =>
  Effect.promise(async () => {
    const text = await (await fetch(`${relay.baseUrl}/metrics`)).text()
    return new Map(
      text.split("\n").filter((line) => line !== "" && !line.startsWith("#")).map((line) => {
        const at = line.lastIndexOf(" ")
        return [line.slice(0, at), Number(line.slice(at + 1))] as const
      })
    )
  })

const attemptsMetric = (metrics: Map<string, number>, instance: string, result: string) =>
  metrics.get(`kyc_relay_delivery_attempts_total{instance="${instance}",result="${result}"}`) ?? 0

/** The attempt errors the relay recorded for an instance, across all its deliveries. */
const recordedErrors = (relay: Relay, instance: string) =>
  Effect.gen(function*() {
    const rows = yield* relay.deliveries.list({ instance, limit: 1000 })
    const attempts = yield* Effect.forEach(rows, (row) => relay.deliveries.attempts(row.id))
    return attempts.flat().map((a) => a.error).filter((e): e is string => e !== null)
  })

const byKey = (hits: ReadonlyArray<Hit>) => {
  const groups = new Map<string, Array<Hit>>()
  for (const hit of hits) groups.set(hit.key, [...(groups.get(hit.key) ?? []), hit])
  return groups
}

const ok = (hit: Hit) => hit.status < 300 && !hit.aborted

/** mulberry32: a small seeded generator, so a failing run can be repeated. */
const seeded = (seed: number) => () => {
  seed = (seed + 0x6D2B79F5) | 0
  let t = seed
  t = Math.imul(t ^ (t >>> 15), t | 1)
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}

const percentile = (values: ReadonlyArray<number>, p: number) => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.max(0, Math.ceil(p * sorted.length) - 1)]!
}

describe("destination faults (SQLite, real clock, webhook instances)", () => {
  it.scopedLive("a flaky destination (40% 503) drains and does not slow a healthy one", () =>
    Effect.gen(function*() {
      const started = Date.now()
      const random = seeded(20240601)
      const flaky = yield* startSink(() => ({ status: random() < 0.4 ? 503 : 200 }))
      const healthy = yield* startSink(() => ({ status: 200 }))
      const relay = yield* startRelay({
        store: yield* tempSqlite,
        secrets: [SECRET],
        extra: config([["flaky", flaky.url], ["healthy", healthy.url]])
      })
      const count = 40
      const sentAt = yield* sendEvents(relay, "flaky", count)
      yield* drain(relay, 2 * count, 20_000)

      const flakyDone = flaky.hits.filter(ok)
      const healthyDone = healthy.hits.filter(ok)
      const failures = flaky.hits.filter((hit) => hit.status === 503).length
      // An attempt the relay gave up on (timeout) may still have reached the sink and been answered 200: the
      // destination then sees the delivery twice, which is what the idempotency key is for. Only those may repeat.
      const flakyErrors = yield* recordedErrors(relay, "flaky")
      const flakyTimeouts = flakyErrors.filter((error) => /no answer within/.test(error)).length
      const healthyTimeouts = (yield* recordedErrors(relay, "healthy")).filter((error) => /no answer within/.test(error)).length
      const duplicates = [...byKey(flaky.hits)].filter(([, hits]) => hits.filter(ok).length > 1)
      assert.isAtMost(
        duplicates.length,
        flakyTimeouts,
        `a delivery that succeeded is sent again only after a timeout: ${
          duplicates.map(([key, hits]) => `${key}: ${hits.map((hit) => `#${hit.attempt} ${hit.status} +${hit.at - started}`).join(", ")}`)
            .join("; ")
        }; relay errors: ${flakyErrors.join(", ")}`
      )
      assert.strictEqual(new Set(flakyDone.map((hit) => hit.key)).size, count, "every flaky delivery got a 200")
      assert.isAtMost(flakyDone.length, count + flakyTimeouts)
      assert.strictEqual(new Set(healthy.hits.map((hit) => hit.key)).size, count)
      assert.isAtMost(healthy.hits.length, count + healthyTimeouts, "the healthy sink is called once per event, barring timeouts")
      assert.isAbove(failures, 5, "the flaky sink did fail a fair share")
      // Every call the sink saw is a recorded attempt; a timed-out attempt may not have reached it.
      assert.isAtMost(flaky.hits.length, flakyErrors.length + count)
      assert.isAtLeast(flaky.hits.length, flakyErrors.length - flakyTimeouts + count)

      const latencies = healthyDone.map((hit) => hit.at - sentAt.get(hit.verification)!)
      const p95 = percentile(latencies, 0.95)
      const lastHealthy = Math.max(...healthyDone.map((hit) => hit.at))
      const lastFlaky = Math.max(...flakyDone.map((hit) => hit.at))
      assert.isBelow(
        p95,
        1000,
        `healthy deliveries are not held up by the flaky instance (relay timeouts: flaky ${flakyTimeouts}, healthy ${healthyTimeouts}; ` +
          `sending took ${Math.max(...sentAt.values()) - started} ms)`
      )
      assert.isBelow(lastHealthy, lastFlaky, "the healthy queue finishes before the flaky one")

      const metrics = yield* scrape(relay)
      assert.deepStrictEqual(
        {
          flakyDone: attemptsMetric(metrics, "flaky", "done"),
          flakyRetryable: attemptsMetric(metrics, "flaky", "Retryable"),
          healthyDone: attemptsMetric(metrics, "healthy", "done"),
          healthyRetryable: attemptsMetric(metrics, "healthy", "Retryable")
        },
        {
          // without relay timeouts these are exactly the sink's 200s and 503s
          flakyDone: flakyTimeouts === 0 ? flakyDone.length : count,
          flakyRetryable: flakyTimeouts === 0 ? failures : flakyErrors.length,
          healthyDone: count,
          healthyRetryable: healthyTimeouts
        }
      )
      console.log(
        `[faults] flaky: ${count} events x 2 instances, flaky sink ${flaky.hits.length} calls (${failures} x 503, ` +
          `${flakyTimeouts}+${healthyTimeouts} relay timeouts), ` +
          `healthy p95 ${p95} ms / max ${Math.max(...latencies)} ms, healthy done at +${lastHealthy - started} ms, ` +
          `flaky done at +${lastFlaky - started} ms, total ${Date.now() - started} ms`
      )
    }), 30_000)

  it.scopedLive("a destination slower than the timeout times out, retries and completes once it recovers", () =>
    Effect.gen(function*() {
      const started = Date.now()
      let slowUntil = Number.POSITIVE_INFINITY
      const slow = yield* startSink((_, at) => (at < slowUntil ? { status: 200, delayMs: 600 } : { status: 200 }))
      const relay = yield* startRelay({ store: yield* tempSqlite, secrets: [SECRET], extra: config([["slow", slow.url]]) })
      const count = 12
      slowUntil = Date.now() + 2000
      yield* sendEvents(relay, "slow", count)
      yield* drain(relay, count, 20_000)

      // Whether the relay had hung up is known for sure only on the relay's side (the sink may still manage to
      // write a late answer into a socket being closed): count its recorded timeouts, not the sink's view.
      const timedOut = slow.hits.filter((hit) => hit.at < slowUntil)
      const fast = slow.hits.filter((hit) => hit.at >= slowUntil)
      const errors = yield* recordedErrors(relay, "slow")
      for (const error of errors) assert.match(error, /^Retryable: no answer within 300ms$/)
      assert.isAtLeast(timedOut.length, count, "every delivery met the slow phase")
      assert.isAtLeast(errors.length, timedOut.length, "every call answered after 600 ms timed out")
      // Every call the sink saw is a recorded attempt; a timed-out attempt may not have reached it.
      assert.isAtMost(slow.hits.length, errors.length + count)
      assert.strictEqual(new Set(fast.map((hit) => hit.key)).size, count, "every delivery reached the recovered sink")
      for (const [key, hits] of byKey(slow.hits)) {
        assert.isAbove(hits.length, 1, `${key} was retried after a timeout`)
        assert.isAtLeast(hits[hits.length - 1]!.at, slowUntil, `${key}: its last call was answered in time`)
      }

      const metrics = yield* scrape(relay)
      assert.deepStrictEqual(
        {
          done: attemptsMetric(metrics, "slow", "done"),
          retryable: attemptsMetric(metrics, "slow", "Retryable"),
          dead: metrics.get(`kyc_relay_deliveries_total{instance="slow",state="dead"}`) ?? 0
        },
        { done: count, retryable: errors.length, dead: 0 }
      )
      console.log(
        `[faults] slow: ${count} events, ${slow.hits.length} calls, ${timedOut.length} in the slow phase, ` +
          `${errors.length} timed out (${errors[0]}), ${count} done, ` +
          `last done at +${Math.max(...fast.map((hit) => hit.at)) - started} ms, total ${Date.now() - started} ms`
      )
    }), 30_000)

  it.scopedLive("a burst of 429s and 503s with Retry-After: 1 is never retried early and then drains", () =>
    Effect.gen(function*() {
      const started = Date.now()
      const burst = 8
      const limited = yield* startSink((index) =>
        index < burst ? { status: index % 2 === 0 ? 429 : 503, headers: { "retry-after": "1" } } : { status: 200 }
      )
      const relay = yield* startRelay({ store: yield* tempSqlite, secrets: [SECRET], extra: config([["limited", limited.url]]) })
      const count = 8
      yield* sendEvents(relay, "limited", count)
      yield* drain(relay, count, 20_000)

      const gaps: Array<number> = []
      for (const hits of byKey(limited.hits).values()) {
        hits.forEach((hit, i) => {
          if (hit.status !== 200 && i + 1 < hits.length) gaps.push(hits[i + 1]!.at - hit.at)
        })
      }
      const rateLimited = limited.hits.filter((hit) => hit.status === 429 || hit.status === 503).length
      const done = limited.hits.filter(ok).length
      assert.strictEqual(rateLimited, burst)
      assert.strictEqual(gaps.length, burst, "every rate-limited call was followed by another attempt")
      assert.isAtLeast(Math.min(...gaps), 1000, `no retry before Retry-After (gaps: ${gaps.join(", ")})`)
      assert.strictEqual(done, count)

      const metrics = yield* scrape(relay)
      assert.deepStrictEqual(
        {
          done: attemptsMetric(metrics, "limited", "done"),
          rateLimited: attemptsMetric(metrics, "limited", "RateLimited"),
          retryable: attemptsMetric(metrics, "limited", "Retryable")
        },
        { done, rateLimited, retryable: 0 }
      )
      console.log(
        `[faults] 429/503: ${count} events, ${rateLimited} x 429 or 503 with Retry-After: 1, next attempt after ` +
          `${Math.min(...gaps)}..${Math.max(...gaps)} ms, ${done} done, total ${Date.now() - started} ms`
      )
    }), 30_000)

  it.scopedLive("a destination that goes away and comes back on the same port gets everything", () =>
    Effect.gen(function*() {
      const started = Date.now()
      const sink = yield* startSink(() => ({ status: 200 }))
      const relay = yield* startRelay({ store: yield* tempSqlite, secrets: [SECRET], extra: config([["away", sink.url]]) })
      yield* sendEvents(relay, "before", 5)
      yield* drain(relay, 5, 10_000)
      const port = sink.port

      yield* Effect.promise(() => sink.stop())
      const downAt = Date.now()
      const count = 10
      yield* sendEvents(relay, "during", count)
      yield* pause(1500)
      const retriedWhileDown = (yield* relay.deliveries.list({ instance: "away", limit: 100 })).filter((row) => row.state !== "done")
      yield* Effect.promise(() => sink.start())
      const upAt = Date.now()
      assert.strictEqual(sink.port, port, "the sink came back on the same port")
      yield* drain(relay, 5 + count, 15_000)

      assert.strictEqual(sink.hits.filter((hit) => hit.at >= downAt && hit.at < upAt).length, 0)
      assert.strictEqual(retriedWhileDown.length, count)
      assert.isTrue(retriedWhileDown.every((row) => row.attempts >= 1), "every delivery was tried while the sink was away")
      const done = sink.hits.filter(ok)
      assert.strictEqual(done.length, 5 + count)
      assert.strictEqual(new Set(done.map((hit) => hit.key)).size, 5 + count)
      const errors = yield* recordedErrors(relay, "away")
      assert.isAtLeast(errors.length, count)
      for (const error of errors) assert.match(error, /^Retryable: POST request failed/)

      const metrics = yield* scrape(relay)
      assert.deepStrictEqual(
        {
          done: attemptsMetric(metrics, "away", "done"),
          retryable: attemptsMetric(metrics, "away", "Retryable"),
          permanent: attemptsMetric(metrics, "away", "Permanent")
        },
        { done: done.length, retryable: errors.length, permanent: 0 }
      )
      const lastDone = Math.max(...done.map((hit) => hit.at))
      console.log(
        `[faults] vanish: sink down ${upAt - downAt} ms, ${errors.length} refused attempts (${errors[0]}), ` +
          `${done.length} done, last ${lastDone - upAt} ms after it returned, total ${Date.now() - started} ms`
      )
    }), 30_000)
})
