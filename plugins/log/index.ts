import { Effect, Schema } from "effect"
import { definePlugin } from "../../src/plugin/Plugin.js"

const Settings = Schema.Struct({
  level: Schema.optionalWith(Schema.Literal("debug", "info", "warning"), { default: () => "info" as const })
})

/** Logs one line per event: type, verification, status. No personal data. */
export const LogPlugin = definePlugin({
  name: "log",
  settings: Settings,
  make: (settings, instance) =>
    Effect.succeed({
      handle: (event, ctx) => {
        const data = event.data as { readonly status?: string; readonly sub_status?: string; readonly form_status?: string }
        const line = `${event.event_type} ${event.data.verification_id} ${data.status ?? data.form_status ?? "-"}/${data.sub_status ?? "-"}${ctx.lifecycle.stale ? " (stale)" : ""}`
        const log = settings.level === "debug"
          ? Effect.logDebug(line)
          : settings.level === "warning"
          ? Effect.logWarning(line)
          : Effect.logInfo(line)
        return log.pipe(
          Effect.annotateLogs({ plugin: "log", instance, event_id: ctx.eventId, attempt: ctx.attempt }),
          Effect.as({})
        )
      }
    })
})
