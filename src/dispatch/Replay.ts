import { SqlClient } from "@effect/sql"
import { Clock, Data, DateTime, Effect, Either } from "effect"
import { decodeStoredBody } from "../domain/Decode.js"
import type { CashfreeEvent } from "../domain/Event.js"
import { isStale, stateOf } from "../domain/Lifecycle.js"
import { deliveryRow } from "../ingest/Plan.js"
import { Deliveries } from "../store/Deliveries.js"
import { Events } from "../store/Events.js"
import { Verifications } from "../store/Verifications.js"
import { Rules, targetsFor } from "./Rules.js"

export interface Replayed {
  readonly events: number
  readonly deliveries: number
  /** Quarantined events that still do not decode. */
  readonly stillQuarantined: number
  /** Dead letters left alone because their instance is no longer configured. */
  readonly orphaned: ReadonlyArray<string>
  /** Dead letters left alone because their instance is disabled (its environment variables are not set). */
  readonly disabled: ReadonlyArray<string>
}

/** `replay dead --instance` named an instance the configuration does not have. */
export class UnknownInstance extends Data.TaggedError("UnknownInstance")<{
  readonly instance: string
  readonly configured: ReadonlyArray<string>
}> {
  override get message() {
    return `no plugin instance named "${this.instance}"; instances: ${this.configured.join(", ") || "none"}`
  }
}

/** Schedules deliveries again, under the rules in force now. Running servers pick them up on their next poll. */
export class Replay extends Effect.Service<Replay>()("kyc-relay/Replay", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const events = yield* Events
    const deliveries = yield* Deliveries
    const rules = yield* Rules
    const verifications = yield* Verifications

    const now = Effect.map(Clock.currentTimeMillis, (millis) => DateTime.formatIso(DateTime.unsafeMake(millis)))

    /**
     * A quarantined event that now decodes becomes accepted and joins its verification's lifecycle as if it had
     * just arrived: it moves the state on, or is stale if the verification has moved past it. Returns `stale`.
     */
    const accept = (eventId: string, event: CashfreeEvent, now: string) =>
      Effect.gen(function*() {
        const eventTime = DateTime.formatIso(event.event_time)
        yield* events.accept(eventId, eventTime)
        const verificationId = event.data.verification_id
        const next = stateOf(eventId, event, eventTime)
        const current = (yield* verifications.getMany([verificationId])).get(verificationId) ?? null
        // save() writes only forward, so a state another process wrote meanwhile wins, as at ingest.
        const stale = isStale(current, next) || !(yield* verifications.save(new Map([[verificationId, next]]), now)).has(verificationId)
        if (stale) yield* events.markStale([eventId])
        return stale
      })

    // A SQLite transaction that reads before it writes fails at its first write if another connection (the
    // writer thread, a server while this command runs) committed meanwhile: take the write lock first, as
    // BEGIN IMMEDIATE would, so that the busy timeout waits for it instead.
    const writeLockFirst = sql.onDialectOrElse({
      sqlite: () => Effect.asVoid(sql`UPDATE events SET stale = stale WHERE 0`),
      orElse: () => Effect.void
    })

    /** Routes the chosen events again; a quarantined one is routed only if it now decodes. */
    const reroute = (filter: Parameters<typeof events.select>[0]) =>
      Effect.gen(function*() {
        yield* writeLockFirst
        const snapshot = yield* rules.current
        const at = yield* now
        const chosen = yield* events.select(filter)
        let routed = 0
        let scheduled = 0
        let stillQuarantined = 0
        for (const { row, stale: storedStale } of chosen) {
          const decoded = decodeStoredBody(row.body)
          if (Either.isLeft(decoded)) {
            stillQuarantined++
            continue
          }
          const stale = row.status === "quarantined" ? yield* accept(row.id, decoded.right, at) : storedStale
          const rows = targetsFor(snapshot, decoded.right, stale).map((target) => deliveryRow(row.id, target, at))
          yield* deliveries.reschedule(rows).pipe(Effect.orDie)
          routed++
          scheduled += rows.length
        }
        return { events: routed, deliveries: scheduled, stillQuarantined, orphaned: [], disabled: [] } satisfies Replayed
      }).pipe(sql.withTransaction, Effect.orDie)

    const event = (id: string) => reroute({ ids: [id] })
    const quarantined = reroute({ status: "quarantined" })
    const range = (since: string, until: string | undefined) => reroute({ since, until })

    /** Dead letters of one instance (or of all configured instances) go back in the queue with fresh attempts. */
    const dead = (instance: string | undefined) =>
      Effect.gen(function*() {
        const { disabled, instances } = yield* rules.current
        if (instance !== undefined && !instances.has(instance) && !disabled.has(instance)) {
          return yield* new UnknownInstance({ instance, configured: [...instances.keys(), ...disabled.keys()] })
        }
        const withDead = yield* deliveries.deadInstances
        const wanted = withDead.filter((name) => instance === undefined || name === instance)
        const requeued = yield* deliveries.requeueDead(wanted.filter((name) => instances.has(name)), yield* now)
        return {
          events: 0,
          deliveries: requeued.length,
          stillQuarantined: 0,
          orphaned: wanted.filter((name) => !instances.has(name) && !disabled.has(name)),
          disabled: wanted.filter((name) => disabled.has(name))
        } satisfies Replayed
      })

    return { event, quarantined, range, dead } as const
  }),
  dependencies: [Events.Default, Deliveries.Default, Rules.Default, Verifications.Default]
}) {}
