import Database from "better-sqlite3"
import { type Arrival, type Decided, freshOf, planDeliveries } from "../ingest/Apply.js"
import { attemptRow } from "./Attempt.js"
import { CLAIMED_COLUMNS } from "./ClaimSql.js"
import { DELIVERY_COLUMNS, EVENT_COLUMNS, VERIFICATION_COLUMNS } from "./Columns.js"
import type { Finish } from "./Deliveries.js"
import type { Stored } from "./Events.js"
import { FORWARD_ONLY, toRow } from "./VerificationRow.js"

/** One claim of the dispatcher: up to `limit` due deliveries of `instance`, held by `holder` until `leaseUntil`. */
export interface ClaimSpec {
  readonly instance: string
  readonly holder: string
  readonly now: string
  readonly leaseUntil: string
  readonly limit: number
}

/** What a dispatcher write tells it: the deliveries its recorded attempts moved on, and each claim's rows. */
export interface Dispatched {
  readonly kept: ReadonlyArray<string>
  readonly claimed: ReadonlyArray<ReadonlyArray<Record<string, unknown>>>
}

/** What a committed batch tells the service: each webhook's answer, and the deliveries to announce. */
export interface Committed {
  readonly stored: ReadonlyArray<Stored>
  /** New events found stale: their deliveries were written unleased (see Direct). */
  readonly staleIds: ReadonlyArray<string>
  readonly woken: ReadonlyArray<readonly [instance: string, count: number]>
  readonly unrouted: number
}

const columns = (names: ReadonlyArray<string>) => ({
  list: names.join(", "),
  params: names.map((name) => `@${name}`).join(", ")
})

const EVENT = columns(EVENT_COLUMNS)
const VERIFICATION = columns(VERIFICATION_COLUMNS)
const DELIVERY = columns(DELIVERY_COLUMNS)

/**
 * The ingest transaction on SQLite with prepared statements on a connection of its own, run by the writer
 * thread (see SqliteWriter). The steps are those of the generic store's transaction in src/ingest/Ingest.ts,
 * except that the verification upsert itself decides staleness.
 */
export const openSqliteWrite = (filename: string) => {
  const db = new Database(filename)
  db.pragma("journal_mode = WAL")
  // No fsync at commit: the writer thread fsyncs the WAL itself before answering (see SqliteWriterThread),
  // which gives the durability of `synchronous = FULL` while the next batch is already being written.
  // A checkpoint still syncs the WAL before copying it into the database, and the database after.
  db.pragma("synchronous = NORMAL")
  db.pragma("busy_timeout = 5000")
  db.prepare("SELECT COUNT(*) FROM kyc_relay_migrations").get()

  const insertEvent = db.prepare(
    `INSERT INTO events (${EVENT.list}) VALUES (${EVENT.params}) ON CONFLICT (dedupe_key) DO NOTHING`
  )
  const storedId = db.prepare<[string], { id: string }>("SELECT id FROM events WHERE dedupe_key = ?")
  const saveState = db.prepare<[ReturnType<typeof toRow>], { verification_id: string }>(
    `INSERT INTO verifications (${VERIFICATION.list}) VALUES (${VERIFICATION.params}) ${FORWARD_ONLY} RETURNING verification_id`
  )
  const markStale = db.prepare<[string]>("UPDATE events SET stale = 1 WHERE id = ?")
  const insertDelivery = db.prepare(
    `INSERT INTO deliveries (${DELIVERY.list}) VALUES (${DELIVERY.params}) ON CONFLICT (event_id, instance) DO NOTHING`
  )

  const write = db.transaction((batch: ReadonlyArray<Arrival>, now: string): Committed => {
    const duplicate = batch.map(({ row }) => insertEvent.run(row).changes === 0)
    const stored = batch.map(({ row }, i): Stored =>
      duplicate[i] ? { eventId: storedId.get(row.dedupe_key)!.id, duplicate: true } : { eventId: row.id, duplicate: false }
    )
    const fresh = freshOf(batch, duplicate)
    if (fresh.length === 0) return { stored, staleIds: [], woken: [], unrouted: 0 }

    // The forward-only upsert writes exactly when the event is not stale (its condition is isStale's negation),
    // so one statement per event, in order, both decides what applyLifecycle would and writes the state.
    const written = new Set<string>()
    const decided = fresh.map(({ row, tracked }): Decided => {
      const wrote = saveState.get(toRow(tracked.verificationId, tracked.next, now)) !== undefined
      if (wrote) written.add(tracked.verificationId)
      return { row, tracked, stale: !wrote }
    })
    const planned = planDeliveries(decided, written)
    for (const id of planned.staleIds) markStale.run(id)
    for (const delivery of planned.deliveries) insertDelivery.run(delivery)
    return { stored, staleIds: planned.staleIds, woken: [...planned.woken], unrouted: planned.unrouted }
  })

  // The dispatcher's writes, as Deliveries.record and Deliveries.claim make them through the SQL client.
  const recordOutcome = db.prepare<[string, string | null, string | null, string, string, string]>(
    `UPDATE deliveries SET state = ?, next_attempt_at = COALESCE(?, next_attempt_at), last_error = ?, lease_owner = NULL,
      lease_until = NULL, updated_at = ? WHERE id = ? AND lease_owner = ?`
  )
  const insertAttempt = db.prepare(
    `INSERT INTO attempts (id, delivery_id, attempt, worker, started_at, finished_at, outcome, error, remote_id)
      VALUES (@id, @delivery_id, @attempt, @worker, @started_at, @finished_at, @outcome, @error, @remote_id)`
  )
  const claimWhere = (due: string) =>
    db.prepare<[string, string, string, string, string, number], Record<string, unknown>>(
      `UPDATE deliveries SET state = 'running', lease_owner = ?, lease_until = ?, attempts = attempts + 1, updated_at = ?
        WHERE id IN (SELECT id FROM deliveries WHERE instance = ? AND ${due} ORDER BY next_attempt_at LIMIT ?)
        RETURNING ${CLAIMED_COLUMNS}`
    )
  const claimOverdue = claimWhere("state = 'running' AND lease_until < ?")
  const claimDue = claimWhere("state = 'pending' AND next_attempt_at <= ?")

  const claimOne = ({ holder, instance, leaseUntil, limit, now }: ClaimSpec) => {
    // Bound in the order the statement reads them: SET, then the subquery's instance, due time and limit.
    const overdue = limit === 0 ? [] : claimOverdue.all(holder, leaseUntil, now, instance, now, limit)
    const due = overdue.length < limit ? claimDue.all(holder, leaseUntil, now, instance, now, limit - overdue.length) : []
    return [...overdue, ...due]
  }

  const dispatch = db.transaction((finishes: ReadonlyArray<Finish>, claims: ReadonlyArray<ClaimSpec>): Dispatched => {
    const kept = finishes.flatMap((f) =>
      recordOutcome.run(f.state, f.nextAttemptAt, f.error, f.finishedAt, f.deliveryId, f.lease).changes === 1 ? [f.deliveryId] : []
    )
    for (const f of finishes) insertAttempt.run(attemptRow(f))
    return { kept, claimed: claims.map(claimOne) }
  })

  return {
    commit: (batch: ReadonlyArray<Arrival>, now: string) => write.immediate(batch, now),
    dispatch: (finishes: ReadonlyArray<Finish>, claims: ReadonlyArray<ClaimSpec>) => dispatch.immediate(finishes, claims),
    close: () => db.close()
  }
}
