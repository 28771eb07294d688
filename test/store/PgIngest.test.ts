import * as NodeContext from "@effect/platform-node/NodeContext"
import { assert, describe, it } from "@effect/vitest"
import { SqlClient } from "@effect/sql"
import { DateTime, Effect, Either, Layer, Schema } from "effect"
import { Route } from "../../src/config/RelayConfig.js"
import { compile } from "../../src/dispatch/Router.js"
import type { RulesSnapshot } from "../../src/dispatch/Rules.js"
import { decodeEventJson } from "../../src/domain/Event.js"
import { dedupeKey } from "../../src/http/Webhook.js"
import type { Arrival } from "../../src/ingest/Apply.js"
import { arrival } from "../../src/ingest/Plan.js"
import type { EventRow } from "../../src/store/Events.js"
import { PgIngest } from "../../src/store/PgIngest.js"
import * as Sql from "../../src/store/Sql.js"
import { openSqliteWrite } from "../../src/store/SqliteWrite.js"
import { fixture } from "../support/Fixtures.js"
import { STORES } from "../support/Relay.js"
import { eventRow } from "../support/Rows.js"

const NOW = "2026-01-01T00:00:00.000Z"

// `b` skips stale events, so a stale event's deliveries differ from a current one's.
const snapshot: RulesSnapshot = {
  routes: compile(Schema.decodeUnknownSync(Schema.Array(Route))([{ to: "a" }, { to: "b", skip_stale: true }])),
  retry: { max_attempts: 5, backoff: "1s", max_backoff: "1m", max_age: "1d" } as unknown as RulesSnapshot["retry"],
  instances: new Map([["a", {}], ["b", {}]]) as unknown as RulesSnapshot["instances"],
  disabled: new Map()
}

/** A fixture event with its own id, verification and time, as ingest plans it; `copyOf` makes a duplicate. */
const event = (id: string, eventType: string, verificationId: string, time: string): Arrival => {
  const content = JSON.parse(fixture(eventType).text) as { event_time: string; data: Record<string, unknown>; signature?: string }
  delete content.signature
  content.event_time = time
  content.data.verification_id = verificationId
  const body = JSON.stringify(content)
  const decoded = Either.getOrThrow(decodeEventJson(body))
  const eventTime = DateTime.formatIso(decoded.event_time)
  return arrival(snapshot, rowOf(id, eventType, body, eventTime, verificationId, "accepted"), decoded, NOW)
}

const rowOf = (
  id: string,
  eventType: string,
  body: string,
  eventTime: string | null,
  verificationId: string | null,
  status: EventRow["status"]
): EventRow =>
  eventRow({
    id,
    dedupe_key: dedupeKey(eventTime ?? undefined, body),
    status,
    event_type: eventType,
    verification_id: verificationId,
    event_status: null,
    event_sub_status: null,
    event_time: eventTime,
    received_at: NOW,
    body,
    problems: status === "quarantined" ? "[]" : null
  })

const quarantined = (id: string, body: string): Arrival => ({
  row: rowOf(id, "SOMETHING_ELSE", body, null, null, "quarantined"),
  tracked: undefined
})
const copyOf = (id: string, of: Arrival): Arrival => ({ ...of, row: { ...of.row, id } })

// Batches that PgIngest takes (different keys and verifications within each), covering new, stale, final-state,
// duplicate and quarantined events.
const batches = (): ReadonlyArray<ReadonlyArray<Arrival>> => {
  const queued = event("evt_e1", "VKYC_USER_CALL_QUEUED", "v1", "2025-05-23T10:00:00Z")
  const decided = event("evt_e2", "VKYC_AUDITOR_REVIEW_COMPLETED", "v2", "2025-05-23T10:00:00Z")
  const junk = quarantined("evt_e3", JSON.stringify({ event_type: "SOMETHING_ELSE", data: {} }))
  return [
    [queued, decided, junk],
    [
      event("evt_e4", "VKYC_USER_LINK_GENERATED", "v1", "2025-05-23T09:00:00Z"), // older than e1: stale
      event("evt_e5", "VKYC_USER_CALL_STARTED", "v2", "2025-05-23T11:00:00Z"), // after a final state: stale
      copyOf("evt_e6", junk), // a duplicate of e3
      event("evt_e7", "VKYC_USER_CALL_STARTED", "v3", "2025-05-23T11:00:00Z")
    ],
    [event("evt_e8", "VKYC_USER_CALL_STARTED", "v1", "2025-05-23T12:00:00Z"), copyOf("evt_e9", decided)],
    // A lone surrogate reaches the store as U+FFFD: the event is still current, and so are its deliveries.
    [event("evt_s1", "VKYC_USER_CALL_QUEUED", "v\ud800s", "2025-05-23T10:00:00Z")]
  ]
}

const tables = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  return {
    events: yield* sql`SELECT id, stale FROM events ORDER BY id`,
    verifications: yield* sql`SELECT verification_id, event_id, status, rank, terminal FROM verifications ORDER BY verification_id`,
    deliveries: yield* sql`SELECT id, event_id, instance, state FROM deliveries ORDER BY id`
  }
})

// Counts and flags read back the same from both stores.
const normalise = (rows: ReadonlyArray<Record<string, unknown>>) =>
  rows.map((row) => Object.fromEntries(Object.entries(row).map(([key, value]) => [key, typeof value === "string" ? value : Number(value)])))

describe("PostgreSQL ingest in one statement", () => {
  it.scopedLive("decides, stores and schedules exactly as the SQLite writer does", () =>
    Effect.gen(function*() {
      const sqliteUrl = yield* STORES[0].make
      const pgUrl = yield* STORES[1].make
      const sqlite = Sql.layer(sqliteUrl).pipe(Layer.provide(NodeContext.layer))
      const pg = Sql.layer(pgUrl).pipe(Layer.provide(NodeContext.layer))

      yield* Effect.provide(Effect.void, sqlite) // migrated, for the writer's own connection
      const writer = openSqliteWrite(sqliteUrl.slice("sqlite:".length))
      const expected = batches().map((batch) => writer.commit(batch, NOW))
      writer.close()

      const actual = yield* Effect.gen(function*() {
        const ingest = yield* PgIngest
        const committed = []
        for (const batch of batches()) {
          assert.isTrue(ingest.accepts(batch))
          committed.push(yield* Effect.promise(() => ingest.commit(batch, NOW)))
        }
        // Two ids the store holds as one, or past PostgreSQL's 65 535 parameters in one statement: the generic way.
        assert.isFalse(ingest.accepts([
          event("evt_c1", "VKYC_USER_CALL_QUEUED", "c\u0000", "2025-05-23T10:00:00Z"),
          event("evt_c2", "VKYC_USER_CALL_QUEUED", "c\ufffd", "2025-05-23T10:00:00Z")
        ]))
        assert.isFalse(ingest.accepts(Array.from({ length: 4_000 }, (_, i) => quarantined(`evt_q${i}`, `{"n":${i}}`))))
        return committed
      }).pipe(Effect.provide(PgIngest.Default.pipe(Layer.provide(pg))))

      const sorted = <A>(values: ReadonlyArray<A>) => [...values].sort()
      assert.deepStrictEqual(
        actual.map((c) => ({ ...c, staleIds: sorted(c.staleIds), woken: sorted(c.woken) })),
        expected.map((c) => ({ ...c, staleIds: sorted(c.staleIds), woken: sorted(c.woken) }))
      )
      assert.deepStrictEqual(actual.map((c) => c.staleIds), [[], ["evt_e4", "evt_e5"], [], []])
      assert.deepStrictEqual(actual[1]!.stored[2], { eventId: "evt_e3", duplicate: true })

      const fromSqlite = yield* Effect.provide(tables, sqlite)
      const fromPg = yield* Effect.provide(tables, pg)
      for (const table of ["events", "verifications", "deliveries"] as const) {
        assert.deepStrictEqual(normalise(fromPg[table]), normalise(fromSqlite[table]), table)
      }
      // The stale event e4 got only `a`'s delivery (`b` skips stale events); the current e7 both.
      assert.deepStrictEqual(
        fromPg.deliveries.filter((d) => d.event_id === "evt_e4" || d.event_id === "evt_e7").map((d) => `${d.event_id}:${d.instance}`),
        ["evt_e4:a", "evt_e7:a", "evt_e7:b"]
      )
    }))

  it.scopedLive("a batch the database refuses leaves nothing behind, and its connection goes back to the pool", () =>
    Effect.gen(function*() {
      const pg = Sql.layer(yield* STORES[1].make).pipe(Layer.provide(NodeContext.layer))
      yield* Effect.gen(function*() {
        const ingest = yield* PgIngest
        const sql = yield* SqlClient.SqlClient
        yield* Effect.promise(() => ingest.commit([event("evt_r1", "VKYC_USER_CALL_QUEUED", "w1", "2025-05-23T10:00:00Z")], NOW))
        // Marking a stale event is the transaction's last statement: refused there, the batch's rows are already written.
        yield* sql.unsafe(`CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'refused by a trigger'; END $$ LANGUAGE plpgsql`)
        yield* sql`CREATE TRIGGER refuse_stale BEFORE UPDATE OF stale ON events FOR EACH ROW EXECUTE FUNCTION refuse()`
        const refused = [
          event("evt_r2", "VKYC_USER_LINK_GENERATED", "w1", "2025-05-23T09:00:00Z"), // older than r1: stale
          event("evt_r3", "VKYC_USER_CALL_QUEUED", "w2", "2025-05-23T10:00:00Z")
        ]
        assert.isTrue(ingest.accepts(refused))
        // More failures than the pool has connections: a connection kept after its failure would starve the next.
        for (let i = 0; i < 12; i++) {
          const failed = yield* Effect.either(Effect.tryPromise(() => ingest.commit(refused, NOW)))
          assert.isTrue(Either.isLeft(failed) && String(failed.left.cause).includes("refused by a trigger"))
        }
        yield* sql`DROP TRIGGER refuse_stale ON events`
        const committed = yield* Effect.promise(() => ingest.commit([event("evt_r4", "VKYC_USER_CALL_QUEUED", "w3", "2025-05-23T10:00:00Z")], NOW))
        assert.deepStrictEqual(committed.stored, [{ eventId: "evt_r4", duplicate: false }])
        assert.deepStrictEqual(yield* sql`SELECT id FROM events ORDER BY id`, [{ id: "evt_r1" }, { id: "evt_r4" }])
        assert.deepStrictEqual(yield* sql`SELECT verification_id, event_id FROM verifications ORDER BY verification_id`, [
          { verification_id: "w1", event_id: "evt_r1" },
          { verification_id: "w3", event_id: "evt_r4" }
        ])
        assert.deepStrictEqual(
          (yield* sql<{ event_id: string }>`SELECT event_id FROM deliveries ORDER BY id`).map((d) => d.event_id).sort(),
          ["evt_r1", "evt_r1", "evt_r4", "evt_r4"]
        )
      }).pipe(Effect.provide(PgIngest.Default.pipe(Layer.provideMerge(pg))))
    }))
})
