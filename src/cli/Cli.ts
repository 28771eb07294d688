import { Args, Command, Options } from "@effect/cli"
import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { Console, Effect, Either, Layer, Option } from "effect"
import { ServeLive } from "../App.js"
import { layer as settingsLayer, Settings } from "../config/ConfigFile.js"
import { startInstances } from "../plugin/Instances.js"
import { describeStore } from "../store/Sql.js"
import { deliveriesCommand } from "./DeliveriesCommand.js"
import { eventsCommand } from "./EventsCommand.js"
import { replayCommand } from "./ReplayCommand.js"
import { routesCommand } from "./RoutesCommand.js"
import { loadPayload, post, SendFailed, sign } from "./Send.js"
import { configOption } from "./Shared.js"

const config = configOption

const serve = Command.make("serve", { config }, ({ config }) =>
  Layer.launch(ServeLive).pipe(Effect.provide(settingsLayer(config)))
).pipe(Command.withDescription("Receive webhooks until stopped (SIGINT/SIGTERM)"))

const checkConfig = Command.make("check-config", { config }, ({ config }) =>
  Effect.gen(function*() {
    const loaded = yield* Settings
    const { config: relay, disabled, file, instances } = loaded
    // Each instance is started as `serve` would start it, then stopped: a plugin that cannot start is found here.
    yield* Effect.scoped(Effect.flatMap(Effect.scope, (scope) => startInstances(loaded, scope)))
    yield* Console.log(
      [
        `${file}: OK`,
        `  listen     http://${relay.server.host}:${relay.server.port}${relay.server.path}`,
        `  max body   ${relay.server.max_body_bytes} bytes`,
        `  signature  ${relay.cashfree.signature}, ${relay.cashfree.secrets.length} secret(s)`,
        `  store      ${describeStore(relay.store.url)}`,
        `  plugins    ${
          [...instances.values()].map((i) => `${i.name} (${i.plugin.name})`).join(", ") || "none"
        }`,
        ...[...disabled].map(([name, reason]) => `  disabled   ${name}: ${reason}`),
        `  routes     ${relay.routes.length}`
      ].join("\n")
    )
  }).pipe(Effect.provide(Layer.merge(settingsLayer(config), NodeHttpClient.layerUndici)))
).pipe(
  Command.withDescription("Validate the configuration file, start and stop each plugin instance, and print a summary (secrets are never printed)")
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
  Command.withSubcommands([serve, checkConfig, eventsCommand, deliveriesCommand, replayCommand, routesCommand, send])
)

export const run = Command.run(root, { name: "kyc-relay", version: "0.1.0" })
