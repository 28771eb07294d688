import { Effect, PubSub, Queue } from "effect"

/**
 * Tells this process's workers that deliveries were just scheduled for some instances, so they need not wait
 * for their next poll. Workers of other processes sharing the database find them by polling.
 */
export class Wakeup extends Effect.Service<Wakeup>()("kyc-relay/Wakeup", {
  scoped: Effect.gen(function*() {
    const hub = yield* PubSub.sliding<ReadonlySet<string>>(1024)

    const notify = (instances: ReadonlySet<string>) => instances.size === 0 ? Effect.void : PubSub.publish(hub, instances)

    /** Resolves when work for `instance` is announced or `timeout` passes, whichever is first. */
    const waiter = (instance: string) =>
      Effect.map(PubSub.subscribe(hub), (subscription) => (timeout: Effect.Effect<void>) =>
        Effect.race(
          timeout,
          Queue.take(subscription).pipe(Effect.repeat({ until: (names) => names.has(instance) }), Effect.asVoid)
        ).pipe(Effect.zipLeft(Queue.takeAll(subscription))))

    return { notify, waiter } as const
  })
}) {}
