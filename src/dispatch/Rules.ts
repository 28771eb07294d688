import { Effect, Ref } from "effect"
import { type Loaded, Settings } from "../config/ConfigFile.js"
import type { RetrySettings } from "../config/RelayConfig.js"
import type { InstanceSpec } from "../plugin/Registry.js"
import type { CashfreeEvent } from "../domain/Event.js"
import { compile, route, type Target } from "./Router.js"

/** The routing part of a configuration, ready to use. */
export interface RulesSnapshot {
  readonly routes: ReturnType<typeof compile>
  readonly retry: RetrySettings
  readonly instances: ReadonlyMap<string, InstanceSpec>
  readonly disabled: ReadonlyMap<string, string>
}

export const snapshotOf = (loaded: Loaded): RulesSnapshot => ({
  routes: compile(loaded.config.routes),
  retry: loaded.config.retry,
  instances: loaded.instances,
  disabled: loaded.disabled
})

/** The deliveries an event gets under these rules; an instance left disabled gets none. */
export const targetsFor = (snapshot: RulesSnapshot, event: CashfreeEvent, stale: boolean): ReadonlyArray<Target> =>
  route(snapshot.routes, event, stale).filter((target) => snapshot.instances.has(target.instance))

/** The routes and retry policy in force; replaced as a whole when the configuration is reloaded. */
export class Rules extends Effect.Service<Rules>()("kyc-relay/Rules", {
  effect: Effect.gen(function*() {
    const ref = yield* Ref.make(snapshotOf(yield* Settings))
    return {
      current: Ref.get(ref),
      replace: (loaded: Loaded) => Ref.set(ref, snapshotOf(loaded))
    } as const
  })
}) {}
