import { isStale, type VerificationState } from "../domain/Lifecycle.js"
import type { DeliveryRow } from "../store/Deliveries.js"
import type { EventRow } from "../store/Events.js"

/**
 * What one group commit decides once it knows which events are new: each new event's effect on its
 * verification's lifecycle, and the deliveries it gets. Both stores run these steps inside their transaction
 * (on SQLite in the writer thread, so this module stays free of the runtime and of the configuration); the
 * SQLite writer lets its upsert decide what applyLifecycle decides here.
 */

/** An accepted event, with everything the transaction needs worked out beforehand. */
export interface Tracked {
  readonly verificationId: string
  /** The state this event would put its verification in. */
  readonly next: VerificationState
  /** Its deliveries when it is current, and when it turns out to be stale (routes may skip stale events). */
  readonly deliveries: ReadonlyArray<DeliveryRow>
  readonly deliveriesIfStale: ReadonlyArray<DeliveryRow>
}

/** One webhook to store; quarantined events have nothing tracked: they are stored but not routed. */
export interface Arrival {
  readonly row: EventRow
  readonly tracked: Tracked | undefined
}

export interface Decided {
  readonly row: EventRow
  readonly tracked: Tracked
  readonly stale: boolean
}

/**
 * Applies the batch's new events, in order, to the states read from the store. `changed` holds each
 * verification's resulting state, to be written unless another process moved it on meanwhile.
 */
export const applyLifecycle = (
  fresh: ReadonlyArray<{ readonly row: EventRow; readonly tracked: Tracked }>,
  stored: ReadonlyMap<string, VerificationState>
) => {
  const states = new Map(stored)
  const changed = new Map<string, VerificationState>()
  const decided = fresh.map(({ row, tracked }): Decided => {
    const stale = isStale(states.get(tracked.verificationId) ?? null, tracked.next)
    if (!stale) {
      states.set(tracked.verificationId, tracked.next)
      changed.set(tracked.verificationId, tracked.next)
    }
    return { row, tracked, stale }
  })
  return { decided, changed }
}

export interface Planned {
  readonly deliveries: ReadonlyArray<DeliveryRow>
  readonly staleIds: ReadonlyArray<string>
  /** Deliveries just scheduled for a claim (not leased to a lane already), by plugin instance. */
  readonly woken: ReadonlyMap<string, number>
  /** Accepted events that matched no route. */
  readonly unrouted: number
}

/** `written` are the verifications whose new state was stored (a state another process wrote wins). */
export const planDeliveries = (decided: ReadonlyArray<Decided>, written: ReadonlySet<string>): Planned => {
  const deliveries: Array<DeliveryRow> = []
  const staleIds: Array<string> = []
  const woken = new Map<string, number>()
  let unrouted = 0
  for (const { row, stale: staleHere, tracked } of decided) {
    const stale = staleHere || !written.has(tracked.verificationId)
    if (stale) staleIds.push(row.id)
    const rows = stale ? tracked.deliveriesIfStale : tracked.deliveries
    if (rows.length === 0) unrouted++
    for (const delivery of rows) {
      deliveries.push(delivery)
      if (delivery.lease_owner === null) woken.set(delivery.instance, (woken.get(delivery.instance) ?? 0) + 1)
    }
  }
  return { deliveries, staleIds, woken, unrouted }
}

export const freshOf = (batch: ReadonlyArray<Arrival>, duplicate: ReadonlyArray<boolean>) =>
  batch.flatMap(({ row, tracked }, i) => (!duplicate[i] && tracked !== undefined ? [{ row, tracked }] : []))
