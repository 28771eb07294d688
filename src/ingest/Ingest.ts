import { SqlClient } from "@effect/sql"
import { Cause, DateTime, Effect, Runtime } from "effect"
import { Rules } from "../dispatch/Rules.js"
import { Lanes } from "../dispatch/Lanes.js"
import { Wakeup } from "../dispatch/Wakeup.js"
import type { CashfreeEvent } from "../domain/Event.js"
import { Metrics } from "../observability/Metrics.js"
import { Deliveries } from "../store/Deliveries.js"
import { type EventRow, Events, type Stored } from "../store/Events.js"
import { PgIngest } from "../store/PgIngest.js"
import type { Committed } from "../store/SqliteWrite.js"
import { SqliteWriterService } from "../store/SqliteWriterService.js"
import { storable } from "../store/Storable.js"
import { Verifications } from "../store/Verifications.js"
import { type Arrival, applyLifecycle, freshOf, planDeliveries } from "./Apply.js"
import { leaseToLanes } from "./Direct.js"
import { groupCommit } from "./GroupCommit.js"
import { arrival } from "./Plan.js"

/** Largest number of webhooks committed together in one transaction. */
const MAX_BATCH = 256

interface Received {
  readonly row: EventRow
  /** Present when the webhook decoded; quarantined events are stored but not routed. */
  readonly event: CashfreeEvent | undefined
}

/**
 * Stores webhooks. Requests that arrive together are written in one transaction (see GroupCommit); in that
 * same transaction each new event updates its verification's lifecycle and gets one delivery per routed plugin
 * instance, so a 200 means the event and all its deliveries are durable. On a SQLite file the transaction
 * runs on a writer thread (SqliteWriter); on PostgreSQL on a pooled connection (PgIngest), or through the SQL
 * client for the rare batches that one does not take. Deliveries whose plugin instance
 * has room in this process are written leased to it and handed over after the commit (see Direct).
 */
export class Ingest extends Effect.Service<Ingest>()("kyc-relay/Ingest", {
  scoped: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const events = yield* Events
    const deliveries = yield* Deliveries
    const verifications = yield* Verifications
    const rules = yield* Rules
    const wakeup = yield* Wakeup
    const lanes = yield* Lanes
    const metrics = yield* Metrics
    const pgIngest = yield* PgIngest
    // The service's clock rather than Date.now(), so that tests can move time.
    const clock = yield* Effect.clock
    const runtime = yield* Effect.runtime<never>()
    const runFork = Runtime.runFork(runtime)

    /** The generic transaction: the same steps as SqliteWrite's. */
    const generic = (batch: ReadonlyArray<Arrival>, now: string) =>
      Effect.gen(function*() {
        const stored = yield* events.insertBatch(batch.map((arrival) => arrival.row))
        const fresh = freshOf(batch, stored.map((s) => s.duplicate))
        if (fresh.length === 0) return { stored, staleIds: [], woken: [], unrouted: 0 } satisfies Committed
        const ids = [...new Set(fresh.map((f) => f.tracked.verificationId))]
        // With one event per verification (as stored), the forward-only upsert alone decides which events are
        // stale (its condition is isStale's negation, as in SqliteWrite): no read first, one round trip less.
        const states = new Set(ids.map(storable)).size === fresh.length ? new Map() : yield* verifications.getMany(ids)
        const { changed, decided } = applyLifecycle(fresh, states)
        const written = yield* verifications.save(changed, now)
        const planned = planDeliveries(decided, written)
        yield* events.markStale(planned.staleIds)
        yield* deliveries.enqueue(planned.deliveries)
        return { stored, staleIds: planned.staleIds, woken: [...planned.woken], unrouted: planned.unrouted } satisfies Committed
      }).pipe(sql.withTransaction)
    const { writer } = yield* SqliteWriterService
    const commit: (batch: ReadonlyArray<Arrival>, now: string) => Promise<Committed> = writer !== undefined
      ? writer.commit
      : (batch, now) => pgIngest.accepts(batch) ? pgIngest.commit(batch, now) : Runtime.runPromise(runtime)(generic(batch, now))

    const batches = groupCommit<Received, Stored>({
      maxBatch: MAX_BATCH,
      // The SQLite writer thread takes the next batch while the previous one is reaching the disk.
      inFlight: writer === undefined ? 1 : 2,
      commit: async (batch) => {
        const snapshot = rules.unsafeCurrent()
        const millis = clock.unsafeCurrentTimeMillis()
        const now = DateTime.formatIso(DateTime.unsafeMake(millis))
        const arrivals = batch.map(({ event, row }) => arrival(snapshot, row, event, now))
        const direct = leaseToLanes(lanes, arrivals, batch.map(({ event }) => event), millis)
        let committed: Committed
        try {
          committed = await commit(direct.batch, now)
        } catch (error) {
          direct.cancel()
          throw error
        }
        direct.handOver(committed)
        metrics.unrouted(committed.unrouted)
        if (committed.woken.length > 0) wakeup.unsafeNotify(committed.woken)
        return committed.stored
      },
      onError: (error) => runFork(Effect.logError("Ingest.commit failed", Cause.fail(error)))
    })
    // Added after the SQLite writer's release, so it runs first: everything submitted is answered before the close.
    yield* Effect.addFinalizer(() => Effect.promise(batches.close))

    /** Resolves once the event is durably stored (or found to be a duplicate); rejects if the store failed. */
    const store = (row: EventRow, event: CashfreeEvent | undefined): Promise<Stored> => batches.submit({ row, event })

    return { store } as const
  }),
  dependencies: [
    Events.Default,
    Deliveries.Default,
    Verifications.Default,
    Rules.Default,
    Wakeup.Default,
    Lanes.Default,
    Metrics.Default,
    PgIngest.Default,
    SqliteWriterService.Default
  ]
}) {}
