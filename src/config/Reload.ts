import type { FileSystem } from "@effect/platform"
import { Effect, Layer, Redacted, Runtime } from "effect"
import { Dispatcher } from "../dispatch/Dispatcher.js"
import { loadConfigFile, Settings } from "./ConfigFile.js"
import type { RelayConfig } from "./RelayConfig.js"

const RESTART_ONLY = ["server", "cashfree", "store"] as const

// Only compared, never printed.
const comparable = (config: RelayConfig) => ({
  server: config.server,
  store: config.store,
  cashfree: { signature: config.cashfree.signature, secrets: config.cashfree.secrets.map(Redacted.value) }
})

/**
 * SIGHUP reloads the configuration file: routes, retry policy, dispatch settings and plugin instances switch
 * over without dropping deliveries in flight. A file that does not validate is refused and the running
 * configuration stays; `server`, `cashfree` and `store` take effect only after a restart.
 */
export const ReloadOnSighup = Layer.scopedDiscard(
  Effect.gen(function*() {
    const started = yield* Settings
    const dispatcher = yield* Dispatcher
    const runtime = yield* Effect.runtime<FileSystem.FileSystem>()
    const lock = yield* Effect.makeSemaphore(1)

    const reload = loadConfigFile(started.file).pipe(
      Effect.tap((loaded) => {
        const [before, after] = [comparable(started.config), comparable(loaded.config)]
        const fixed = RESTART_ONLY.filter((key) => JSON.stringify(before[key]) !== JSON.stringify(after[key]))
        return fixed.length === 0
          ? Effect.void
          : Effect.logWarning(`changes to ${fixed.join(", ")} take effect after a restart`)
      }),
      Effect.flatMap(dispatcher.reload),
      Effect.zipRight(Effect.logInfo(`configuration reloaded from ${started.file}`)),
      Effect.catchTags({
        ConfigInvalid: (error) => Effect.logError(`configuration not reloaded; the previous one stays in force:\n${error.message}`),
        PluginStartFailed: (error) => Effect.logError(`configuration not reloaded; the previous one stays in force: ${error.message}`)
      }),
      Effect.catchAllCause((cause) => Effect.logError("configuration not reloaded; the previous one stays in force", cause)),
      lock.withPermits(1),
      Effect.annotateLogs({ service: "Reload" })
    )

    const onSighup = () => {
      Runtime.runFork(runtime)(reload)
    }
    yield* Effect.acquireRelease(
      Effect.sync(() => process.on("SIGHUP", onSighup)),
      () => Effect.sync(() => process.off("SIGHUP", onSighup))
    )
  })
)

