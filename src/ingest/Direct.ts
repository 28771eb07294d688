import type { HandedOver, Lane, Lanes } from "../dispatch/Lanes.js"
import type { CashfreeEvent } from "../domain/Event.js"
import type { VerificationState } from "../domain/Lifecycle.js"
import type { Committed } from "../store/SqliteWrite.js"
import type { Arrival } from "./Apply.js"

interface Reservation {
  readonly lane: Lane
  readonly holder: string
  readonly leaseUntil: string
  readonly granted: number
  left: number
}

/** What the transaction tells about a batch: which webhooks were new, and which new events were stale. */
type Outcome = Pick<Committed, "stored" | "staleIds">

/**
 * Leases a batch's deliveries to this process's lanes where they have room (see Lanes): `batch` is what to
 * write, `handOver` gives the lanes what the committed transaction wrote, `cancel` gives the room back if it
 * failed. Only the deliveries of a current event are leased; a stale one's (written only if the transaction
 * finds it stale) wait for a claim, which reads the verification's state from the store.
 */
export const leaseToLanes = (
  lanes: Lanes,
  batch: ReadonlyArray<Arrival>,
  events: ReadonlyArray<CashfreeEvent | undefined>,
  now: number
) => {
  const wanted = new Map<string, number>()
  for (const { tracked } of batch) {
    for (const { instance } of tracked?.deliveries ?? []) wanted.set(instance, (wanted.get(instance) ?? 0) + 1)
  }
  const reserved = new Map<string, Reservation>()
  for (const [instance, count] of wanted) {
    const lane = lanes.get(instance)
    const granted = lane?.reserve(count) ?? 0
    if (lane !== undefined && granted > 0) {
      reserved.set(instance, { lane, holder: lane.holder(), leaseUntil: new Date(now + lane.lease).toISOString(), granted, left: granted })
    }
  }
  if (reserved.size === 0) return { batch, handOver: (_: Outcome) => {}, cancel: () => {} }

  // As a claim leaves them: running, first attempt, held by the reservation until the lease ends.
  const leased = batch.map((arrival): Arrival => {
    const { tracked } = arrival
    if (tracked === undefined) return arrival
    const deliveries = tracked.deliveries.map((row) => {
      const reservation = reserved.get(row.instance)
      if (reservation === undefined || reservation.left === 0) return row
      reservation.left--
      return { ...row, state: "running" as const, attempts: 1, lease_owner: reservation.holder, lease_until: reservation.leaseUntil }
    })
    // deliveriesIfStale keeps the rows as arrival() made them: unleased.
    return { row: arrival.row, tracked: { ...tracked, deliveries } }
  })

  const handOver = ({ staleIds, stored }: Outcome) => {
    const stale = new Set(staleIds)
    const current = (i: number) => !stored[i]!.duplicate && leased[i]!.tracked !== undefined && !stale.has(leased[i]!.row.id)
    // A later current event of the same verification in this batch moved it on past an earlier one.
    const states = new Map<string, VerificationState>()
    leased.forEach(({ tracked }, i) => {
      if (current(i)) states.set(tracked!.verificationId, tracked!.next)
    })
    const handed = new Map<string, Array<HandedOver>>()
    leased.forEach(({ row: event, tracked }, i) => {
      if (!current(i)) return
      for (const row of tracked!.deliveries) {
        if (row.lease_owner === null) continue
        const list = handed.get(row.instance) ?? []
        list.push({ row, body: event.body, verificationId: tracked!.verificationId, event: events[i]!, current: states.get(tracked!.verificationId)! })
        handed.set(row.instance, list)
      }
    })
    for (const [instance, { granted, lane }] of reserved) {
      const list = handed.get(instance) ?? []
      if (list.length > 0) lane.accept(list, now)
      if (granted > list.length) lane.giveBack(granted - list.length)
    }
  }

  const cancel = () => {
    for (const { granted, lane } of reserved.values()) lane.giveBack(granted)
  }

  return { batch: leased, handOver, cancel }
}
