import * as NodeContext from "@effect/platform-node/NodeContext"
import { assert, describe, it } from "@effect/vitest"
import { Migrator, SqlClient } from "@effect/sql"
import { Effect, Either, Layer } from "effect"
import { createHash } from "node:crypto"
import { canonical, parse } from "../../src/cashfree/LosslessJson.js"
import { eventTimeIso } from "../../src/domain/Event.js"
import { dedupeKey } from "../../src/http/Webhook.js"
import { createEvents } from "../../src/store/migrations/0001_events.js"
import { createDeliveries } from "../../src/store/migrations/0002_deliveries.js"
import { prefixDedupeKeys } from "../../src/store/migrations/0003_dedupe_time.js"
import { Events, type EventRow } from "../../src/store/Events.js"
import * as Sql from "../../src/store/Sql.js"
import { fixture } from "../support/Fixtures.js"
import { STORES } from "../support/Relay.js"
import { eventRow } from "../support/Rows.js"

const row = (id: string, dedupeKey: string, overrides: Partial<EventRow> = {}): EventRow =>
  eventRow({ id, dedupe_key: dedupeKey, webhook_attempt: "1", webhook_version: "2025-01-01", webhook_timestamp: "1746427759733", ...overrides })

const withEvents = (url: string) =>
  Effect.provide(Events.Default.pipe(Layer.provide(Sql.layer(url)), Layer.provide(NodeContext.layer)))

describe.each(STORES)("event store on $name", ({ make }) => {
  it.scopedLive("starts several instances on one new database at once", () =>
    Effect.gen(function*() {
      const url = yield* make
      const counts = yield* Effect.all(
        Array.from({ length: 4 }, () => Effect.flatMap(Events, (events) => events.count).pipe(withEvents(url))),
        { concurrency: "unbounded" }
      )
      assert.deepStrictEqual(counts, [0, 0, 0, 0])
    }))

  it.scopedLive("stores a key once, within one batch and across batches, and answers with the first id", () =>
    Effect.gen(function*() {
      const url = yield* make
      yield* Effect.gen(function*() {
        const events = yield* Events
        const first = yield* events.insertBatch([row("e1", "k1"), row("e2", "k2"), row("e3", "k1")])
        assert.deepStrictEqual(first, [
          { eventId: "e1", duplicate: false },
          { eventId: "e2", duplicate: false },
          { eventId: "e1", duplicate: true }
        ])
        const second = yield* events.insertBatch([row("e4", "k2"), row("e5", "k3")])
        assert.deepStrictEqual(second, [
          { eventId: "e2", duplicate: true },
          { eventId: "e5", duplicate: false }
        ])
        assert.strictEqual(yield* events.count, 3)
      }).pipe(withEvents(url))
    }))

  it.scopedLive("keeps concurrent batches of the same keys to one row each", () =>
    Effect.gen(function*() {
      const url = yield* make
      yield* Effect.gen(function*() {
        const events = yield* Events
        const batches = Array.from({ length: 8 }, (_, b) =>
          events.insertBatch(Array.from({ length: 20 }, (_, i) => row(`e${b}-${i}`, `k${i}`))))
        const results = (yield* Effect.all(batches, { concurrency: "unbounded" })).flat()
        assert.strictEqual(results.filter((r) => !r.duplicate).length, 20)
        assert.strictEqual(new Set(results.map((r) => r.eventId)).size, 20)
        assert.strictEqual(yield* events.count, 20)
      }).pipe(withEvents(url))
    }))

  it.scopedLive("keeps data across a restart and lists the timeline in event-time order", () =>
    Effect.gen(function*() {
      const url = yield* make
      yield* Effect.flatMap(Events, (events) =>
        events.insertBatch([
          row("late", "k1", { event_time: "2025-05-24T06:10:00.000Z", event_type: "VKYC_AUDITOR_REVIEW_COMPLETED" }),
          row("early", "k2", { event_time: "2025-05-22T03:51:14.000Z", event_type: "VKYC_USER_LINK_GENERATED" }),
          row("other", "k3", { verification_id: "vkyc_2" }),
          row("bad", "k4", { status: "quarantined", problems: "[]", received_at: "2026-01-02T00:00:00.000Z" })
        ])).pipe(withEvents(url))
      yield* Effect.gen(function*() {
        const events = yield* Events
        assert.deepStrictEqual((yield* events.timeline("vkyc_1")).map((r) => r.id), ["early", "bad", "late"])
        assert.deepStrictEqual((yield* events.list({ quarantined: true, limit: 10 })).map((r) => r.id), ["bad"])
        const all = yield* events.list({ quarantined: false, limit: 10 })
        assert.strictEqual(all.length, 4)
        assert.deepStrictEqual(all.find((r) => r.id === "early"), row("early", "k2", { event_time: "2025-05-22T03:51:14.000Z", event_type: "VKYC_USER_LINK_GENERATED" }))
      }).pipe(withEvents(url))
    }))

  it.scopedLive("gives keys stored before the time prefix that prefix, so that retries of old events stay duplicates", () =>
    Effect.gen(function*() {
      const url = yield* make
      const body = fixture("VKYC_USER_CALL_QUEUED").text
      const canonicalBody = canonical(Either.getOrThrow(parse(body)), "signature")
      const eventTime = "2025-05-23T14:29:02.000Z"
      // A store as the release before the prefix left it: two migrations, keys that are the bare hash.
      yield* Effect.gen(function*() {
        yield* Migrator.make({})({
          table: "kyc_relay_migrations",
          loader: Migrator.fromRecord({ "0001_events": createEvents, "0002_deliveries": createDeliveries })
        })
        const sql = yield* SqlClient.SqlClient
        const old = row("old", createHash("sha256").update(canonicalBody).digest("hex"), { event_time: eventTime, body })
        yield* sql`INSERT INTO events ${sql.insert({ ...old, stale: 0 })}`
        const quarantined = row("bare", "f".repeat(64), { event_time: null, status: "quarantined" })
        yield* sql`INSERT INTO events ${sql.insert({ ...quarantined, stale: 0 })}`
      }).pipe(Effect.provide(Sql.clientLayer(url)), Effect.scoped)

      yield* Effect.gen(function*() {
        const events = yield* Events
        const retry = yield* events.insertBatch([row("retry", dedupeKey(eventTime, canonicalBody), { event_time: eventTime, body })])
        assert.deepStrictEqual(retry, [{ eventId: "old", duplicate: true }])
        const again = yield* events.insertBatch([row("again", dedupeKey(undefined, "x"), { event_time: null })])
        assert.deepStrictEqual(again, [{ eventId: "again", duplicate: false }])
        const sql = yield* SqlClient.SqlClient
        const keys = yield* sql<{ id: string; dedupe_key: string }>`SELECT id, dedupe_key FROM events WHERE id = 'bare'`
        assert.deepStrictEqual(keys, [{ id: "bare", dedupe_key: `|${"f".repeat(64)}` }])
      }).pipe(Effect.provide(Events.Default.pipe(Layer.provideMerge(Sql.layer(url)), Layer.provide(NodeContext.layer))))
    }))

  it.scopedLive("re-keys events quarantined or replayed under the raw-time prefix, so that their retries stay duplicates", () =>
    Effect.gen(function*() {
      const url = yield* make
      const hashOf = (n: number) => createHash("sha256").update(`body ${n}`).digest("hex")
      // Keys as the release before 0004 made them: a quarantined event's prefix was its time as received, and a
      // replay that accepted it kept that prefix while storing the time in ISO form.
      yield* Effect.gen(function*() {
        yield* Migrator.make({})({
          table: "kyc_relay_migrations",
          loader: Migrator.fromRecord({
            "0001_events": createEvents,
            "0002_deliveries": createDeliveries,
            "0003_dedupe_time": prefixDedupeKeys
          })
        })
        const sql = yield* SqlClient.SqlClient
        const rows = [
          row("quarantined", `2025-05-23T14:29:02Z|${hashOf(1)}`, { status: "quarantined", event_time: "2025-05-23T14:29:02Z" }),
          row("replayed", `2024-02-15 16:53:15|${hashOf(2)}`, { event_time: "2024-02-15T16:53:15.000Z" }),
          row("junk", `yesterday|${hashOf(3)}`, { status: "quarantined", event_time: "yesterday" }),
          // The accepted copy of a quarantined event, stored after an upgrade under the new form of its key.
          row("copy", `2025-05-22T03:51:14.000Z|${hashOf(4)}`, { event_time: "2025-05-22T03:51:14.000Z" }),
          row("original", `2025-05-22T03:51:14Z|${hashOf(4)}`, { status: "quarantined", event_time: "2025-05-22T03:51:14Z" }),
          row("current", `2025-05-23T14:29:02.000Z|${hashOf(5)}`)
        ]
        for (const r of rows) yield* sql`INSERT INTO events ${sql.insert({ ...r, stale: 0 })}`
      }).pipe(Effect.provide(Sql.clientLayer(url)), Effect.scoped)

      yield* Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const keys = yield* sql<{ id: string; dedupe_key: string }>`SELECT id, dedupe_key FROM events ORDER BY id`
        assert.deepStrictEqual(Object.fromEntries(keys.map((k) => [k.id, k.dedupe_key])), {
          copy: `2025-05-22T03:51:14.000Z|${hashOf(4)}`,
          current: `2025-05-23T14:29:02.000Z|${hashOf(5)}`,
          junk: `|${hashOf(3)}`,
          original: `2025-05-22T03:51:14Z|${hashOf(4)}`,
          quarantined: `2025-05-23T14:29:02.000Z|${hashOf(1)}`,
          replayed: `2024-02-15T16:53:15.000Z|${hashOf(2)}`
        })
        const events = yield* Events
        const retries = yield* events.insertBatch([
          row("r1", `${eventTimeIso("2025-05-23T14:29:02Z")}|${hashOf(1)}`),
          row("r2", `${eventTimeIso("2024-02-15 16:53:15")}|${hashOf(2)}`),
          row("r3", `${eventTimeIso("yesterday") ?? ""}|${hashOf(3)}`)
        ])
        assert.deepStrictEqual(retries.map((r) => [r.eventId, r.duplicate]), [
          ["quarantined", true],
          ["replayed", true],
          ["junk", true]
        ])
      }).pipe(Effect.provide(Events.Default.pipe(Layer.provideMerge(Sql.layer(url)), Layer.provide(NodeContext.layer))))
    }))
})
