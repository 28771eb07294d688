import { Duration, ParseResult, Schema } from "effect"
import { isIP } from "node:net"

export const DEFAULT_CONFIG_PATH = "config/kyc-relay.yaml"

const Port = Schema.Int.pipe(Schema.between(0, 65535, { message: () => "a port number from 1 to 65535 (0 lets the system choose)" }))

const WebhookPath = Schema.String.pipe(
  Schema.pattern(/^\/[A-Za-z0-9._~\-/]*$/),
  Schema.filter((path) => path !== "/healthz" && path !== "/readyz", {
    message: () => "a path other than /healthz and /readyz"
  })
).annotations({ identifier: "an absolute URL path such as /webhooks/cashfree" })

const Secret = Schema.Redacted(Schema.NonEmptyString).annotations({ identifier: "a non-empty client secret" })

export const StoreUrl = Schema.String.pipe(
  Schema.filter((url) => /^sqlite:.+/.test(url) || /^postgres(ql)?:\/\/.+/.test(url))
).annotations({ identifier: "sqlite:<file> or a postgres:// URL" })

const UNITS: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }

/** A duration written as `500ms`, `30s`, `5m`, `24h` or `7d`. */
export const DurationText = Schema.transformOrFail(Schema.String, Schema.DurationFromSelf, {
  strict: true,
  decode: (text, _, ast) => {
    const match = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)$/.exec(text.trim())
    return match === null
      ? ParseResult.fail(new ParseResult.Type(ast, text, "a duration such as 500ms, 30s, 5m, 24h or 7d"))
      : ParseResult.succeed(Duration.millis(Number(match[1]) * UNITS[match[2]!]!))
  },
  encode: (duration) => ParseResult.succeed(`${Duration.toMillis(duration)}ms`)
})

/** An IP address or a CIDR range, v4 or v6: `52.66.101.190`, `10.0.0.0/8`. */
export const AddressRange = Schema.String.pipe(
  Schema.filter((text) => {
    const [address, bits, extra] = text.split("/")
    const family = isIP(address ?? "")
    if (family === 0 || extra !== undefined) return false
    return bits === undefined || (/^\d+$/.test(bits) && Number(bits) <= (family === 4 ? 32 : 128))
  }, { message: () => "an IP address or CIDR range, e.g. 52.66.101.190 or 10.0.0.0/8" })
)

export const ServerSettings = Schema.Struct({
  host: Schema.optionalWith(Schema.NonEmptyString, { default: () => "127.0.0.1" }),
  port: Schema.optionalWith(Port, { default: () => 8080 }),
  path: Schema.optionalWith(WebhookPath, { default: () => "/webhooks/cashfree" }),
  max_body_bytes: Schema.optionalWith(Schema.Int.pipe(Schema.between(1024, 16 * 1024 * 1024)), {
    default: () => 256 * 1024
  }),
  /** When set, webhooks from any other source address are refused with 403 (on top of the signature check). */
  allowed_ips: Schema.optional(Schema.Array(AddressRange).pipe(Schema.minItems(1))),
  /** Proxies whose X-Forwarded-For is believed when finding the source address. */
  trusted_proxies: Schema.optionalWith(Schema.Array(AddressRange), { default: () => [] })
})

export const CashfreeSettings = Schema.Struct({
  /** Current secret first, then previous ones still being rotated out. */
  secrets: Schema.Array(Secret).pipe(Schema.minItems(1, { message: () => "at least one client secret" })),
  signature: Schema.optionalWith(Schema.Literal("auto", "header", "body"), { default: () => "header" as const }),
  /**
   * When set, a header-signed webhook whose x-webhook-timestamp is further than this from now is refused.
   * Off by default: Cashfree may retry with the original timestamp, and dedupe already stops replays.
   */
  timestamp_tolerance: Schema.optional(DurationText)
})

export const StoreSettings = Schema.Struct({
  url: Schema.optionalWith(StoreUrl, { default: () => "sqlite:data/kyc-relay.db" })
})

const retryFields = {
  max_attempts: Schema.Int.pipe(Schema.between(1, 1000)),
  initial_delay: DurationText,
  max_delay: DurationText,
  multiplier: Schema.Number.pipe(Schema.between(1, 100)),
  jitter: Schema.Number.pipe(Schema.between(0, 1)),
  max_age: DurationText
}

/** How the host retries a failed delivery: exponential backoff with jitter, bounded by attempts and by age. */
export const RetrySettings = Schema.Struct({
  max_attempts: Schema.optionalWith(retryFields.max_attempts, { default: () => 10 }),
  initial_delay: Schema.optionalWith(retryFields.initial_delay, { default: () => Duration.seconds(1) }),
  max_delay: Schema.optionalWith(retryFields.max_delay, { default: () => Duration.minutes(10) }),
  multiplier: Schema.optionalWith(retryFields.multiplier, { default: () => 2 }),
  jitter: Schema.optionalWith(retryFields.jitter, { default: () => 0.2 }),
  max_age: Schema.optionalWith(retryFields.max_age, { default: () => Duration.hours(24) })
})
export type RetrySettings = typeof RetrySettings.Type

/** A route's `retry:` block: any subset of the defaults. */
export const RetryOverrides = Schema.partialWith(Schema.Struct(retryFields), { exact: true })
export type RetryOverrides = typeof RetryOverrides.Type

const OneOrMany = Schema.Union(Schema.NonEmptyString, Schema.Array(Schema.NonEmptyString).pipe(Schema.minItems(1)))

const EventTypePattern = Schema.String.pipe(
  Schema.pattern(/^[A-Z0-9_*?]+$/, {
    message: () => "an event type or a glob of capitals, digits, _, * and ? (e.g. VKYC_*)"
  })
)

const Scalar = Schema.Union(Schema.String, Schema.Number, Schema.Boolean, Schema.Null)

/** Equality with a value, or membership in a list (`{ in: [...] }`). */
export const FieldMatcher = Schema.Union(Scalar, Schema.Struct({ in: Schema.Array(Scalar) }))
export type FieldMatcher = typeof FieldMatcher.Type

export const Match = Schema.Struct({
  event_type: Schema.optional(Schema.Union(EventTypePattern, Schema.Array(EventTypePattern).pipe(Schema.minItems(1)))),
  status: Schema.optional(OneOrMany),
  sub_status: Schema.optional(OneOrMany),
  /** Dotted paths inside `data`, e.g. `verification_details.0.status`. */
  data: Schema.optional(Schema.Record({ key: Schema.String, value: FieldMatcher }))
})
export type Match = typeof Match.Type

export const Route = Schema.Struct({
  name: Schema.optional(Schema.NonEmptyString),
  match: Schema.optionalWith(Match, { default: () => ({}) }),
  to: OneOrMany,
  /** false: an event this route matches is not offered to the routes after it. */
  continue: Schema.optionalWith(Schema.Boolean, { default: () => true }),
  /** true: no delivery for an event older than the verification's known state. */
  skip_stale: Schema.optionalWith(Schema.Boolean, { default: () => false }),
  retry: Schema.optional(RetryOverrides),
  params: Schema.optionalWith(Schema.Record({ key: Schema.String, value: Schema.Unknown }), { default: () => ({}) })
})
export type Route = typeof Route.Type

const InstanceName = Schema.String.pipe(
  Schema.pattern(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/, { message: () => "a name of letters, digits, ., _ and -" })
)

/** The host's part of a plugin instance; every other key belongs to the plugin and is checked by its Schema. */
export const InstanceHostSettings = Schema.Struct({
  use: Schema.NonEmptyString,
  concurrency: Schema.optionalWith(Schema.Int.pipe(Schema.between(1, 256)), { default: () => 4 }),
  timeout: Schema.optionalWith(DurationText, { default: () => Duration.seconds(30) })
})
export const HOST_KEYS = ["use", "concurrency", "timeout"] as const

export const DispatchSettings = Schema.Struct({
  /** How often idle workers look for due deliveries written by other instances. */
  poll_interval: Schema.optionalWith(DurationText, { default: () => Duration.seconds(1) }),
  /** A claimed delivery whose worker has not finished within this is taken over by another worker. */
  lease: Schema.optionalWith(DurationText, { default: () => Duration.minutes(2) }),
  /** How long a stopping server waits for deliveries in flight. */
  shutdown_grace: Schema.optionalWith(DurationText, { default: () => Duration.seconds(10) })
})

/** The whole `kyc-relay.yaml`. Unknown keys are refused so a typo never silently falls back to a default. */
export const RelayConfig = Schema.Struct({
  server: Schema.optionalWith(ServerSettings, { default: () => ServerSettings.make({}) }),
  cashfree: CashfreeSettings,
  store: Schema.optionalWith(StoreSettings, { default: () => StoreSettings.make({}) }),
  plugins: Schema.optionalWith(
    Schema.Record({ key: InstanceName, value: Schema.Record({ key: Schema.String, value: Schema.Unknown }) }),
    { default: () => ({}) }
  ),
  routes: Schema.optionalWith(Schema.Array(Route), { default: () => [] }),
  retry: Schema.optionalWith(RetrySettings, { default: () => RetrySettings.make({}) }),
  dispatch: Schema.optionalWith(DispatchSettings, { default: () => DispatchSettings.make({}) })
})
export type RelayConfig = typeof RelayConfig.Type
