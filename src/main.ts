import { ValidationError } from "@effect/cli"
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Console, Effect } from "effect"
import { LoggingLive } from "./App.js"
import { run } from "./cli/Cli.js"

// Errors a user can fix become one clear line and exit status 1; defects still surface with their cause.
const program = Effect.suspend(() => run(process.argv)).pipe(
  Effect.provide(LoggingLive),
  Effect.catchAll((error) =>
    (ValidationError.isValidationError(error) ? Effect.void : Console.error(`kyc-relay: ${error.message}`)).pipe(
      Effect.andThen(Effect.sync(() => {
        process.exitCode = 1
      }))
    )
  ),
  Effect.provide(NodeContext.layer)
)

// Our own logger (pretty in a terminal, JSON otherwise) replaces the one runMain would add.
NodeRuntime.runMain(program, { disablePrettyLogger: true })
