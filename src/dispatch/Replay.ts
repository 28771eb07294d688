import { SqlClient } from "@effect/sql"
import { Clock, DateTime, Effect, Either } from "effect"
import { decodeEventJson } from "../domain/Event.js"
import { deliveryRow } from "../ingest/Plan.js"
import { Deliveries } from "../store/Deliveries.js"
import { Events } from "../store/Events.js"
import { Rules, targetsFor } from "./Rules.js"


export interface Replayed {
  readonly events: number
  readonly deliveries: number
  /** Quarantined events that still do not decode. */
  readonly stillQuarantined: number
  /** Dead letters left alone because their instance is no longer configured. */
  readonly orphaned: ReadonlyArray<string>
}

/** Schedules deliveries again, under the rules in force now. Running servers pick them up on their next poll. */
export class Replay extends Effect.Service<Replay>()("kyc-relay/Replay", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const events = yield* Events
    const deliveries = yield* Deliveries
    const rules = yield* Rules

    const now = Effect.map(Clock.currentTimeMillis, (millis) => DateTime.formatIso(DateTime.unsafeMake(millis)))

    /** Routes the chosen events again; a quarantined one is routed only if it now decodes. */
    const reroute = (filter: Parameters<typeof events.select>[0]) =>
      Effect.gen(function*() {
        const snapshot = yield* rules.current
        const at = yield* now
        const chosen = yield* events.select(filter)
        let routed = 0
        let scheduled = 0
        let stillQuarantined = 0
        for (const { row, stale } of chosen) {
          const decoded = decodeEventJson(row.body)
          if (Either.isLeft(decoded)) {
            stillQuarantined++
            continue
          }
          if (row.status === "quarantined") yield* events.accept(row.id, DateTime.formatIso(decoded.right.event_time))
          const rows = targetsFor(snapshot, decoded.right, stale).map((target) => deliveryRow(row.id, target, at))
          yield* deliveries.reschedule(rows).pipe(Effect.orDie)
          routed++
          scheduled += rows.length
        }
        return { events: routed, deliveries: scheduled, stillQuarantined, orphaned: [] } satisfies Replayed
      }).pipe(sql.withTransaction, Effect.orDie)

    const event = (id: string) => reroute({ ids: [id] })
    const quarantined = reroute({ status: "quarantined" })
    const range = (since: string, until: string | undefined) => reroute({ since, until })

    /** Dead letters of one instance (or of all configured instances) go back in the queue with fresh attempts. */
    const dead = (instance: string | undefined) =>
      Effect.gen(function*() {
        const { instances } = yield* rules.current
        const withDead = yield* deliveries.deadInstances
        const wanted = withDead.filter((name) => instance === undefined || name === instance)
        const requeued = yield* deliveries.requeueDead(wanted.filter((name) => instances.has(name)), yield* now)
        return {
          events: 0,
          deliveries: requeued.length,
          stillQuarantined: 0,
          orphaned: wanted.filter((name) => !instances.has(name))
        } satisfies Replayed
      })

    return { event, quarantined, range, dead } as const
  }),
  dependencies: [Events.Default, Deliveries.Default, Rules.Default]
}) {}
