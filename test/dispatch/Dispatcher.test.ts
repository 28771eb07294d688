import { assert, describe, it } from "@effect/vitest"
import Database from "better-sqlite3"
import { Chunk, Clock, Effect, Exit, Schedule, Scope, TestClock } from "effect"
import { createServer } from "node:http"
import type { AddressInfo } from "node:net"
import { fixture } from "../support/Fixtures.js"
import { eventually, pause, startReceiver } from "../support/Receiver.js"
import { post, signedHeaders, startRelay, tempSqlite } from "../support/Relay.js"

const SECRET = "test-secret"

const routedTo = (url: string, retry: string, pollInterval = "1s") => `
plugins:
  sink:
    use: webhook
    url: ${url}/hook
routes:
  - match: { event_type: "VKYC_*" }
    to: sink
retry:
${retry}
dispatch:
  poll_interval: ${pollInterval}
`

const send = (webhookUrl: string, eventType: string) => {
  const text = fixture(eventType).text
  return post(webhookUrl, text, signedHeaders(SECRET, text))
}

/** The store's view of one delivery and its attempts, with times relative to the first attempt. */
const history = (relay: Effect.Effect.Success<ReturnType<typeof startRelay>>) =>
  Effect.gen(function*() {
    const [delivery] = yield* relay.deliveries.list({ limit: 10 })
    const attempts = yield* relay.deliveries.attempts(delivery!.id)
    const t0 = Date.parse(attempts[0]!.started_at)
    return {
      state: delivery!.state,
      lastError: delivery!.last_error,
      attempts: attempts.map((a) => [Date.parse(a.started_at) - t0, a.outcome] as const)
    }
  })

/**
 * Waits, in real time, until the delivery has `n` attempts recorded: the retry the last one schedules is then in
 * the store before the test moves the clock.
 */
const recorded = (relay: Effect.Effect.Success<ReturnType<typeof startRelay>>, n: number) =>
  Effect.gen(function*() {
    for (let waited = 0; waited < 10_000; waited += 10) {
      const [delivery] = yield* relay.deliveries.list({ limit: 10 })
      if (delivery !== undefined && (yield* relay.deliveries.attempts(delivery.id)).length >= n) return
      yield* pause(10)
    }
    return yield* Effect.die(new Error(`attempt ${n} was not recorded in time`))
  })

/**
 * Waits, in real time, until the delivery's `n`-th attempt is recorded and its instance's claimer sleeps until its
 * next poll (`pollMs` from now on the TestClock): only then does moving the clock wake it.
 */
const settledAt = (relay: Effect.Effect.Success<ReturnType<typeof startRelay>>, n: number, pollMs = 1_000) =>
  Effect.zipRight(recorded(relay, n), asleep(pollMs))

/** Waits, in real time, until a claimer sleeps until its next poll, `pollMs` from now on the TestClock. */
const asleep = (pollMs = 1_000) =>
  Effect.gen(function*() {
    for (let waited = 0; waited < 10_000; waited += 10) {
      const now = yield* Clock.currentTimeMillis
      if (Chunk.some(yield* TestClock.sleeps(), (wake) => wake === now + pollMs)) return
      yield* pause(10)
    }
    return yield* Effect.die(new Error("the claimer did not go to sleep in time"))
  })

describe("dispatch with the TestClock", () => {
  it.scoped("retries with exponential backoff until the destination recovers", () =>
    Effect.gen(function*() {
      const sink = yield* startReceiver([{ status: 503 }, { status: 500 }, { status: 200 }])
      const relay = yield* startRelay({
        store: yield* tempSqlite,
        secrets: [SECRET],
        extra: routedTo(sink.url, "  initial_delay: 10s\n  multiplier: 3\n  jitter: 0\n  max_attempts: 5")
      })
      assert.strictEqual((yield* send(relay.webhookUrl, "VKYC_USER_CALL_STARTED")).status, 200)
      yield* settledAt(relay, 1)
      yield* TestClock.adjust("9 seconds")
      yield* pause(100)
      assert.strictEqual(sink.received.length, 1, "not before the backoff has passed")
      yield* asleep()
      yield* TestClock.adjust("1 second")
      yield* settledAt(relay, 2)
      yield* TestClock.adjust("29 seconds")
      yield* pause(100)
      assert.strictEqual(sink.received.length, 2)
      yield* asleep()
      yield* TestClock.adjust("1 second")
      yield* eventually(() => sink.received.length === 3)
      yield* pause(100)
      assert.deepStrictEqual(yield* history(relay), {
        state: "done",
        lastError: null,
        attempts: [[0, "Retryable"], [10_000, "Retryable"], [40_000, "done"]]
      })
      const keys = new Set(sink.received.map((r) => r.headers["idempotency-key"]))
      assert.strictEqual(keys.size, 1, "one idempotency key across retries")
      assert.deepStrictEqual(sink.received.map((r) => r.headers["x-kyc-relay-attempt"]), ["1", "2", "3"])
    }))

  it.scoped("waits at least Retry-After when rate limited, even past max_delay", () =>
    Effect.gen(function*() {
      const sink = yield* startReceiver([{ status: 429, headers: { "retry-after": "120" } }, { status: 200 }])
      const relay = yield* startRelay({
        store: yield* tempSqlite,
        secrets: [SECRET],
        extra: routedTo(sink.url, "  initial_delay: 1s\n  max_delay: 30s\n  jitter: 0")
      })
      yield* send(relay.webhookUrl, "VKYC_USER_CALL_QUEUED")
      yield* settledAt(relay, 1)
      yield* TestClock.adjust("119 seconds")
      yield* pause(100)
      assert.strictEqual(sink.received.length, 1)
      yield* asleep()
      yield* TestClock.adjust("1 second")
      yield* eventually(() => sink.received.length === 2)
      yield* pause(100)
      assert.deepStrictEqual((yield* history(relay)).attempts, [[0, "RateLimited"], [120_000, "done"]])
    }))

  it.scoped("sends a permanent failure straight to the dead letters", () =>
    Effect.gen(function*() {
      const sink = yield* startReceiver([{ status: 400 }])
      const relay = yield* startRelay({
        store: yield* tempSqlite,
        secrets: [SECRET],
        extra: routedTo(sink.url, "  initial_delay: 1s", "1m")
      })
      yield* send(relay.webhookUrl, "VKYC_USER_CALL_QUEUED")
      yield* recorded(relay, 1)
      yield* TestClock.adjust("1 hour")
      yield* pause(100)
      assert.strictEqual(sink.received.length, 1)
      assert.deepStrictEqual(yield* history(relay), {
        state: "dead",
        lastError: "permanent failure: HTTP 400",
        attempts: [[0, "Permanent"]]
      })
    }))

  it.scoped("dead-letters after max_attempts", () =>
    Effect.gen(function*() {
      const sink = yield* startReceiver([{ status: 503 }])
      const relay = yield* startRelay({
        store: yield* tempSqlite,
        secrets: [SECRET],
        extra: routedTo(sink.url, "  initial_delay: 1s\n  multiplier: 1\n  jitter: 0\n  max_attempts: 3")
      })
      yield* send(relay.webhookUrl, "VKYC_USER_CALL_QUEUED")
      for (let n = 1; n <= 3; n++) {
        yield* settledAt(relay, n)
        yield* TestClock.adjust("1 second")
      }
      yield* pause(100)
      assert.deepStrictEqual(yield* history(relay), {
        state: "dead",
        lastError: "gave up after 3 attempts: HTTP 503",
        attempts: [[0, "Retryable"], [1000, "Retryable"], [2000, "Retryable"]]
      })
    }))

  // A test of its own: `asleep` cannot tell one relay's claimer from another's. The claimer polls once a minute:
  // moving the clock a minute past polls every second would wake it at each one, and a claim made on the way (on
  // the writer thread, in real time) could still be running, at an earlier time, when the clock got there.
  it.scoped("dead-letters when the next attempt would pass max_age", () =>
    Effect.gen(function*() {
      const aged = yield* startReceiver([{ status: 503 }])
      const relay = yield* startRelay({
        store: yield* tempSqlite,
        secrets: [SECRET],
        extra: routedTo(aged.url, "  initial_delay: 1m\n  multiplier: 10\n  jitter: 0\n  max_age: 5m", "1m")
      })
      yield* send(relay.webhookUrl, "VKYC_USER_CALL_QUEUED")
      yield* settledAt(relay, 1, 60_000)
      yield* TestClock.adjust("1 minute")
      yield* eventually(() => aged.received.length === 2)
      yield* pause(100)
      const h = yield* history(relay)
      assert.strictEqual(h.state, "dead")
      assert.match(h.lastError!, /^gave up: the next attempt would be past max_age \(5m\)/)
    }))
})

describe("dispatch with a faulty plugin", () => {
  it.scopedLive("records a plugin that throws instead of failing as an attempt, and dead-letters it after max_attempts", () =>
    Effect.gen(function*() {
      const relay = yield* startRelay({
        store: yield* tempSqlite,
        secrets: [SECRET],
        extra: `
plugins:
  buggy:
    use: ./test/plugin/fixtures/throwing-plugin.mjs
routes:
  - to: buggy
retry:
  initial_delay: 100ms
  jitter: 0
  max_attempts: 2
dispatch:
  poll_interval: 100ms
`
      })
      assert.strictEqual((yield* send(relay.webhookUrl, "VKYC_USER_CALL_STARTED")).status, 200)
      yield* relay.deliveries.countByState.pipe(
        Effect.repeat({ schedule: Schedule.spaced("50 millis"), until: (counts) => counts.dead === 1 }),
        Effect.timeout("10 seconds")
      )
      const h = yield* history(relay)
      assert.deepStrictEqual(h.attempts.map(([, outcome]) => outcome), ["Retryable", "Retryable"])
      assert.match(h.lastError!, /the plugin failed unexpectedly: Error: plugin bug/)
    }))
})

describe("dispatch and replay", () => {
  it.scopedLive("a call that was replayed while in flight does not settle the replayed delivery", () =>
    Effect.gen(function*() {
      // The first call takes 800 ms; the replay's call takes 1.5 s, so the first one ends while the second runs.
      const sink = yield* startReceiver([{ status: 200, delayMs: 800 }, { status: 200, delayMs: 1_500 }])
      const relay = yield* startRelay({ store: yield* tempSqlite, secrets: [SECRET], extra: routedTo(sink.url, "  max_attempts: 3", "100ms") })
      const { body } = yield* send(relay.webhookUrl, "VKYC_USER_CALL_STARTED")
      yield* eventually(() => sink.received.length === 1)
      yield* relay.replay.event(body.event_id)
      yield* eventually(() => sink.received.length === 2)

      const delivery = Effect.map(relay.deliveries.list({ limit: 10 }), ([row]) => row!)
      const attempts = Effect.flatMap(delivery, (row) => relay.deliveries.attempts(row.id))
      const settled = <A>(effect: Effect.Effect<A>, until: (a: A) => boolean) =>
        effect.pipe(Effect.repeat({ schedule: Schedule.spaced("20 millis"), until }), Effect.timeout("5 seconds"))
      yield* settled(attempts, (rows) => rows.length === 1)
      assert.strictEqual((yield* delivery).state, "running", "the first call's result leaves the replay's claim alone")
      yield* settled(attempts, (rows) => rows.length === 2)
      yield* settled(delivery, (row) => row.state === "done")
      assert.strictEqual(sink.received.length, 2)
      // Counted once the dispatcher learns its write went through, which may be just after the row reads done.
      const scrape = Effect.promise(() => fetch(`${relay.baseUrl}/metrics`).then((r) => r.text()))
      yield* settled(scrape, (text) => text.includes(`kyc_relay_delivery_attempts_total{instance="sink",result="done"} 2`))
      const metrics = yield* scrape
      assert.include(metrics, `kyc_relay_delivery_attempts_total{instance="sink",result="done"} 2`)
      assert.include(metrics, `kyc_relay_deliveries_total{instance="sink",state="done"} 1`, "one delivery, done once")
    }))
})

describe("dispatch while the store refuses writes", () => {
  it.scopedLive("records an attempt once the store is back within its lease, without calling the destination again", () =>
    Effect.gen(function*() {
      const sink = yield* startReceiver([{ status: 200 }])
      const store = yield* tempSqlite
      const relay = yield* startRelay({ store, secrets: [SECRET], extra: routedTo(sink.url, "  initial_delay: 100ms", "100ms") })
      const other = new Database(store.slice("sqlite:".length))
      yield* Effect.addFinalizer(() => Effect.sync(() => other.close()))
      other.exec("CREATE TABLE refuse (attempts INTEGER NOT NULL)")
      other.exec("INSERT INTO refuse VALUES (1)")
      other.exec(`CREATE TRIGGER refuse_attempts BEFORE INSERT ON attempts WHEN (SELECT attempts FROM refuse) = 1
        BEGIN SELECT RAISE(ABORT, 'refused by a trigger'); END`)

      assert.strictEqual((yield* send(relay.webhookUrl, "VKYC_USER_CALL_QUEUED")).status, 200)
      yield* eventually(() => sink.received.length === 1)
      // Long enough for the first write and a retry to be refused.
      yield* pause(2_500)
      assert.deepStrictEqual(yield* relay.deliveries.countByState, { running: 1 })
      other.exec("UPDATE refuse SET attempts = 0")

      yield* relay.deliveries.countByState.pipe(
        Effect.repeat({ schedule: Schedule.spaced("50 millis"), until: (counts) => counts.done === 1 }),
        Effect.timeout("10 seconds")
      )
      assert.deepStrictEqual((yield* history(relay)).attempts, [[0, "done"]])
      assert.strictEqual(sink.received.length, 1)
    }))

  it.scopedLive("stops without waiting out shutdown_grace for an attempt it could not record yet", () =>
    Effect.gen(function*() {
      const sink = yield* startReceiver([{ status: 200 }])
      const store = yield* tempSqlite
      const relayScope = yield* Scope.make()
      const relay = yield* startRelay({
        store,
        secrets: [SECRET],
        extra: `${routedTo(sink.url, "  initial_delay: 100ms", "100ms")}  shutdown_grace: 20s\n`
      }).pipe(Scope.extend(relayScope))
      const other = new Database(store.slice("sqlite:".length))
      yield* Effect.addFinalizer(() => Effect.sync(() => other.close()))
      other.exec(`CREATE TRIGGER refuse_attempts BEFORE INSERT ON attempts BEGIN SELECT RAISE(ABORT, 'refused by a trigger'); END`)

      assert.strictEqual((yield* send(relay.webhookUrl, "VKYC_USER_CALL_QUEUED")).status, 200)
      yield* eventually(() => sink.received.length === 1)
      yield* pause(1_500)
      const started = Date.now()
      yield* Scope.close(relayScope, Exit.void)
      assert.isBelow(Date.now() - started, 5_000)
      assert.deepStrictEqual(other.prepare("SELECT state FROM deliveries").all(), [{ state: "running" }])
    }))

})

describe("dispatch at shutdown", () => {
  it.scopedLive("a call still on the wire past shutdown_grace is aborted, and its delivery is left to its lease", () =>
    Effect.gen(function*() {
      // A destination that never answers, and counts the connections its client closed.
      let closed = 0
      const silent = createServer((req) => {
        req.resume()
        req.socket.once("close", () => closed++)
      })
      yield* Effect.async<void>((resume) => {
        silent.listen(0, "127.0.0.1", () => resume(Effect.void))
      })
      yield* Effect.addFinalizer(() => Effect.sync(() => {
        silent.close()
        silent.closeAllConnections()
      }))
      const { port } = silent.address() as AddressInfo
      const store = yield* tempSqlite
      const relayScope = yield* Scope.make()
      const relay = yield* startRelay({
        store,
        secrets: [SECRET],
        extra: `
plugins:
  sink:
    use: webhook
    url: http://127.0.0.1:${port}/hook
    timeout: 60s
routes:
  - to: sink
dispatch:
  lease: 5m
  shutdown_grace: 300ms
`
      }).pipe(Scope.extend(relayScope))

      assert.strictEqual((yield* send(relay.webhookUrl, "VKYC_USER_CALL_QUEUED")).status, 200)
      const other = new Database(store.slice("sqlite:".length))
      yield* Effect.addFinalizer(() => Effect.sync(() => other.close()))
      yield* eventually(() => (other.prepare("SELECT state FROM deliveries").all() as Array<{ state: string }>)[0]?.state === "running")
      yield* pause(300)
      assert.strictEqual(closed, 0)
      const started = Date.now()
      yield* Scope.close(relayScope, Exit.void)
      assert.isBelow(Date.now() - started, 5_000)
      yield* eventually(() => closed === 1)
      assert.deepStrictEqual(other.prepare("SELECT state, attempts FROM deliveries").all(), [{ state: "running", attempts: 1 }])
      assert.deepStrictEqual(other.prepare("SELECT count(*) AS n FROM attempts").all(), [{ n: 0 }])
    }))
})
