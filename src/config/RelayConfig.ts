import { Schema } from "effect"

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

export const ServerSettings = Schema.Struct({
  host: Schema.optionalWith(Schema.NonEmptyString, { default: () => "127.0.0.1" }),
  port: Schema.optionalWith(Port, { default: () => 8080 }),
  path: Schema.optionalWith(WebhookPath, { default: () => "/webhooks/cashfree" }),
  max_body_bytes: Schema.optionalWith(Schema.Int.pipe(Schema.between(1024, 16 * 1024 * 1024)), {
    default: () => 256 * 1024
  })
})

export const CashfreeSettings = Schema.Struct({
  /** Current secret first, then previous ones still being rotated out. */
  secrets: Schema.Array(Secret).pipe(Schema.minItems(1, { message: () => "at least one client secret" })),
  signature: Schema.optionalWith(Schema.Literal("auto", "header", "body"), { default: () => "auto" as const })
})

export const StoreSettings = Schema.Struct({
  url: Schema.optionalWith(StoreUrl, { default: () => "sqlite:data/kyc-relay.db" })
})

/** The whole `kyc-relay.yaml`. Unknown keys are refused so a typo never silently falls back to a default. */
export const RelayConfig = Schema.Struct({
  server: Schema.optionalWith(ServerSettings, { default: () => ServerSettings.make({}) }),
  cashfree: CashfreeSettings,
  store: Schema.optionalWith(StoreSettings, { default: () => StoreSettings.make({}) })
})
export type RelayConfig = typeof RelayConfig.Type
