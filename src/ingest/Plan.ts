import { Schema } from "effect"
import { RetryOverrides } from "../config/RelayConfig.js"
import { type RulesSnapshot, targetsFor } from "../dispatch/Rules.js"
import type { Target } from "../dispatch/Router.js"
import type { CashfreeEvent } from "../domain/Event.js"
import { stateOf } from "../domain/Lifecycle.js"
import type { DeliveryRow } from "../store/Deliveries.js"
import type { EventRow } from "../store/Events.js"
import type { Arrival } from "./Apply.js"

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

const sameTargets = (a: ReadonlyArray<Target>, b: ReadonlyArray<Target>) =>
  a.length === b.length && a.every((target, i) => target.instance === b[i]!.instance && target.route === b[i]!.route)

/**
 * Works out, before the transaction, what an event needs in it: the state it would put its verification in
 * and its deliveries under the rules in force, both if it is current and if the store says it is stale.
 */
export const arrival = (snapshot: RulesSnapshot, row: EventRow, event: CashfreeEvent | undefined, now: string): Arrival => {
  if (event === undefined) return { row, tracked: undefined }
  const current = targetsFor(snapshot, event, false)
  const ifStale = targetsFor(snapshot, event, true)
  const deliveries = current.map((target) => deliveryRow(row.id, target, now))
  return {
    row,
    tracked: {
      verificationId: event.data.verification_id,
      next: stateOf(row.id, event, row.event_time!),
      deliveries,
      deliveriesIfStale: sameTargets(current, ifStale) ? deliveries : ifStale.map((target) => deliveryRow(row.id, target, now))
    }
  }
}
