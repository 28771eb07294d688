import * as NodeContext from "@effect/platform-node/NodeContext"
import { SqlClient } from "@effect/sql"
import { assert, describe, it } from "@effect/vitest"
import Database from "better-sqlite3"
import { DateTime, Effect, Layer } from "effect"
import { stateOf } from "../../src/domain/Lifecycle.js"
import { type Arrival, applyLifecycle } from "../../src/ingest/Apply.js"
import { deliveryRow } from "../../src/ingest/Plan.js"
import * as Sql from "../../src/store/Sql.js"
import { openSqliteWrite } from "../../src/store/SqliteWrite.js"
import { decodeFixture } from "../support/Conformance.js"
import { fixture } from "../support/Fixtures.js"
import { post, signedHeaders, startRelay, tempSqlite } from "../support/Relay.js"

const SECRET = "test-secret"

/** A queued-call event of its own verification, so that no two bodies are alike. */
const event = (verificationId: string) => {
  const body = JSON.parse(fixture("VKYC_USER_CALL_QUEUED").text)
  body.data.verification_id = verificationId
  return JSON.stringify(body)
}

const send = (url: string, verificationId: string) => {
  const body = event(verificationId)
  return post(url, body, signedHeaders(SECRET, body))
}

const timed = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const started = performance.now()
    const value = yield* effect
    return { value, millis: performance.now() - started }
  })

describe("SQLite writer thread", () => {
  it.scopedLive("waits for a write lock held by another connection without stopping the service", () =>
    Effect.gen(function*() {
      const store = yield* tempSqlite
      const relay = yield* startRelay({ store, secrets: [SECRET] })
      // An operator command (replay, say) in another process holding the write lock.
      const other = new Database(store.slice("sqlite:".length))
      yield* Effect.addFinalizer(() => Effect.sync(() => other.close()))
      other.exec("BEGIN IMMEDIATE")

      const pending = yield* Effect.fork(send(relay.webhookUrl, "vkyc_locked_1"))
      yield* Effect.sleep("300 millis")
      const health = yield* timed(Effect.promise(() => fetch(`${relay.baseUrl}/healthz`)))
      assert.strictEqual(health.value.status, 200)
      assert.isBelow(health.millis, 250, "the event loop answered while the writer waited for the lock")
      assert.isUndefined(pending.unsafePoll() ?? undefined, "the webhook is not answered before its commit")

      other.exec("ROLLBACK")
      const answered = yield* pending
      assert.strictEqual(answered.status, 200)
      assert.strictEqual(answered.body.status, "accepted")
      assert.strictEqual(yield* relay.events.count, 1)
    }))

  it.scopedLive("an event the database refuses fails alone: the rest of its batch is stored and answered", () =>
    Effect.gen(function*() {
      const store = yield* tempSqlite
      const relay = yield* startRelay({ store, secrets: [SECRET] })
      const other = new Database(store.slice("sqlite:".length))
      yield* Effect.addFinalizer(() => Effect.sync(() => other.close()))
      other.exec(`CREATE TRIGGER refuse_poison BEFORE INSERT ON events WHEN NEW.verification_id = 'vkyc_poison'
        BEGIN SELECT RAISE(ABORT, 'refused by a trigger'); END`)

      const ids = Array.from({ length: 30 }, (_, i) => (i === 13 ? "vkyc_poison" : `vkyc_batch_${i}`))
      const answers = yield* Effect.all(ids.map((id) => send(relay.webhookUrl, id)), { concurrency: "unbounded" })

      answers.forEach((answer, i) => {
        if (ids[i] === "vkyc_poison") {
          assert.strictEqual(answer.status, 503)
          assert.strictEqual(answer.body.type, "store-unavailable")
        } else {
          assert.strictEqual(answer.status, 200, ids[i])
          assert.strictEqual(answer.body.status, "accepted", ids[i])
        }
      })
      const stored = other.prepare("SELECT verification_id FROM events ORDER BY verification_id").all() as Array<{ verification_id: string }>
      assert.deepStrictEqual(stored.map((row) => row.verification_id), ids.filter((id) => id !== "vkyc_poison").sort())
      // Nothing of the refused event is left behind: no lifecycle state either.
      const states = other.prepare("SELECT COUNT(*) AS n FROM verifications WHERE verification_id = 'vkyc_poison'").get() as { n: number }
      assert.strictEqual(states.n, 0)
    }))

  it.scopedLive("decides within one batch what applyLifecycle decides: late and post-final events are stale", () =>
    Effect.gen(function*() {
      const store = yield* tempSqlite
      // Migrated by the service's own layer, then written by the writer's transaction directly.
      yield* Effect.flatMap(SqlClient.SqlClient, (sql) => sql`SELECT 1`).pipe(
        Effect.provide(Sql.layer(store).pipe(Layer.provide(NodeContext.layer))),
        Effect.scoped
      )
      const now = "2026-01-01T00:00:00.000Z"
      // One verification, in one batch: queued, the auditor's final decision, then an older and a later event.
      const types = ["VKYC_USER_CALL_QUEUED", "VKYC_AUDITOR_REVIEW_COMPLETED", "VKYC_USER_LINK_GENERATED", "VKYC_USER_CALL_STARTED"]
      const batch = types.map((eventType, i): Arrival => {
        const event = decodeFixture(eventType)
        const id = `evt_batch_${i}`
        const eventTime = DateTime.formatIso(event.event_time)
        const target = { instance: "crm", route: 0, params: {}, retry: undefined }
        return {
          row: {
            id, dedupe_key: `${eventTime}|${id}`, status: "accepted", event_type: eventType,
            verification_id: event.data.verification_id, event_status: null, event_sub_status: null, event_time: eventTime,
            received_at: now, scheme: "header", secret_index: 0, webhook_attempt: null, webhook_version: null,
            webhook_timestamp: null, idempotency_key: null, body: fixture(eventType).text, problems: null
          },
          tracked: {
            verificationId: event.data.verification_id,
            next: stateOf(id, event, eventTime),
            deliveries: [deliveryRow(id, target, now)],
            deliveriesIfStale: []
          }
        }
      })
      const expected = applyLifecycle(batch.map(({ row, tracked }) => ({ row, tracked: tracked! })), new Map())
      assert.deepStrictEqual(expected.decided.map((d) => d.stale), [false, false, true, true])

      const writer = openSqliteWrite(store.slice("sqlite:".length))
      yield* Effect.addFinalizer(() => Effect.sync(() => writer.close()))
      const committed = writer.commit(batch, now)
      assert.deepStrictEqual(committed.woken, [["crm", 2]])
      assert.strictEqual(committed.unrouted, 2)

      const db = new Database(store.slice("sqlite:".length), { readonly: true })
      yield* Effect.addFinalizer(() => Effect.sync(() => db.close()))
      const stale = db.prepare("SELECT stale FROM events ORDER BY id").pluck().all()
      assert.deepStrictEqual(stale, expected.decided.map((d) => (d.stale ? 1 : 0)))
      const delivered = db.prepare("SELECT event_id FROM deliveries ORDER BY event_id").pluck().all()
      assert.deepStrictEqual(delivered, ["evt_batch_0", "evt_batch_1"])
      const state = db.prepare("SELECT event_id, status FROM verifications").all()
      assert.deepStrictEqual(state, [{ event_id: "evt_batch_1", status: "AUDITOR_REVIEWED" }])
    }))
})
