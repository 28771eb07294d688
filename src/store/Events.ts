import { SqlClient } from "@effect/sql"
import { Array as Arr, Effect, Schema } from "effect"

export const EventStatus = Schema.Literal("accepted", "quarantined")
export type EventStatus = typeof EventStatus.Type

/** One webhook as stored. `body` is the exact text received; the other columns are read from it for queries. */
export const EventRow = Schema.Struct({
  id: Schema.String,
  dedupe_key: Schema.String,
  status: EventStatus,
  event_type: Schema.NullOr(Schema.String),
  verification_id: Schema.NullOr(Schema.String),
  event_status: Schema.NullOr(Schema.String),
  event_sub_status: Schema.NullOr(Schema.String),
  event_time: Schema.NullOr(Schema.String),
  received_at: Schema.String,
  scheme: Schema.Literal("header", "body"),
  secret_index: Schema.Number,
  webhook_attempt: Schema.NullOr(Schema.String),
  webhook_version: Schema.NullOr(Schema.String),
  webhook_timestamp: Schema.NullOr(Schema.String),
  idempotency_key: Schema.NullOr(Schema.String),
  body: Schema.String,
  problems: Schema.NullOr(Schema.String)
})
export type EventRow = typeof EventRow.Type

export interface Stored {
  readonly eventId: string
  readonly duplicate: boolean
}

const decodeRows = Schema.decodeUnknown(Schema.Array(EventRow))

/** dedupe key → the id of the event stored with it, from rows that carry both. */
export const idsByDedupeKey = (rows: ReadonlyArray<{ readonly id: string; readonly dedupe_key: string }>) =>
  new Map(rows.map((row) => [row.dedupe_key, row.id]))

export class Events extends Effect.Service<Events>()("kyc-relay/Events", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient

    /** The ids of the events stored under these dedupe keys. */
    const selectIdsByKey = (keys: ReadonlyArray<string>) =>
      sql<{ id: string; dedupe_key: string }>`SELECT id, dedupe_key FROM events WHERE ${sql.in("dedupe_key", keys)}`

    const idsByKey = (keys: ReadonlyArray<string>) => selectIdsByKey(keys).pipe(Effect.map(idsByDedupeKey))

    /**
     * Stores a batch in one transaction. A row whose dedupe key is already stored (or appears earlier in
     * the batch) is not written; its answer carries the id of the event stored first. The unique index,
     * not a read before the write, is what makes concurrent deliveries of one event safe.
     */
    const insertBatch = (rows: ReadonlyArray<EventRow>) =>
      Effect.gen(function*() {
        const unique = Arr.dedupeWith(rows, (a, b) => a.dedupe_key === b.dedupe_key)
        const inserted = yield* sql<{ id: string; dedupe_key: string }>`
          INSERT INTO events ${sql.insert(unique)}
          ON CONFLICT (dedupe_key) DO NOTHING
          RETURNING id, dedupe_key`
        const newIds = idsByDedupeKey(inserted)
        const missing = unique.filter((row) => !newIds.has(row.dedupe_key)).map((row) => row.dedupe_key)
        const oldIds = missing.length === 0 ? new Map<string, string>() : yield* idsByKey(missing)
        return rows.map((row): Stored => {
          const fresh = newIds.get(row.dedupe_key)
          return fresh === row.id
            ? { eventId: fresh, duplicate: false }
            : { eventId: fresh ?? oldIds.get(row.dedupe_key)!, duplicate: true }
        })
      }).pipe(sql.withTransaction)

    const list = Effect.fn("Events.list")(function*(options: { readonly quarantined: boolean; readonly limit: number }) {
      const rows = options.quarantined
        ? yield* sql`SELECT * FROM events WHERE status = 'quarantined' ORDER BY received_at DESC, id DESC LIMIT ${options.limit}`
        : yield* sql`SELECT * FROM events ORDER BY received_at DESC, id DESC LIMIT ${options.limit}`
      return yield* decodeRows(rows)
    }, Effect.orDie)

    /** Every event of one verification in the order Cashfree says they happened. */
    const timeline = Effect.fn("Events.timeline")(function*(verificationId: string) {
      const rows = yield* sql`SELECT * FROM events WHERE verification_id = ${verificationId}
        ORDER BY event_time ASC, received_at ASC, id ASC`
      return yield* decodeRows(rows)
    }, Effect.orDie)

    const count = sql<{ n: number | string }>`SELECT COUNT(*) AS n FROM events`.pipe(
      Effect.map((rows) => Number(rows[0]?.n ?? 0)),
      Effect.orDie
    )

    const ping = sql`SELECT 1`.pipe(Effect.asVoid)

    /** Flags events that arrived after their verification had already moved past them. */
    const updateStale = (ids: ReadonlyArray<string>) => sql`UPDATE events SET stale = 1 WHERE ${sql.in("id", ids)}`

    const markStale = (ids: ReadonlyArray<string>) => ids.length === 0 ? Effect.void : updateStale(ids).pipe(Effect.asVoid)

    /** Events to replay, chosen by id, by status or by arrival time. */
    const select = Effect.fn("Events.select")(function*(filter: {
      readonly ids?: ReadonlyArray<string> | undefined
      readonly status?: EventStatus | undefined
      readonly since?: string | undefined
      readonly until?: string | undefined
    }) {
      const conditions = [
        ...(filter.ids === undefined ? [] : [sql.in("id", filter.ids)]),
        ...(filter.status === undefined ? [] : [sql`status = ${filter.status}`]),
        ...(filter.since === undefined ? [] : [sql`received_at >= ${filter.since}`]),
        ...(filter.until === undefined ? [] : [sql`received_at < ${filter.until}`])
      ]
      const rows = yield* sql`SELECT * FROM events WHERE ${sql.and(conditions)} ORDER BY received_at, id`
      const decoded = yield* decodeRows(rows)
      return decoded.map((row, i) => ({ row, stale: Number((rows[i] as { stale: unknown }).stale) === 1 }))
    }, Effect.orDie)

    /** A quarantined event that decodes under the current schema becomes an ordinary accepted event. */
    const accept = (id: string, eventTime: string) =>
      sql`UPDATE events SET status = 'accepted', problems = NULL, event_time = ${eventTime} WHERE id = ${id}`.pipe(
        Effect.asVoid,
        Effect.orDie
      )

    return {
      insertBatch,
      idsByKey,
      list,
      timeline,
      count,
      ping,
      markStale,
      select,
      accept,
      // The statements themselves, for a transaction run outside the SQL client (see PgIngest).
      statements: { selectIdsByKey, updateStale }
    } as const
  })
}) {}
