import { Data, Effect, Scope } from "effect"
import type { Loaded } from "../config/ConfigFile.js"
import type { PluginInstance } from "./Plugin.js"
import type { InstanceSpec } from "./Registry.js"

/** A plugin's `make` failed; the configuration that names it cannot be run. */
export class PluginStartFailed extends Data.TaggedError("PluginStartFailed")<{
  readonly instance: string
  readonly reason: string
}> {
  override get message() {
    return `plugin instance ${this.instance} could not start: ${this.reason}`
  }
}

// A system error code where there is one (ENOTDIR): a plugin's own message may carry more than it should.
const reasonOf = (defect: unknown): string => {
  const code = (defect as { readonly code?: unknown } | null)?.code
  if (typeof code === "string") return code
  return (defect instanceof Error ? defect.message : String(defect)).split("\n")[0]!.slice(0, 200)
}

/**
 * Makes every enabled plugin instance of a configuration, its resources held by `scope`. One that cannot start
 * fails the whole set, naming the instance; what the others opened is released when the caller closes the scope.
 */
export const startInstances = (loaded: Loaded, scope: Scope.Scope) =>
  Effect.forEach(loaded.instances.values(), (spec) =>
    spec.plugin.make(spec.settings, spec.name).pipe(
      Scope.extend(scope),
      Effect.catchAllDefect((defect) => new PluginStartFailed({ instance: spec.name, reason: reasonOf(defect) })),
      Effect.map((instance): readonly [InstanceSpec, PluginInstance] => [spec, instance])
    ))
