import { Effect } from "effect"
import type { CashfreeEvent } from "../domain/Event.js"
import type { VerificationState } from "../domain/Lifecycle.js"
import type { DeliveryRow } from "../store/Deliveries.js"

/** A delivery ingest wrote already leased to a lane, with what a worker needs to attempt it. */
export interface HandedOver {
  readonly row: DeliveryRow
  readonly body: string
  readonly verificationId: string
  readonly event: CashfreeEvent
  readonly current: VerificationState
}

/** One plugin instance's lane in this process, as the dispatcher registers it. */
export interface Lane {
  /** Takes up to `wanted` slots (fewer, or none, if the lane is full or stopping); returns how many it took. */
  readonly reserve: (wanted: number) => number
  /** Puts deliveries leased with reserved slots in front of the workers. */
  readonly accept: (deliveries: ReadonlyArray<HandedOver>, leasedAt: number) => void
  /** Gives back reserved slots that no delivery used. */
  readonly giveBack: (slots: number) => void
  /** A name of its own for each reservation's lease (see the dispatcher's claims). */
  readonly holder: () => string
  readonly lease: number
}

/**
 * The lanes of this process's dispatcher, for ingest. A new event's deliveries can skip the claim: ingest reserves
 * room in the lanes before its transaction, writes the deliveries already leased to them (as a claim would), and
 * hands them over once the transaction is on disk. That saves the claim's transaction, its wait and its reads, and
 * each delivery still runs once: a process that dies with them leaves leases that run out like any claim's.
 */
export class Lanes extends Effect.Service<Lanes>()("kyc-relay/Lanes", {
  sync: () => {
    const lanes = new Map<string, Lane>()

    /** Registers a lane in place of the instance's previous one; the returned function takes it out again. */
    const register = (instance: string, lane: Lane) => {
      lanes.set(instance, lane)
      return () => {
        if (lanes.get(instance) === lane) lanes.delete(instance)
      }
    }

    const get = (instance: string): Lane | undefined => lanes.get(instance)

    return { register, get } as const
  }
}) {}
