import { Config, ConfigError, Effect, Either, Layer, Logger, LogLevel } from "effect"
import { Settings } from "./config/ConfigFile.js"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { ReloadOnSighup } from "./config/Reload.js"
import { Dispatcher } from "./dispatch/Dispatcher.js"
import * as Server from "./http/Server.js"
import { Metrics } from "./observability/Metrics.js"
import { Webhook } from "./http/Webhook.js"
import { Deliveries } from "./store/Deliveries.js"
import { Events } from "./store/Events.js"
import * as Sql from "./store/Sql.js"

/** The store named by `store.url`, migrated. */
export const StoreLive = Layer.unwrapEffect(Effect.map(Settings, ({ config }) => Sql.layer(config.store.url)))

const LEVELS = {
  debug: LogLevel.Debug,
  info: LogLevel.Info,
  warning: LogLevel.Warning,
  error: LogLevel.Error,
  none: LogLevel.None
} as const

/** Pretty lines in a terminal, one JSON object per line otherwise; level from KYC_RELAY_LOG_LEVEL: debug, info (default), warning, error or none. */
export const LoggingLive = Layer.unwrapEffect(
  Effect.gen(function*() {
    const level = yield* Config.string("KYC_RELAY_LOG_LEVEL").pipe(
      Config.withDefault("info"),
      Config.mapOrFail((name) => {
        const key = name.toLowerCase()
        return !Object.hasOwn(LEVELS, key)
          ? Either.left(ConfigError.InvalidData([], `KYC_RELAY_LOG_LEVEL must be one of ${Object.keys(LEVELS).join(", ")}`))
          : Either.right(LEVELS[key as keyof typeof LEVELS])
      })
    )
    const format = process.stdout.isTTY ? Logger.pretty : Logger.json
    return Layer.merge(format, Logger.minimumLogLevel(level))
  })
)

/**
 * The running service. The HTTP server is built last, so it listens only once the store is open and
 * migrated, and it is closed first, so in-flight requests finish before the store goes away.
 */
export const ServeLive = Layer.merge(Server.layer, ReloadOnSighup).pipe(
  Layer.provideMerge(Layer.mergeAll(Webhook.Default, Events.Default, Deliveries.Default, Dispatcher.Default, Metrics.Default)),
  Layer.provide(NodeHttpClient.layerUndici),
  Layer.provideMerge(StoreLive)
)

/** Store access for the operator commands, without the HTTP server. */
export const StoreAccessLive = Layer.mergeAll(Events.Default, Deliveries.Default).pipe(Layer.provideMerge(StoreLive))
