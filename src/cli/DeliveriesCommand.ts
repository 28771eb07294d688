import { Args, Command, Options } from "@effect/cli"
import { Console, Effect, Option } from "effect"
import { Deliveries, type DeliveryRow } from "../store/Deliveries.js"
import { configOption, jsonOption, limitOption, printRows, withStore } from "./Shared.js"

const summary = (row: DeliveryRow) =>
  [
    row.id,
    row.state.padEnd(7),
    row.instance.padEnd(16),
    `attempts ${row.attempts}`,
    row.state === "pending" ? `next ${row.next_attempt_at}` : `updated ${row.updated_at}`,
    row.last_error ?? ""
  ].join("  ").trimEnd()

const list = Command.make(
  "list",
  {
    config: configOption,
    json: jsonOption,
    limit: limitOption,
    dead: Options.boolean("dead").pipe(Options.withDescription("Only dead letters")),
    event: Options.text("event").pipe(Options.withDescription("Only deliveries of this event id"), Options.optional),
    instance: Options.text("instance").pipe(Options.withDescription("Only this plugin instance"), Options.optional)
  },
  ({ config, dead, event, instance, json, limit }) =>
    Effect.gen(function*() {
      const deliveries = yield* Deliveries
      const rows = yield* deliveries.list({
        state: dead ? "dead" : undefined,
        eventId: Option.getOrUndefined(event),
        instance: Option.getOrUndefined(instance),
        limit
      })
      yield* printRows(rows, json, summary)
    }).pipe(withStore(config))
).pipe(Command.withDescription("Deliveries, newest first"))

const show = Command.make(
  "show",
  { config: configOption, deliveryId: Args.text({ name: "delivery_id" }) },
  ({ config, deliveryId }) =>
    Effect.gen(function*() {
      const deliveries = yield* Deliveries
      const attempts = yield* deliveries.attempts(deliveryId)
      if (attempts.length === 0) return yield* Console.log(`no attempts recorded for ${deliveryId}`)
      yield* Effect.forEach(attempts, (a) =>
        Console.log(`#${a.attempt}  ${a.started_at}  ${a.outcome.padEnd(11)}  ${a.error ?? ""}  (${a.worker})`.trimEnd()), {
        discard: true
      })
    }).pipe(withStore(config))
).pipe(Command.withDescription("Every attempt of one delivery"))

export const deliveriesCommand = Command.make("deliveries").pipe(
  Command.withDescription("Inspect deliveries and dead letters"),
  Command.withSubcommands([list, show])
)
