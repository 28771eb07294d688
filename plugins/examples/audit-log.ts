import { DateTime, Effect, Schema } from "effect"
import { appendFile, mkdir } from "node:fs/promises"
import { dirname } from "node:path"
import { definePlugin, Permanent, Retryable } from "../../src/plugin/Plugin.js"

const Settings = Schema.Struct({
  /** JSON-lines file the audit trail is appended to. */
  file: Schema.NonEmptyString
})

/**
 * A custom plugin: appends one JSON line per event (ids, type, status, times; no personal data) to a file.
 * Enable it with `use: ./plugins/examples/audit-log.ts` and a `file:` setting.
 */
export const plugin = definePlugin({
  name: "audit-log",
  settings: Settings,
  make: (settings) =>
    Effect.gen(function*() {
      yield* Effect.promise(() => mkdir(dirname(settings.file), { recursive: true }))
      return {
        handle: (event, ctx) => {
          const data = event.data as { readonly status?: string; readonly sub_status?: string; readonly form_status?: string }
          const line = JSON.stringify({
            event_id: ctx.eventId,
            event_type: event.event_type,
            event_time: DateTime.formatIso(event.event_time),
            verification_id: event.data.verification_id,
            status: data.status ?? data.form_status,
            sub_status: data.sub_status ?? null,
            stale: ctx.lifecycle.stale,
            attempt: ctx.attempt
          })
          return Effect.tryPromise({
            try: () => appendFile(settings.file, `${line}\n`),
            catch: (error) => {
              const code = (error as NodeJS.ErrnoException).code
              // Permission and path errors will not fix themselves; anything else (disk full, I/O) may.
              return code === "EACCES" || code === "EISDIR" || code === "ENOTDIR"
                ? new Permanent({ message: `cannot write ${settings.file}: ${code}` })
                : new Retryable({ message: `cannot write ${settings.file}: ${code ?? "unknown error"}` })
            }
          }).pipe(Effect.as({}))
        }
      }
    })
})
