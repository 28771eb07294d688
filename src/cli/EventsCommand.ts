import { Args, Command, Options } from "@effect/cli"
import { Effect } from "effect"
import { Events, type EventRow } from "../store/Events.js"
import { configOption, jsonOption, limitOption, printRows, withStore } from "./Shared.js"

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

const list = Command.make(
  "list",
  {
    config: configOption,
    json: jsonOption,
    quarantined: Options.boolean("quarantined").pipe(Options.withDescription("Only events that failed to decode")),
    limit: limitOption
  },
  ({ config, json, limit, quarantined }) =>
    Effect.gen(function*() {
      const events = yield* Events
      yield* printRows(yield* events.list({ quarantined, limit }), json, summary)
    }).pipe(withStore(config))
).pipe(Command.withDescription("Latest events, newest first"))

const show = Command.make(
  "show",
  { config: configOption, json: jsonOption, verificationId: Args.text({ name: "verification_id" }) },
  ({ config, json, verificationId }) =>
    Effect.gen(function*() {
      const events = yield* Events
      yield* printRows(yield* events.timeline(verificationId), json, summary)
    }).pipe(withStore(config))
).pipe(Command.withDescription("Every event of one verification, in event-time order"))

export const eventsCommand = Command.make("events").pipe(
  Command.withDescription("Inspect stored events"),
  Command.withSubcommands([list, show])
)
