import { Deferred, Effect, SynchronizedRef } from "effect"

/**
 * Tells this process's claimers that deliveries were just scheduled, so they need not wait for their next
 * poll. Every claimer of the instance wakes (each claims as many as it has room for). Claimers of other
 * processes sharing the database find the work by polling.
 */
export class Wakeup extends Effect.Service<Wakeup>()("kyc-relay/Wakeup", {
  effect: Effect.gen(function*() {
    // One signal per instance, completed and dropped by the next announcement.
    const signals = yield* SynchronizedRef.make(new Map<string, Deferred.Deferred<void>>())

    /** `scheduled` maps an instance to how many deliveries were just scheduled for it. */
    const notify = (scheduled: ReadonlyMap<string, number>) =>
      SynchronizedRef.updateEffect(signals, (map) =>
        Effect.gen(function*() {
          const next = new Map(map)
          for (const [instance, count] of scheduled) {
            const signal = next.get(instance)
            if (count === 0 || signal === undefined) continue
            yield* Deferred.succeed(signal, undefined)
            next.delete(instance)
          }
          return next
        }))

    /**
     * An effect that resolves once deliveries for `instance` are announced after this call. Take it before
     * looking for work, then wait on it, so that an announcement made meanwhile is not missed.
     */
    const next = (instance: string) =>
      SynchronizedRef.modifyEffect(signals, (map) => {
        const existing = map.get(instance)
        if (existing !== undefined) return Effect.succeed([Deferred.await(existing), map] as const)
        return Effect.map(Deferred.make<void>(), (signal) => [Deferred.await(signal), new Map(map).set(instance, signal)] as const)
      })

    return { notify, next } as const
  })
}) {}
