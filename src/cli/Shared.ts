import { Options } from "@effect/cli"
import { Console, Effect, Layer, type Option } from "effect"
import { StoreAccessLive } from "../App.js"
import { layer as settingsLayer } from "../config/ConfigFile.js"

export const configOption = Options.text("config").pipe(
  Options.withAlias("c"),
  Options.withDescription("Configuration file (default: $KYC_RELAY_CONFIG, else config/kyc-relay.yaml)"),
  Options.optional
)

export const jsonOption = Options.boolean("json").pipe(Options.withDescription("Print JSON lines instead of a table"))

export const limitOption = Options.integer("limit").pipe(Options.withDefault(50))

/** The store and the configuration, for commands that work on stored data without serving. */
export const withStore = (configFlag: Option.Option<string>) =>
  Effect.provide(StoreAccessLive.pipe(Layer.provideMerge(settingsLayer(configFlag))))

export const printRows = <A>(rows: ReadonlyArray<A>, json: boolean, line: (row: A) => string) =>
  json
    ? Effect.forEach(rows, (row) => Console.log(JSON.stringify(row)), { discard: true })
    : rows.length === 0
    ? Console.log("nothing found")
    : Effect.forEach(rows, (row) => Console.log(line(row)), { discard: true })
