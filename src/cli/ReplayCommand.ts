import { Args, Command, Options } from "@effect/cli"
import { Console, Effect, Option } from "effect"
import { Replay, type Replayed } from "../dispatch/Replay.js"
import { configOption, withStore } from "./Shared.js"

const plural = (n: number, one: string, many: string) => `${n} ${n === 1 ? one : many}`

const report = (result: Replayed) =>
  Console.log(
    [
      `rescheduled ${plural(result.deliveries, "delivery", "deliveries")}${
        result.events > 0 ? ` for ${plural(result.events, "event", "events")}` : ""
      }`,
      ...(result.stillQuarantined > 0 ? [`${result.stillQuarantined} quarantined events still do not decode`] : []),
      ...(result.orphaned.length > 0
        ? [`left alone: dead letters of instances no longer configured: ${result.orphaned.join(", ")}`]
        : []),
      ...(result.disabled.length > 0
        ? [`left alone: dead letters of disabled instances (set their environment variables): ${result.disabled.join(", ")}`]
        : [])
    ].join("\n")
  )

const run = <E, R>(configFlag: Option.Option<string>, pick: (replay: Replay) => Effect.Effect<Replayed, E, R>) =>
  Effect.flatMap(Replay, pick).pipe(Effect.flatMap(report), Effect.provide(Replay.Default), withStore(configFlag))

const event = Command.make(
  "event",
  { config: configOption, eventId: Args.text({ name: "event_id" }) },
  ({ config, eventId }) => run(config, (replay) => replay.event(eventId))
).pipe(Command.withDescription("Route one event again under the current rules and deliver it again"))

const dead = Command.make(
  "dead",
  { config: configOption, instance: Options.text("instance").pipe(Options.optional) },
  ({ config, instance }) => run(config, (replay) => replay.dead(Option.getOrUndefined(instance)))
).pipe(Command.withDescription("Retry the dead letters of one plugin instance, or of all"))

const quarantined = Command.make("quarantined", { config: configOption }, ({ config }) =>
  run(config, (replay) => replay.quarantined)
).pipe(Command.withDescription("Decode quarantined events again; those that now decode are routed"))

const range = Command.make(
  "range",
  {
    config: configOption,
    since: Options.date("since").pipe(Options.withDescription("ISO time, inclusive, e.g. 2026-01-31T00:00:00Z")),
    until: Options.date("until").pipe(Options.withDescription("ISO time, exclusive"), Options.optional)
  },
  ({ config, since, until }) =>
    run(config, (replay) =>
      replay.range(since.toISOString(), Option.getOrUndefined(Option.map(until, (date) => date.toISOString()))))
).pipe(Command.withDescription("Route again every event received in a time range"))

export const replayCommand = Command.make("replay").pipe(
  Command.withDescription("Schedule deliveries again (a running server picks them up)"),
  Command.withSubcommands([event, dead, quarantined, range])
)
