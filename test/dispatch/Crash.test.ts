import * as NodeContext from "@effect/platform-node/NodeContext"
import { SqlClient } from "@effect/sql"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Schedule } from "effect"
import { writeFileSync } from "node:fs"
import { join } from "node:path"
import { Deliveries } from "../../src/store/Deliveries.js"
import * as Sql from "../../src/store/Sql.js"
import { uniqueEvent } from "../support/Fixtures.js"
import { kill, listening, spawnCli, stop, tempDir } from "../support/Process.js"
import { eventually, pause, startReceiver } from "../support/Receiver.js"
import { post, relayConfigYaml, signedHeaders, tempSqlite } from "../support/Relay.js"

const SECRET = "crash-test-secret"
const EVENTS = 30
const CONCURRENCY = 4
const SINK_DELAY_MS = 300

describe("dispatch across a crash", () => {
  it.scopedLive("nothing is lost when the server is killed mid-delivery", () =>
    Effect.gen(function*() {
      const started = Date.now()
      const store = yield* tempSqlite
      const dir = yield* tempDir("kyc-relay-crash-")
      const sink = yield* startReceiver(() => ({ status: 200, delayMs: SINK_DELAY_MS }))
      const config = join(dir, "relay.yaml")
      writeFileSync(
        config,
        `
${relayConfigYaml({ store, secrets: [SECRET] })}plugins:
  sink-a:
    use: webhook
    url: ${sink.url}/a
    concurrency: ${CONCURRENCY}
    timeout: 2500ms
routes:
  - match: { event_type: "*" }
    to: sink-a
retry:
  initial_delay: 200ms
  jitter: 0
dispatch:
  poll_interval: 200ms
  lease: 3s
  shutdown_grace: 2s
`
      )
      const env = { KYC_RELAY_LOG_LEVEL: "info" }

      const first = yield* spawnCli(["serve", "--config", config], env)
      const webhookUrl = `${yield* listening(first)}/webhooks/cashfree`

      const answers = yield* Effect.forEach(
        Array.from({ length: EVENTS }, (_, i) => uniqueEvent("crash", i)),
        (body) => post(webhookUrl, body, signedHeaders(SECRET, body)),
        { concurrency: 10 }
      )
      assert.deepStrictEqual(answers.map((a) => [a.status, a.body.status]), answers.map(() => [200, "accepted"]))
      const acknowledged = new Set<string>(answers.map((a) => a.body.event_id as string))
      assert.strictEqual(acknowledged.size, EVENTS)

      // Some deliveries through, the rest queued or on the wire: kill it now.
      yield* eventually(() => sink.received.length >= 6, 15_000)
      const signal = yield* kill(first.child)
      assert.strictEqual(signal, "SIGKILL")
      // Bytes already written by the dead process may still reach the sink; let them land before counting.
      yield* pause(100)
      const beforeKill = sink.received.length
      const seenBeforeKill = new Set(sink.received.map((r) => r.headers["x-kyc-relay-event-id"] as string))
      assert.isBelow(seenBeforeKill.size, EVENTS, "killed before every delivery had reached the sink")

      const second = yield* spawnCli(["serve", "--config", config], env)
      yield* listening(second)
      const restartedAt = Date.now()

      const receivedIds = () => new Set(sink.received.map((r) => r.headers["x-kyc-relay-event-id"] as string))
      yield* eventually(() => [...acknowledged].every((id) => receivedIds().has(id)), 30_000).pipe(
        Effect.catchAllDefect(() =>
          Effect.dieMessage(
            `not every acknowledged event reached the sink: missing ${
              [...acknowledged].filter((id) => !receivedIds().has(id)).join(", ")
            }\n--- first server ---\n${first.output.stdout}${first.output.stderr}\n--- second server ---\n${second.output.stdout}${second.output.stderr}`
          )
        )
      )
      const allReceivedAfterMs = Date.now() - restartedAt

      // The store agrees, seen through the real services on the same database (the server keeps running).
      const storeLayer = Deliveries.Default.pipe(
        Layer.provideMerge(Sql.layer(store)),
        Layer.provide(NodeContext.layer)
      )
      const ctx = yield* Layer.build(storeLayer).pipe(Effect.orDie)
      const deliveries = yield* Effect.provide(Deliveries, ctx)
      const sql = yield* Effect.provide(SqlClient.SqlClient, ctx)
      // The last answer reaches the sink before the worker records it: wait for the store to catch up.
      const counts = yield* deliveries.countByState.pipe(
        Effect.filterOrFail((c) => c.done === EVENTS),
        Effect.retry(Schedule.spaced("100 millis")),
        Effect.timeout("10 seconds"),
        Effect.catchAll(() => deliveries.countByState)
      )
      // Anything still to come (it should not) would arrive within a poll interval or two.
      yield* pause(500)

      // Every acknowledged event was delivered.
      const received = sink.received
      const perEvent = new Map<string, number>()
      for (const r of received) {
        const id = r.headers["x-kyc-relay-event-id"] as string
        perEvent.set(id, (perEvent.get(id) ?? 0) + 1)
        assert.strictEqual(r.path, "/a")
      }
      for (const id of acknowledged) assert.isTrue(perEvent.has(id), `${id} delivered`)
      assert.strictEqual(perEvent.size, EVENTS, "nothing but the acknowledged events")

      // Repeats only for what was on the wire when the process died: at most one per worker.
      const repeated = [...perEvent].filter(([, n]) => n > 1)
      const repeats = received.length - perEvent.size
      assert.isAtMost(repeats, CONCURRENCY, `repeated deliveries: ${JSON.stringify(repeated)}`)
      for (const [id, n] of repeated) {
        assert.strictEqual(n, 2, `${id} delivered at most twice`)
        assert.isTrue(seenBeforeKill.has(id), `${id} was repeated, so it must have been in flight at the kill`)
        // The sink can tell it is a repeat: same idempotency key, a later attempt number.
        const copies = received.filter((r) => r.headers["x-kyc-relay-event-id"] === id)
        assert.strictEqual(copies[0]!.headers["idempotency-key"], copies[1]!.headers["idempotency-key"])
        assert.isAbove(Number(copies[1]!.headers["x-kyc-relay-attempt"]), Number(copies[0]!.headers["x-kyc-relay-attempt"]))
      }

      // The store: every delivery done, by both processes. An attempt cut short by the kill leaves no attempts row
      // (only its claim counted), so there is exactly one recorded attempt per delivery, all of them "done".
      assert.deepStrictEqual(counts, { done: EVENTS })
      const rows = yield* deliveries.list({ limit: 1000 })
      assert.strictEqual(rows.length, EVENTS)
      assert.deepStrictEqual(new Set(rows.map((r) => r.event_id)), acknowledged)
      for (const row of rows) {
        assert.strictEqual(row.state, "done")
        assert.isNull(row.lease_owner)
        assert.isNull(row.last_error)
      }
      const workers = yield* sql<{ worker: string }>`SELECT DISTINCT worker FROM attempts`.pipe(Effect.orDie)
      assert.strictEqual(workers.length, 2, "the first process finished some deliveries, the second the rest")
      const outcomes = yield* sql<{ outcome: string; n: number }>`SELECT outcome, COUNT(*) AS n FROM attempts GROUP BY outcome`
        .pipe(Effect.orDie)
      assert.deepStrictEqual(outcomes.map((o) => [o.outcome, Number(o.n)]), [["done", EVENTS]])

      // A graceful stop of the survivor: SIGTERM, exit 0.
      assert.strictEqual(yield* stop(second.child), 0, `${second.output.stdout}${second.output.stderr}`)

      console.log(
        `crash: ${EVENTS} events, ${beforeKill} received before the kill, ${received.length} deliveries in all, ` +
          `${repeats} repeated (${repeated.map(([id]) => id).join(", ") || "none"}), ` +
          `all received ${allReceivedAfterMs} ms after the restart, ${Date.now() - started} ms in all`
      )
    }), 60_000)
})
