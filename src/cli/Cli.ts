import { Args, Command, Options } from "@effect/cli"
import { FetchHttpClient } from "@effect/platform"
import { Console, Effect, Either, Layer, Option } from "effect"
import { ServeLive, StoreAccessLive } from "../App.js"
import { layer as settingsLayer, Settings } from "../config/ConfigFile.js"
import { Events, type EventRow } from "../store/Events.js"
import { describeStore } from "../store/Sql.js"
import { loadPayload, post, SendFailed, sign } from "./Send.js"

const config = Options.text("config").pipe(
  Options.withAlias("c"),
  Options.withDescription("Configuration file (default: $KYC_RELAY_CONFIG, else config/kyc-relay.yaml)"),
  Options.optional
)

const serve = Command.make("serve", { config }, ({ config }) =>
  Layer.launch(ServeLive).pipe(Effect.provide(settingsLayer(config)))
).pipe(Command.withDescription("Receive webhooks until stopped (SIGINT/SIGTERM)"))

const checkConfig = Command.make("check-config", { config }, ({ config }) =>
  Effect.gen(function*() {
    const { config: relay, file } = yield* Settings
    yield* Console.log(
      [
        `${file}: OK`,
        `  listen     http://${relay.server.host}:${relay.server.port}${relay.server.path}`,
        `  max body   ${relay.server.max_body_bytes} bytes`,
        `  signature  ${relay.cashfree.signature}, ${relay.cashfree.secrets.length} secret(s)`,
        `  store      ${describeStore(relay.store.url)}`
      ].join("\n")
    )
  }).pipe(Effect.provide(settingsLayer(config)))
).pipe(Command.withDescription("Validate the configuration file and print a summary (secrets are never printed)"))

const asJson = Options.boolean("json").pipe(Options.withDescription("Print JSON lines instead of a table"))

const summary = (row: EventRow) =>
  [
    row.id,
    row.received_at,
    row.status.padEnd(11),
    (row.event_type ?? "-").padEnd(30),
    row.verification_id ?? "-",
    `${row.event_status ?? "-"}/${row.event_sub_status ?? "-"}`,
    row.problems === null ? "" : `problems: ${row.problems}`
  ].join("  ").trimEnd()

const printRows = (rows: ReadonlyArray<EventRow>, json: boolean) =>
  json
    ? Effect.forEach(rows, (row) => Console.log(JSON.stringify(row)), { discard: true })
    : rows.length === 0
    ? Console.log("no events")
    : Effect.forEach(rows, (row) => Console.log(summary(row)), { discard: true })

const withStore = (configFlag: Option.Option<string>) =>
  Effect.provide(StoreAccessLive.pipe(Layer.provideMerge(settingsLayer(configFlag))))

const list = Command.make(
  "list",
  {
    config,
    json: asJson,
    quarantined: Options.boolean("quarantined").pipe(Options.withDescription("Only events that failed to decode")),
    limit: Options.integer("limit").pipe(Options.withDefault(50))
  },
  ({ config, json, limit, quarantined }) =>
    Effect.gen(function*() {
      const events = yield* Events
      yield* printRows(yield* events.list({ quarantined, limit }), json)
    }).pipe(withStore(config))
).pipe(Command.withDescription("Latest events, newest first"))

const show = Command.make(
  "show",
  { config, json: asJson, verificationId: Args.text({ name: "verification_id" }) },
  ({ config, json, verificationId }) =>
    Effect.gen(function*() {
      const events = yield* Events
      yield* printRows(yield* events.timeline(verificationId), json)
    }).pipe(withStore(config))
).pipe(Command.withDescription("Every event of one verification, in event-time order"))

const eventsCommand = Command.make("events").pipe(
  Command.withDescription("Inspect stored events"),
  Command.withSubcommands([list, show])
)

const send = Command.make(
  "send",
  {
    config,
    target: Args.text({ name: "EVENT_TYPE|file.json" }),
    url: Options.text("url").pipe(Options.withDescription("Webhook URL (default: from the configuration)"), Options.optional),
    secret: Options.redacted("secret").pipe(
      Options.withDescription("Client secret to sign with (default: the first in cashfree.secrets)"),
      Options.optional
    ),
    scheme: Options.choice("scheme", ["header", "body"]).pipe(Options.withDefault("header" as const))
  },
  ({ config, scheme, secret, target, url }) =>
    Effect.gen(function*() {
      const { config: relay } = yield* Settings
      const host = relay.server.host === "0.0.0.0" ? "127.0.0.1" : relay.server.host
      const endpoint = Option.getOrElse(url, () => `http://${host}:${relay.server.port}${relay.server.path}`)
      const key = Option.getOrElse(secret, () => relay.cashfree.secrets[0]!)
      const payload = yield* loadPayload(target)
      const signed = yield* Either.match(sign(payload, key, scheme, Date.now()), {
        onLeft: (error) => Effect.fail(error),
        onRight: Effect.succeed
      })
      const { status, text } = yield* post(endpoint, signed)
      yield* Console.log(`POST ${endpoint} (${scheme} signature) -> ${status} ${text}`)
      if (status !== 200) return yield* new SendFailed({ message: `the receiver answered ${status}` })
    }).pipe(Effect.provide(Layer.merge(settingsLayer(config), FetchHttpClient.layer)))
).pipe(Command.withDescription("Sign a sample event (or a JSON file) like Cashfree does and POST it"))

const root = Command.make("kyc-relay").pipe(
  Command.withDescription("Cashfree Secure ID webhook receiver"),
  Command.withSubcommands([serve, checkConfig, eventsCommand, send])
)

export const run = Command.run(root, { name: "kyc-relay", version: "0.1.0" })
