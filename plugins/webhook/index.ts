import { Clock, DateTime, Effect, Option, Schema } from "effect"
import { headerOf, httpCall } from "../../src/plugin/HttpCall.js"
import { classifyStatus } from "../../src/plugin/HttpOutcome.js"
import { definePlugin } from "../../src/plugin/Plugin.js"

const Settings = Schema.Struct({
  url: Schema.String.pipe(Schema.pattern(/^https?:\/\/.+/, { message: () => "an http:// or https:// URL" })),
  headers: Schema.optionalWith(Schema.Record({ key: Schema.String, value: Schema.String }), { default: () => ({}) })
})

/**
 * POSTs the event as JSON to a URL. The body carries the whole event, including personal data: point it only
 * at systems allowed to hold it. Sends `Idempotency-Key`, stable across retries.
 */
export const WebhookPlugin = definePlugin({
  name: "webhook",
  settings: Settings,
  make: (settings) =>
    Effect.succeed({
      handle: (event, ctx) =>
        Effect.gen(function*() {
          const response = yield* httpCall("POST", settings.url, {
            ...settings.headers,
            "content-type": "application/json",
            "idempotency-key": ctx.idempotencyKey,
            "x-kyc-relay-event-id": ctx.eventId,
            "x-kyc-relay-attempt": String(ctx.attempt)
          }, JSON.stringify({
            event_id: ctx.eventId,
            event_type: event.event_type,
            event_time: DateTime.formatIso(event.event_time),
            version: event.version,
            data: event.data,
            stale: ctx.lifecycle.stale,
            params: ctx.params
          }))
          const failure = classifyStatus(response.status, headerOf(response, "retry-after"), yield* Clock.currentTimeMillis)
          if (Option.isSome(failure)) return yield* failure.value
          return {}
        })
    })
})
