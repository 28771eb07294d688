import { ValidationError } from "@effect/cli"
import { NodeContext, NodeRuntime } from "@effect/platform-node"
import { Console, Effect, Layer } from "effect"
import { LoggingLive } from "./App.js"
import { run } from "./cli/Cli.js"

// Errors a user can fix become one clear line and exit status 1; defects still surface with their cause.
const program = Effect.suspend(() => run(process.argv)).pipe(
  Effect.catchAll((error) =>
    (ValidationError.isValidationError(error) ? Effect.void : Console.error(`kyc-relay: ${error.message}`)).pipe(
      Effect.andThen(Effect.sync(() => {
        process.exitCode = 1
      }))
    )
  ),
  Effect.provide(Layer.merge(NodeContext.layer, LoggingLive))
)

// Our own logger (pretty in a terminal, JSON otherwise) replaces the one runMain would add.
NodeRuntime.runMain(program, { disablePrettyLogger: true })
