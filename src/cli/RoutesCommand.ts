import { Args, Command, Options } from "@effect/cli"
import { Console, Effect, Either } from "effect"
import { layer as settingsLayer, Settings } from "../config/ConfigFile.js"
import { explain, statusOf, subStatusOf } from "../dispatch/Router.js"
import { snapshotOf, targetsFor } from "../dispatch/Rules.js"
import { decodeEventJson } from "../domain/Event.js"
import { issuesOf, pathText } from "../domain/Issues.js"
import { configOption } from "./Shared.js"
import { loadPayload } from "./Send.js"


const test = Command.make(
  "test",
  {
    config: configOption,
    target: Args.text({ name: "EVENT_TYPE|file.json" }),
    stale: Options.boolean("stale").pipe(Options.withDescription("Route it as an event older than its verification's state"))
  },
  ({ config, stale, target }) =>
    Effect.gen(function*() {
      const loaded = yield* Settings
      const decoded = decodeEventJson(yield* loadPayload(target))
      if (Either.isLeft(decoded)) {
        const problems = issuesOf(decoded.left).map((issue) => `  ${pathText(issue.path)}: ${issue.message}`)
        return yield* Console.log(["would be quarantined (no deliveries):", ...problems].join("\n"))
      }
      const event = decoded.right
      const snapshot = snapshotOf(loaded)
      const matched = explain(snapshot.routes, event, stale)
      const disabledNote = (name: string) => {
        const reason = snapshot.disabled.get(name)
        return reason === undefined ? name : `${name} (disabled: ${reason})`
      }
      const lines = [
        `${event.event_type} ${statusOf(event)}/${subStatusOf(event) ?? "-"}${stale ? " (stale)" : ""}`,
        ...(matched.length === 0
          ? ["  no route matches: stored, not delivered"]
          : matched.map((m) =>
            `  route ${m.route}${m.name === undefined ? "" : ` "${m.name}"`}: ${
              m.skippedStale ? "matches, skips stale events" : m.instances.map(disabledNote).join(", ")
            }`
          )),
        `deliveries: ${targetsFor(snapshot, event, stale).map((t) => t.instance).join(", ") || "none"}`
      ]
      yield* Console.log(lines.join("\n"))
    }).pipe(Effect.provide(settingsLayer(config)))
).pipe(Command.withDescription("Show which routes and plugin instances an event would reach, without sending it"))

export const routesCommand = Command.make("routes").pipe(
  Command.withDescription("Inspect routing"),
  Command.withSubcommands([test])
)
