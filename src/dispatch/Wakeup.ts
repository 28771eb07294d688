import { Deferred, Effect, Exit, FiberId } from "effect"

/**
 * Tells this process's claimers that deliveries were just scheduled, so they need not wait for their next
 * poll. Every claimer of the instance wakes (each claims as many as it has room for). Claimers of other
 * processes sharing the database find the work by polling.
 */
export class Wakeup extends Effect.Service<Wakeup>()("kyc-relay/Wakeup", {
  sync: () => {
    // One signal per instance, completed and dropped by the next announcement. Every change is synchronous, so
    // no lock is needed; ingest announces once per group commit without starting a fiber.
    const signals = new Map<string, Deferred.Deferred<void>>()

    /** `scheduled` maps an instance to how many deliveries were just scheduled for it. */
    const unsafeNotify = (scheduled: Iterable<readonly [string, number]>) => {
      for (const [instance, count] of scheduled) {
        const signal = signals.get(instance)
        if (count === 0 || signal === undefined) continue
        signals.delete(instance)
        Deferred.unsafeDone(signal, Exit.void)
      }
    }

    const notify = (scheduled: Iterable<readonly [string, number]>) => Effect.sync(() => unsafeNotify(scheduled))

    /**
     * An effect that resolves once deliveries for `instance` are announced after this call. Take it before
     * looking for work, then wait on it, so that an announcement made meanwhile is not missed.
     */
    const next = (instance: string) =>
      Effect.sync(() => {
        let signal = signals.get(instance)
        if (signal === undefined) {
          signal = Deferred.unsafeMake<void>(FiberId.none)
          signals.set(instance, signal)
        }
        return Deferred.await(signal)
      })

    return { notify, unsafeNotify, next } as const
  }
}) {}
