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

// `kyc-relay events list --json | head -1` closes our stdout early; that is not an error.
process.stdout.on("error", (error: NodeJS.ErrnoException) => {
  if (error.code === "EPIPE") process.exit(0)
  throw error
})

// Our own logger (pretty in a terminal, JSON otherwise) replaces the one runMain would add.
NodeRuntime.runMain(program, { disablePrettyLogger: true })
