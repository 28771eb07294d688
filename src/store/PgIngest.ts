import { SqlClient, type Statement } from "@effect/sql"
import { Effect } from "effect"
import type Pg from "pg"
import { type Arrival, freshOf, planDeliveries } from "../ingest/Apply.js"
import { DELIVERY_COLUMNS, EVENT_COLUMNS, VERIFICATION_COLUMNS } from "./Columns.js"
import { Events, idsByDedupeKey, type Stored } from "./Events.js"
import { PgPool } from "./Sql.js"
import type { Committed } from "./SqliteWrite.js"
import { storable } from "./Storable.js"
import { FORWARD_ONLY, toRow } from "./VerificationRow.js"

// Parameters per row of each kind in the statement; PostgreSQL takes at most 65 535 in one.
const EVENT_PARAMS = EVENT_COLUMNS.length
const STATE_PARAMS = VERIFICATION_COLUMNS.length + 1
const DELIVERY_PARAMS = DELIVERY_COLUMNS.length + 2
const MAX_PARAMS = 60_000

// Columns whose values go in as integers: an untyped parameter in VALUES is text.
const INTEGER_COLUMNS: ReadonlySet<string> = new Set(["rank", "terminal", "route", "attempts"])

const VERIFICATION_LIST = VERIFICATION_COLUMNS.join(", ")
const DELIVERY_LIST = DELIVERY_COLUMNS.join(", ")

/**
 * The ingest transaction on PostgreSQL for the usual batch, one whose events all have different dedupe keys and
 * verifications: the events, their verifications' states and their deliveries go in with one statement (three
 * data-modifying `WITH`s), so a batch costs the event loop three round trips (`BEGIN`, the statement, `COMMIT`)
 * instead of five. The steps are those of the generic transaction in src/ingest/Ingest.ts without its read of the
 * states (see there): the forward-only upsert decides which new events are stale, and each new event gets the
 * deliveries of what it turned out to be. Duplicates and stale events, rare, take one more statement each.
 *
 * The statements are built with the SQL client's fragments but run on a connection of its `pg` pool directly, as a
 * plain async function: through the client, each statement cost the event loop a span, a scope and a few dozen
 * effect steps, more than building it.
 */
export class PgIngest extends Effect.Service<PgIngest>()("kyc-relay/PgIngest", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const events = yield* Events
    const { pool } = yield* PgPool

    /** Whether `commit` takes this batch; the generic transaction takes the others, and every batch on SQLite. */
    const accepts = (batch: ReadonlyArray<Arrival>) => {
      if (pool === undefined) return false
      const tracked = batch.flatMap(({ tracked }) => tracked === undefined ? [] : [tracked])
      const deliveries = tracked.reduce((n, t) =>
        n + t.deliveries.length + (t.deliveries === t.deliveriesIfStale ? 0 : t.deliveriesIfStale.length), 0)
      return new Set(batch.map(({ row }) => row.dedupe_key)).size === batch.length &&
        // Compared as stored: two ids the store holds as one would make the upsert touch one row twice.
        new Set(tracked.map((t) => storable(t.verificationId))).size === tracked.length &&
        EVENT_PARAMS * batch.length + STATE_PARAMS * tracked.length + DELIVERY_PARAMS * deliveries <= MAX_PARAMS
    }

    /** One row of a VALUES list: `columns` of `row` in order, then `extra`. */
    const tuple = (row: Readonly<Record<string, string | number | null>>, columns: ReadonlyArray<string>, extra: ReadonlyArray<string>) =>
      sql`(${sql.csv([
        ...columns.map((column) => INTEGER_COLUMNS.has(column) ? sql`${row[column] ?? null}::integer` : sql`${row[column] ?? null}`),
        ...extra.map((value) => sql`${value}`)
      ])})`

    const statement = (batch: ReadonlyArray<Arrival>, now: string) => {
      const states = batch.flatMap(({ row, tracked }) =>
        tracked === undefined ? [] : [tuple(toRow(tracked.verificationId, tracked.next, now), VERIFICATION_COLUMNS, [row.id])]
      )
      // Each delivery with the case it is for: the event current, stale, or either (the same rows for both).
      const planned = batch.flatMap(({ tracked }) => {
        if (tracked === undefined) return []
        const cases = tracked.deliveries === tracked.deliveriesIfStale
          ? [["either", tracked.deliveries] as const]
          : [["current", tracked.deliveries] as const, ["stale", tracked.deliveriesIfStale] as const]
        return cases.flatMap(([when, rows]) =>
          rows.map((d) => tuple(d, DELIVERY_COLUMNS, [when, storable(tracked.verificationId)]))
        )
      })
      const verifications = states.length === 0 ? sql`` : sql`,
        state (${sql.literal(VERIFICATION_LIST)}, of_event) AS (VALUES ${sql.csv(states)}),
        applied AS (
          INSERT INTO verifications (${sql.literal(VERIFICATION_LIST)})
          SELECT ${sql.literal(VERIFICATION_LIST)} FROM state WHERE of_event IN (SELECT id FROM inserted)
          ${sql.literal(FORWARD_ONLY)}
          RETURNING verification_id)`
      const deliveries = planned.length === 0 ? sql`` : sql`,
        planned (${sql.literal(DELIVERY_LIST)}, for_case, verification_id) AS (VALUES ${sql.csv(planned)}),
        scheduled AS (
          INSERT INTO deliveries (${sql.literal(DELIVERY_LIST)})
          SELECT ${sql.literal(DELIVERY_LIST)} FROM planned
          WHERE event_id IN (SELECT id FROM inserted)
            AND (for_case = 'either' OR (for_case = 'current') = (verification_id IN (SELECT verification_id FROM applied)))
          ON CONFLICT (event_id, instance) DO NOTHING)`
      return sql<{ kind: string; id: string }>`
        WITH inserted AS (
          INSERT INTO events ${sql.insert(batch.map(({ row }) => row))}
          ON CONFLICT (dedupe_key) DO NOTHING
          RETURNING id)${verifications}${deliveries}
        SELECT 'event' AS kind, id FROM inserted
        ${states.length === 0 ? sql`` : sql`UNION ALL SELECT 'verification' AS kind, verification_id AS id FROM applied`}`
    }

    const run = async <A extends object>(client: Pg.PoolClient, query: Statement.Statement<A>): Promise<ReadonlyArray<A>> => {
      const [text, params] = query.compile()
      return (await client.query<A>(text, params as Array<unknown>)).rows
    }

    /** The batch's transaction; rejects with the driver's error, after a rollback, if it did not commit. */
    const commit = async (batch: ReadonlyArray<Arrival>, now: string): Promise<Committed> => {
      const client = await pool!.connect()
      // A connection that drops while checked out emits "error" (its query fails too); unheard, it ends the process.
      const ignore = () => {}
      client.on("error", ignore)
      let broken: unknown
      try {
        await client.query("BEGIN")
        const committed = await inTransaction(client, batch, now)
        await client.query("COMMIT")
        return committed
      } catch (error) {
        try {
          await client.query("ROLLBACK")
        } catch (rollback) {
          broken = rollback
        }
        throw error
      } finally {
        client.off("error", ignore)
        // A connection whose rollback failed is closed rather than handed to the next transaction.
        client.release(broken !== undefined)
      }
    }

    const inTransaction = async (client: Pg.PoolClient, batch: ReadonlyArray<Arrival>, now: string): Promise<Committed> => {
      const written = await run(client, statement(batch, now))
      const inserted = new Set(written.flatMap((r) => r.kind === "event" ? [r.id] : []))
      const applied = new Set(written.flatMap((r) => r.kind === "verification" ? [r.id] : []))
      const duplicates = batch.filter(({ row }) => !inserted.has(row.id)).map(({ row }) => row.dedupe_key)
      const firstStored = duplicates.length === 0
        ? new Map<string, string>()
        : idsByDedupeKey(await run(client, events.statements.selectIdsByKey(duplicates)))
      const stored = batch.map(({ row }): Stored =>
        inserted.has(row.id) ? { eventId: row.id, duplicate: false } : { eventId: firstStored.get(row.dedupe_key)!, duplicate: true }
      )
      const fresh = freshOf(batch, stored.map((s) => s.duplicate))
      const current = new Set(fresh.map((f) => f.tracked.verificationId).filter((id) => applied.has(storable(id))))
      const outcome = planDeliveries(fresh.map(({ row, tracked }) => ({ row, tracked, stale: false })), current)
      if (outcome.staleIds.length > 0) await run(client, events.statements.updateStale(outcome.staleIds))
      return { stored, staleIds: outcome.staleIds, woken: [...outcome.woken], unrouted: outcome.unrouted }
    }

    return { accepts, commit } as const
  }),
  dependencies: [Events.Default]
}) {}
