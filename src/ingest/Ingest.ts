import { SqlClient } from "@effect/sql"
import { Clock, DateTime, Deferred, Effect, Exit, Queue, Schema } from "effect"
import { RetryOverrides } from "../config/RelayConfig.js"
import { Rules, targetsFor } from "../dispatch/Rules.js"
import type { Target } from "../dispatch/Router.js"
import { Wakeup } from "../dispatch/Wakeup.js"
import type { CashfreeEvent } from "../domain/Event.js"
import { Metrics } from "../observability/Metrics.js"
import { isStale, stateOf, type VerificationState } from "../domain/Lifecycle.js"
import { Deliveries, type DeliveryRow } from "../store/Deliveries.js"
import { type EventRow, Events, type Stored } from "../store/Events.js"
import { Verifications } from "../store/Verifications.js"

/** Largest number of webhooks committed together in one transaction. */
const MAX_BATCH = 256

const nextMacrotask = Effect.async<void>((resume) => {
  setImmediate(() => resume(Effect.void))
})

interface Pending {
  readonly row: EventRow
  /** Present when the webhook decoded; quarantined events are stored but not routed. */
  readonly event: CashfreeEvent | undefined
  readonly done: Deferred.Deferred<Stored, unknown>
}

const encodeRetry = Schema.encodeSync(RetryOverrides)

export const deliveryId = (eventId: string, instance: string) => `dlv_${eventId.slice(4)}_${instance}`

export const deliveryRow = (eventId: string, target: Target, now: string): DeliveryRow => ({
  id: deliveryId(eventId, target.instance),
  event_id: eventId,
  instance: target.instance,
  route: target.route,
  params: JSON.stringify(target.params),
  retry: target.retry === undefined ? null : JSON.stringify(encodeRetry(target.retry)),
  state: "pending",
  attempts: 0,
  next_attempt_at: now,
  lease_owner: null,
  lease_until: null,
  last_error: null,
  created_at: now,
  updated_at: now
})

/**
 * Group commit: requests that arrive while a transaction is being written wait for the next one, so the
 * store pays one commit (one fsync on SQLite) per batch rather than one per webhook. In that same
 * transaction each new event updates its verification's lifecycle and gets one delivery per routed plugin
 * instance, so a 200 means the event and all its deliveries are durable.
 */
export class Ingest extends Effect.Service<Ingest>()("kyc-relay/Ingest", {
  scoped: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const events = yield* Events
    const deliveries = yield* Deliveries
    const verifications = yield* Verifications
    const rules = yield* Rules
    const wakeup = yield* Wakeup
    const metrics = yield* Metrics
    const queue = yield* Queue.bounded<Pending>(16 * MAX_BATCH)

    const commit = (batch: ReadonlyArray<Pending>) =>
      Effect.gen(function*() {
        const now = DateTime.formatIso(DateTime.unsafeMake(yield* Clock.currentTimeMillis))
        const stored = yield* events.insertBatch(batch.map((pending) => pending.row))
        const fresh = batch.flatMap((pending, i) =>
          !stored[i]!.duplicate && pending.event !== undefined ? [{ row: pending.row, event: pending.event }] : []
        )
        const woken = new Map<string, number>()
        if (fresh.length > 0) {
          const snapshot = yield* rules.current
          const states = yield* verifications.getMany([...new Set(fresh.map((f) => f.event.data.verification_id))])
          const changed = new Map<string, VerificationState>()
          const decided = fresh.map(({ event, row }) => {
            const id = event.data.verification_id
            const next = stateOf(row.id, event, row.event_time!)
            const stale = isStale(states.get(id) ?? null, next)
            if (!stale) {
              states.set(id, next)
              changed.set(id, next)
            }
            return { event, row, id, stale }
          })
          // A state another process wrote since our read wins; then our events for it are stale too.
          const written = yield* verifications.save(changed, now)
          const scheduled: Array<DeliveryRow> = []
          const staleIds: Array<string> = []
          let unrouted = 0
          for (const { event, id, row, stale: staleHere } of decided) {
            const stale = staleHere || !written.has(id)
            if (stale) staleIds.push(row.id)
            const targets = targetsFor(snapshot, event, stale)
            if (targets.length === 0) unrouted++
            for (const target of targets) {
              scheduled.push(deliveryRow(row.id, target, now))
              woken.set(target.instance, (woken.get(target.instance) ?? 0) + 1)
            }
          }
          yield* events.markStale(staleIds)
          yield* deliveries.enqueue(scheduled)
          return { stored, woken, unrouted }
        }
        return { stored, woken, unrouted: 0 }
      }).pipe(sql.withTransaction)

    const writeBatch = Effect.gen(function*() {
      const first = yield* Queue.take(queue)
      // Let the event loop read the requests already waiting on their sockets before committing; otherwise
      // every transaction would hold one event and pay a whole fsync.
      yield* nextMacrotask
      const batch = [first, ...(yield* Queue.takeUpTo(queue, MAX_BATCH - 1))]
      yield* commitAndAnswer(batch)
    })

    /** One event the store refuses must not fail the others: a failed batch is retried one event at a time. */
    const commitAndAnswer = (batch: ReadonlyArray<Pending>): Effect.Effect<void> =>
      Effect.gen(function*() {
        const exit = yield* Effect.exit(commit(batch))
        if (Exit.isFailure(exit) && batch.length > 1) {
          return yield* Effect.forEach(batch, (pending) => commitAndAnswer([pending]), { discard: true })
        }
        let i = 0
        for (const pending of batch) {
          const index = i++
          yield* Deferred.done(pending.done, Exit.map(exit, ({ stored }) => stored[index]!))
        }
        if (Exit.isSuccess(exit)) {
          metrics.unrouted(exit.value.unrouted)
          yield* wakeup.notify(exit.value.woken)
        }
        else yield* Effect.logError("Ingest.commit failed", exit.cause)
      })

    yield* Effect.forkScoped(Effect.forever(writeBatch))

    /** Resolves once the event is durably stored (or found to be a duplicate); fails if the store failed. */
    const store = (row: EventRow, event: CashfreeEvent | undefined) =>
      Effect.gen(function*() {
        const done = yield* Deferred.make<Stored, unknown>()
        yield* Queue.offer(queue, { row, event, done })
        return yield* Deferred.await(done)
      })

    return { store } as const
  }),
  dependencies: [
    Events.Default,
    Deliveries.Default,
    Verifications.Default,
    Rules.Default,
    Wakeup.Default,
    Metrics.Default
  ]
}) {}
