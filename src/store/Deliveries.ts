import { SqlClient } from "@effect/sql"
import { Effect, Schema } from "effect"

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
  readonly owner: string
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

const decodeDeliveries = Schema.decodeUnknown(Schema.Array(DeliveryRow))
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
     * whose lease ran out (their worker died). The lease marks them as this worker's until `leaseUntil`.
     */
    const claim = Effect.fn("Deliveries.claim")(function*(
      instance: string,
      owner: string,
      now: string,
      leaseUntil: string,
      limit: number
    ) {
      const rows = yield* sql`UPDATE deliveries
        SET state = 'running', lease_owner = ${owner}, lease_until = ${leaseUntil}, attempts = attempts + 1, updated_at = ${now}
        WHERE id IN (
          SELECT id FROM deliveries
          WHERE instance = ${instance}
            AND ((state = 'pending' AND next_attempt_at <= ${now}) OR (state = 'running' AND lease_until < ${now}))
          ORDER BY next_attempt_at
          LIMIT ${limit}
          ${skipLocked})
        RETURNING *`
      return yield* decodeDeliveries(rows)
    }, Effect.orDie)

    /** Records an attempt and moves the delivery on, if this worker still holds its lease. */
    const finish = Effect.fn("Deliveries.finish")(function*(f: Finish) {
      const updated = yield* sql`UPDATE deliveries
        SET state = ${f.state}, next_attempt_at = COALESCE(${f.nextAttemptAt}, next_attempt_at), last_error = ${f.error},
          lease_owner = NULL, lease_until = NULL, updated_at = ${f.finishedAt}
        WHERE id = ${f.deliveryId} AND lease_owner = ${f.owner}
        RETURNING id`
      yield* sql`INSERT INTO attempts ${
        sql.insert({
          id: f.attemptId,
          delivery_id: f.deliveryId,
          attempt: f.attempt,
          worker: f.owner,
          started_at: f.startedAt,
          finished_at: f.finishedAt,
          outcome: f.outcome,
          error: f.error,
          remote_id: f.remoteId
        })
      }`
      return updated.length === 1
    }, sql.withTransaction, Effect.orDie)

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

    return { enqueue, reschedule, claim, finish, list, attempts, countByState, requeueDead, deadInstances, queueStats } as const
  })
}) {}
