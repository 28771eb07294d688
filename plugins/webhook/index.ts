import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import { Clock, DateTime, Effect, Option, Schema } from "effect"
import { classifyStatus, systemErrorCode } from "../../src/plugin/HttpOutcome.js"
import { definePlugin, Retryable } from "../../src/plugin/Plugin.js"

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
    Effect.gen(function*() {
      const client = yield* HttpClient.HttpClient
      return {
        handle: (event, ctx) =>
          Effect.gen(function*() {
            const request = HttpClientRequest.post(settings.url).pipe(
              HttpClientRequest.setHeaders({
                ...settings.headers,
                "idempotency-key": ctx.idempotencyKey,
                "x-kyc-relay-event-id": ctx.eventId,
                "x-kyc-relay-attempt": String(ctx.attempt)
              }),
              HttpClientRequest.bodyUnsafeJson({
                event_id: ctx.eventId,
                event_type: event.event_type,
                event_time: DateTime.formatIso(event.event_time),
                version: event.version,
                data: event.data,
                stale: ctx.lifecycle.stale,
                params: ctx.params
              })
            )
            const response = yield* client.execute(request).pipe(
              Effect.mapError((error) =>
                new Retryable({ message: `request failed: ${systemErrorCode(error.cause) ?? error.reason}` })
              )
            )
            yield* response.text.pipe(Effect.ignore)
            const now = yield* Clock.currentTimeMillis
            const failure = classifyStatus(response.status, response.headers["retry-after"], now)
            if (Option.isSome(failure)) return yield* failure.value
            return {}
          }).pipe(Effect.scoped)
      }
    })
})
