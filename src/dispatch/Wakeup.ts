import { Effect, Queue, SynchronizedRef } from "effect"

/**
 * Tells this process's workers that deliveries were just scheduled, so they need not wait for their next
 * poll. Each scheduled delivery wakes one worker of its instance, not all of them. Workers of other
 * processes sharing the database find the work by polling.
 */
export class Wakeup extends Effect.Service<Wakeup>()("kyc-relay/Wakeup", {
  effect: Effect.gen(function*() {
    const queues = yield* SynchronizedRef.make(new Map<string, Queue.Queue<void>>())

    const queueOf = (instance: string) =>
      SynchronizedRef.modifyEffect(queues, (map) => {
        const existing = map.get(instance)
        if (existing !== undefined) return Effect.succeed([existing, map] as const)
        return Effect.map(Queue.sliding<void>(1024), (queue) => [queue, new Map(map).set(instance, queue)] as const)
      })

    /** `scheduled` maps an instance to how many deliveries were just scheduled for it. */
    const notify = (scheduled: ReadonlyMap<string, number>) =>
      Effect.forEach(scheduled, ([instance, count]) =>
        Effect.flatMap(queueOf(instance), (queue) => Queue.offerAll(queue, Array.from({ length: count }, () => undefined))), {
        discard: true
      })

    /** Resolves when a delivery for `instance` is announced or `timeout` passes, whichever is first. */
    const waiter = (instance: string) =>
      Effect.map(queueOf(instance), (queue) => (timeout: Effect.Effect<void>) => Effect.race(timeout, Queue.take(queue)))

    return { notify, waiter } as const
  })
}) {}
