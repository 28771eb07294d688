import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { Duration, Effect, Either, HashMap, Logger, Schema } from "effect"
import { CashfreeEvent } from "../../src/domain/Event.js"
import type { DeliveryContext, Plugin, PluginError } from "../../src/plugin/Plugin.js"
import { fixture } from "./Fixtures.js"

/** Personal values that appear in the provider fixtures; none may reach a log line or a stored error. */
export const PERSONAL_VALUES = [
  "Ananya Sharma",
  "9876543210",
  "ananya.sharma@example.com",
  "https://forms.cashfree.com/verification/",
  "https://storage.cashfree.com/vkyc/recordings/"
] as const

export const decodeFixture = (eventType: string): CashfreeEvent =>
  Schema.decodeUnknownSync(Schema.parseJson(CashfreeEvent))(fixture(eventType).text)

export const contextFor = (overrides: Partial<DeliveryContext> = {}): DeliveryContext => ({
  deliveryId: "dlv_test_1",
  eventId: "evt_test_1",
  instance: "under-test",
  attempt: 1,
  idempotencyKey: "kyc-relay:evt_test_1:under-test",
  params: {},
  lifecycle: { stale: false, current: null },
  ...overrides
})

/**
 * Builds an instance of `plugin` from raw (YAML-shaped) settings exactly as the host does, delivers one
 * event, and returns the outcome together with every log line written meanwhile (message and annotations).
 */
export const deliverOnce = (
  plugin: Plugin,
  rawSettings: unknown,
  event: CashfreeEvent,
  ctx: DeliveryContext = contextFor()
) =>
  Effect.gen(function*() {
    const lines: Array<string> = []
    const capture = Logger.make(({ annotations, message }) => {
      lines.push(JSON.stringify({ message, annotations: Object.fromEntries(HashMap.toEntries(annotations)) }))
    })
    const settings = yield* Schema.decodeUnknown(plugin.settings, { onExcessProperty: "error" })(rawSettings).pipe(Effect.orDie)
    const outcome = yield* Effect.gen(function*() {
      const instance = yield* plugin.make(settings, ctx.instance)
      return yield* Effect.either(instance.handle(event, ctx))
    }).pipe(
      Effect.scoped,
      Effect.provide(NodeHttpClient.layerUndici),
      Effect.provide(Logger.replace(Logger.defaultLogger, capture)),
      Effect.annotateLogs({ test: "conformance" })
    )
    return { outcome, logs: lines }
  })

/** The outcome as a short label: "done", "Retryable", "Permanent" or "RateLimited:<ms>". */
export const label = (outcome: Either.Either<unknown, PluginError>): string =>
  Either.match(outcome, {
    onRight: () => "done",
    onLeft: (error) =>
      error._tag === "RateLimited" ? `RateLimited:${Duration.toMillis(error.retryAfter)}` : error._tag
  })

/** Fails when any secret or personal value occurs in the texts (log lines, stored errors). */
export const assertClean = (texts: ReadonlyArray<string>, secrets: ReadonlyArray<string>) => {
  const all = texts.join("\n")
  for (const value of [...secrets, ...PERSONAL_VALUES]) {
    if (all.includes(value)) throw new Error(`"${value}" leaked into:\n${all}`)
  }
}
