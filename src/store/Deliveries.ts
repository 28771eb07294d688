import { SqlClient, type Statement } from "@effect/sql"
import { Array as Arr, Effect, Order, Schema } from "effect"
import { attemptRow } from "./Attempt.js"
import { CLAIMED_COLUMNS } from "./ClaimSql.js"

export const DeliveryState = Schema.Literal("pending", "running", "done", "dead")
export type DeliveryState = typeof DeliveryState.Type

// PostgreSQL drivers may hand integers back as strings.
const Count = Schema.Union(Schema.Number, Schema.NumberFromString)

export const DeliveryRow = Schema.Struct({
  id: Schema.String,
  event_id: Schema.String,
  instance: Schema.String,
  route: Count,
  params: Schema.String,
  retry: Schema.NullOr(Schema.String),
  state: DeliveryState,
  attempts: Count,
  next_attempt_at: Schema.String,
  lease_owner: Schema.NullOr(Schema.String),
  lease_until: Schema.NullOr(Schema.String),
  last_error: Schema.NullOr(Schema.String),
  created_at: Schema.String,
  updated_at: Schema.String
})
export type DeliveryRow = typeof DeliveryRow.Type

export const AttemptRow = Schema.Struct({
  id: Schema.String,
  delivery_id: Schema.String,
  attempt: Count,
  worker: Schema.String,
  started_at: Schema.String,
  finished_at: Schema.String,
  outcome: Schema.String,
  error: Schema.NullOr(Schema.String),
  remote_id: Schema.NullOr(Schema.String)
})
export type AttemptRow = typeof AttemptRow.Type

/** How one attempt ended, as the dispatcher records it. */
export interface Finish {
  readonly deliveryId: string
  /** The process that made the attempt. */
  readonly owner: string
  /** The claim it was made under (the delivery's `lease_owner` then): its result counts only if that still holds. */
  readonly lease: string
  readonly attempt: number
  readonly attemptId: string
  readonly startedAt: string
  readonly finishedAt: string
  readonly outcome: "done" | "Retryable" | "Permanent" | "RateLimited"
  readonly error: string | null
  readonly remoteId: string | null
  /** pending (with `nextAttemptAt`), done or dead */
  readonly state: "pending" | "done" | "dead"
  readonly nextAttemptAt: string | null
}

/** Deliveries waiting per instance, and the scheduled time of the oldest one that is due. */
export interface QueueStats {
  readonly instance: string
  readonly waiting: number
  readonly oldestDue: string | null
}

/**
 * A delivery as claimed, with what a worker needs of its event (`body` is null if the event is gone) and its
 * verification id for the logs.
 */
export const ClaimedRow = Schema.Struct({
  ...DeliveryRow.fields,
  body: Schema.NullOr(Schema.String),
  verification_id: Schema.NullOr(Schema.String),
  stale: Schema.transform(Schema.NullOr(Schema.Union(Schema.Number, Schema.String, Schema.Boolean)), Schema.Boolean, {
    strict: true,
    decode: (stale) => stale === true || Number(stale) === 1,
    encode: (stale) => stale ? 1 : 0
  })
})
export type ClaimedRow = typeof ClaimedRow.Type

const byDue = Order.mapInput(Order.string, (row: ClaimedRow) => row.next_attempt_at)

const decodeDeliveries = Schema.decodeUnknown(Schema.Array(DeliveryRow))
const decodeClaimed = Schema.decodeUnknown(Schema.Array(ClaimedRow))

/** A claim's rows as the store returned them, decoded and oldest first (RETURNING keeps no order). */
export const claimedRows = (rows: ReadonlyArray<unknown>) => Effect.map(decodeClaimed(rows), Arr.sort(byDue))
const decodeAttempts = Schema.decodeUnknown(Schema.Array(AttemptRow))

export class Deliveries extends Effect.Service<Deliveries>()("kyc-relay/Deliveries", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    // PostgreSQL lets concurrent claimers skip each other's rows; SQLite has one writer at a time anyway.
    const skipLocked = sql.onDialectOrElse({ pg: () => sql.literal("FOR UPDATE SKIP LOCKED"), orElse: () => sql.literal("") })

    /** Schedules deliveries; an (event, instance) pair already scheduled is left as it is. */
    const enqueue = (rows: ReadonlyArray<DeliveryRow>) =>
      rows.length === 0
        ? Effect.void
        : sql`INSERT INTO deliveries ${sql.insert(rows)} ON CONFLICT (event_id, instance) DO NOTHING`.pipe(Effect.asVoid)

    /** Schedules deliveries again from scratch (replay): attempts and the max_age clock restart, the lease and last error are cleared. */
    const reschedule = (rows: ReadonlyArray<DeliveryRow>) =>
      rows.length === 0 ? Effect.void : sql`INSERT INTO deliveries ${sql.insert(rows)}
        ON CONFLICT (event_id, instance) DO UPDATE SET
          route = excluded.route, params = excluded.params, retry = excluded.retry, state = 'pending',
          attempts = 0, next_attempt_at = excluded.next_attempt_at, lease_owner = NULL, lease_until = NULL,
          last_error = NULL, created_at = excluded.created_at, updated_at = excluded.updated_at`.pipe(Effect.asVoid)

    /**
     * Takes up to `limit` due deliveries of one instance: pending ones whose time has come, and running ones
     * whose lease ran out (their worker died). The lease marks them as `holder`'s (one claim) until `leaseUntil`. Each row
     * comes with its event's body, stale flag and verification id, so a worker needs no further read.
     */
    const claim = Effect.fn("Deliveries.claim")(function*(
      instance: string,
      holder: string,
      now: string,
      leaseUntil: string,
      limit: number
    ) {
      // Two statements rather than one with OR, so that each reads the due index in order: one OR would make
      // every claim read and sort all the instance's deliveries, done ones included.
      const take = (due: Statement.Fragment, n: number) =>
        sql`UPDATE deliveries
          SET state = 'running', lease_owner = ${holder}, lease_until = ${leaseUntil}, attempts = attempts + 1, updated_at = ${now}
          WHERE id IN (
            SELECT id FROM deliveries WHERE instance = ${instance} AND ${due}
            ORDER BY next_attempt_at
            LIMIT ${n}
            ${skipLocked})
          RETURNING ${sql.literal(CLAIMED_COLUMNS)}`
      const overdue = yield* take(sql`state = 'running' AND lease_until < ${now}`, limit)
      const due = overdue.length < limit ? yield* take(sql`state = 'pending' AND next_attempt_at <= ${now}`, limit - overdue.length) : []
      return yield* claimedRows([...overdue, ...due])
    }, Effect.orDie)

    // The attempts' outcomes as a table, and the update that moves each delivery on if its claim still holds.
    const outcome = (finishes: ReadonlyArray<Finish>) => sql`outcome (id, lease, state, next_attempt_at, last_error, finished_at) AS (
      VALUES ${sql.csv(finishes.map((f) => sql`(${f.deliveryId}, ${f.lease}, ${f.state}, ${f.nextAttemptAt}, ${f.error}, ${f.finishedAt})`))})`
    const moveOn = sql`UPDATE deliveries
      SET state = outcome.state, next_attempt_at = COALESCE(outcome.next_attempt_at, deliveries.next_attempt_at),
        last_error = outcome.last_error, lease_owner = NULL, lease_until = NULL, updated_at = outcome.finished_at
      FROM outcome
      WHERE deliveries.id = outcome.id AND deliveries.lease_owner = outcome.lease
      RETURNING deliveries.id`

    /**
     * Records attempts and moves each delivery on if the claim it was made under still holds; returns the ids
     * moved (the others were taken over after their lease ran out, or replayed meanwhile). Atomic whatever the
     * number of attempts: on PostgreSQL one statement (the attempts' insert rides along as a data-modifying
     * `WITH`), elsewhere two statements in a transaction.
     */
    const record = Effect.fn("Deliveries.record")(function*(finishes: ReadonlyArray<Finish>) {
      if (finishes.length === 0) return new Set<string>()
      const attempts = sql`INSERT INTO attempts ${sql.insert(finishes.map(attemptRow))}`
      const updated = yield* sql.onDialectOrElse({
        pg: () => sql<{ id: string }>`WITH ${outcome(finishes)}, attempted AS (${attempts}), moved AS (${moveOn}) SELECT id FROM moved`,
        orElse: () => Effect.zipLeft(sql<{ id: string }>`WITH ${outcome(finishes)} ${moveOn}`, attempts).pipe(sql.withTransaction)
      })
      return new Set(updated.map((row) => row.id))
    }, Effect.orDie)

    /** Hands claimed deliveries that were never started back to the queue, as if they had not been claimed. */
    const release = (rows: ReadonlyArray<{ readonly id: string; readonly lease_owner: string | null }>, now: string) =>
      rows.length === 0 ? Effect.void : sql`UPDATE deliveries
        SET state = 'pending', attempts = attempts - 1, lease_owner = NULL, lease_until = NULL, updated_at = ${now}
        WHERE ${sql.in("id", rows.map((row) => row.id))}
          AND ${sql.in("lease_owner", [...new Set(rows.flatMap((row) => row.lease_owner ?? []))])}`.pipe(Effect.asVoid, Effect.orDie)

    const list = Effect.fn("Deliveries.list")(function*(filter: {
      readonly state?: DeliveryState | undefined
      readonly eventId?: string | undefined
      readonly instance?: string | undefined
      readonly limit: number
    }) {
      const conditions = [
        ...(filter.state === undefined ? [] : [sql`state = ${filter.state}`]),
        ...(filter.eventId === undefined ? [] : [sql`event_id = ${filter.eventId}`]),
        ...(filter.instance === undefined ? [] : [sql`instance = ${filter.instance}`])
      ]
      const rows = yield* sql`SELECT * FROM deliveries WHERE ${sql.and(conditions)}
        ORDER BY created_at DESC, id DESC LIMIT ${filter.limit}`
      return yield* decodeDeliveries(rows)
    }, Effect.orDie)

    const attempts = Effect.fn("Deliveries.attempts")(function*(deliveryId: string) {
      const rows = yield* sql`SELECT * FROM attempts WHERE delivery_id = ${deliveryId} ORDER BY started_at, attempt`
      return yield* decodeAttempts(rows)
    }, Effect.orDie)

    /** Number of deliveries per state, for the operator and for tests that wait for a queue to drain. */
    const countByState = sql<{ state: string; n: number | string }>`SELECT state, COUNT(*) AS n FROM deliveries GROUP BY state`.pipe(
      Effect.map((rows) => Object.fromEntries(rows.map((row) => [row.state, Number(row.n)])) as Partial<Record<DeliveryState, number>>),
      Effect.orDie
    )

    /** Puts dead letters back in the queue with fresh attempts; returns their ids. */
    const requeueDead = (instances: ReadonlyArray<string>, now: string) =>
      instances.length === 0 ? Effect.succeed([]) : sql<{ id: string }>`UPDATE deliveries
        SET state = 'pending', attempts = 0, next_attempt_at = ${now}, last_error = NULL, created_at = ${now}, updated_at = ${now}
        WHERE state = 'dead' AND ${sql.in("instance", instances)}
        RETURNING id`.pipe(Effect.map((rows) => rows.map((row) => row.id)), Effect.orDie)

    const deadInstances = sql<{ instance: string }>`SELECT DISTINCT instance FROM deliveries WHERE state = 'dead'`.pipe(
      Effect.map((rows) => rows.map((row) => row.instance)),
      Effect.orDie
    )

    const queueStats = Effect.gen(function*() {
      const now = new Date().toISOString()
      const rows = yield* sql<{ instance: string; waiting: number | string; oldest_due: string | null }>`
        SELECT instance, COUNT(*) AS waiting,
          MIN(CASE WHEN state = 'pending' AND next_attempt_at <= ${now} THEN next_attempt_at END) AS oldest_due
        FROM deliveries WHERE state IN ('pending', 'running') GROUP BY instance`
      return rows.map((row): QueueStats => ({ instance: row.instance, waiting: Number(row.waiting), oldestDue: row.oldest_due }))
    }).pipe(Effect.orDie)

    return { enqueue, reschedule, claim, record, release, list, attempts, countByState, requeueDead, deadInstances, queueStats } as const
  })
}) {}
