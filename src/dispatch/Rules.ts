import { Effect } from "effect"
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
    // A plain variable rather than a Ref: ingest reads it once per batch from plain code, where running an
    // effect cost more than the read. Replacing it is one assignment, so readers see the old or the new whole.
    let snapshot = snapshotOf(yield* Settings)
    return {
      current: Effect.sync(() => snapshot),
      unsafeCurrent: () => snapshot,
      replace: (loaded: Loaded) =>
        Effect.sync(() => {
          snapshot = snapshotOf(loaded)
        })
    } as const
  })
}) {}
