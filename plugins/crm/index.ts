import { Clock, Effect, Option, Redacted, Schema } from "effect"
import { headerOf, httpCall } from "../../src/plugin/HttpCall.js"
import { classifyStatus } from "../../src/plugin/HttpOutcome.js"
import type { DeliveryReceipt, PluginError } from "../../src/plugin/Plugin.js"
import { definePlugin, Permanent, RateLimited, Retryable } from "../../src/plugin/Plugin.js"
import type { TemplateView } from "../../src/plugin/Template.js"
import { PERSONAL_FIELDS, PersonalFields, render, TemplateText, viewOf } from "../../src/plugin/Template.js"

/**
 * The scheme and host are written out, so no event value can redirect the call to another server; values
 * are only ever percent-encoded, so `{{{…}}}`, `{{&…}}` and delimiter changes are refused.
 */
const UrlTemplate = TemplateText.pipe(
  Schema.filter((text) => {
    if (!/^https?:\/\/[^/?#\s{}]+([/?#]|$)/.test(text)) {
      return "an http:// or https:// URL with the host written out (templates may follow the host, e.g. https://crm.example.com/contacts/{{data.user_id}})"
    }
    if (/\{\{\s*[{&=]/.test(text)) {
      return "URL values are always percent-encoded: use {{name}}, not {{{name}}}, {{&name}} or a delimiter change"
    }
    return true
  })
).annotations({ description: "URL template; {{values}} are percent-encoded" })

/** Set by the plugin (content-type, idempotency-key) or owned by HTTP framing. */
const RESERVED_HEADERS: ReadonlyArray<string> = [
  "content-type",
  "idempotency-key",
  "content-length",
  "transfer-encoding",
  "host",
  "connection"
]

// Header values usually carry credentials: kept Redacted, and a refusal never repeats the value.
const HeaderValue = Schema.Redacted(
  Schema.String.annotations({ message: () => "a header value (text)" }).pipe(
    Schema.filter((value) => !/[\r\n\0]/.test(value), { message: () => "a header value on one line" })
  )
)

const Headers = Schema.Record({ key: Schema.String, value: HeaderValue }).pipe(
  Schema.filter((headers) =>
    Object.keys(headers).flatMap((name) =>
      !/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name)
        ? [{ path: [name], message: "not an HTTP header name" }]
        : RESERVED_HEADERS.includes(name.toLowerCase())
        ? [{ path: [name], message: "set by the plugin (content-type, idempotency-key) or by HTTP; leave it out" }]
        : []
    )
  )
)

export const DEFAULT_BODY: Readonly<Record<string, string>> = {
  verification_id: "{{verification_id}}",
  status: "{{status}}",
  sub_status: "{{sub_status}}",
  event_type: "{{event_type}}",
  event_time: "{{event_time}}",
  stale: "{{stale}}"
}

const Settings = Schema.Struct({
  url: UrlTemplate,
  method: Schema.optionalWith(Schema.Literal("PUT", "POST", "PATCH"), { default: () => "PUT" as const, exact: true }),
  headers: Schema.optionalWith(Headers, { default: () => ({}), exact: true }),
  body: Schema.optionalWith(Schema.Record({ key: Schema.String, value: TemplateText }), { default: () => DEFAULT_BODY, exact: true }),
  personal_fields: Schema.optionalWith(PersonalFields, { default: () => [], exact: true }),
  skip_stale: Schema.optionalWith(Schema.Boolean, { default: () => true, exact: true })
})

/** Every setting, as it would be written in YAML. */
export const crmExample = {
  url: "https://crm.example.com/contacts/{{data.user_id}}",
  method: "PUT",
  headers: { authorization: "Bearer secret-crm-token" },
  body: {
    verification_id: "{{verification_id}}",
    kyc_status: "{{status}}",
    kyc_sub_status: "{{sub_status}}",
    last_event: "{{event_type}}",
    last_event_at: "{{event_time}}",
    summary: "{{event_type}} ({{status}}/{{sub_status}})"
  },
  personal_fields: [],
  skip_stale: true
} as const

/** A `{{name}}` (or `{{{name}}}`) with nothing around it: its value keeps its JSON type in the body. */
const SINGLE_TAG = /^\{\{\{?\s*([\w.-]+)\s*\}?\}\}$/

const lookup = (view: TemplateView, name: string): unknown =>
  name.split(".").reduce<unknown>(
    (value, key) => typeof value === "object" && value !== null ? (value as Record<string, unknown>)[key] : undefined,
    view
  )

const renderBody = (body: Readonly<Record<string, string>>, view: TemplateView): Record<string, unknown> =>
  Object.fromEntries(Object.entries(body).map(([field, template]) => {
    const single = SINGLE_TAG.exec(template)
    return [field, single === null ? render(template, view, "text") : lookup(view, single[1]!) ?? null]
  }))

/** The variables a URL template uses outside sections: each must have a value, or the call would hit the wrong resource. */
const urlVariables = (template: string): ReadonlyArray<string> => {
  const names: Array<string> = []
  let depth = 0
  for (const [, sigil, name] of template.matchAll(/\{\{([#^/!>]?)\s*([^}]*?)\s*\}\}/g)) {
    if (sigil === "#" || sigil === "^") depth++
    else if (sigil === "/") depth--
    else if (sigil === "" && depth === 0) names.push(name!)
  }
  return names
}

const withMethod = (method: string, error: PluginError): PluginError => {
  const message = `${method} ${error.message}`
  switch (error._tag) {
    case "RateLimited":
      return new RateLimited({ message, retryAfter: error.retryAfter })
    case "Retryable":
      return new Retryable({ message })
    case "Permanent":
      return new Permanent({ message })
  }
}

const receiptOf = (text: string): DeliveryReceipt => {
  try {
    const id = (JSON.parse(text) as { readonly id?: unknown } | null)?.id
    return typeof id === "string" && id !== "" || typeof id === "number" && Number.isFinite(id) ? { remoteId: String(id) } : {}
  } catch {
    return {}
  }
}

/**
 * Upserts one record per event in a REST CRM: `method` to the rendered `url` with a JSON body built from the
 * `body` field mapping, and `Idempotency-Key` stable across retries. 2xx and 409 (already applied) are done.
 */
export const CrmPlugin = definePlugin({
  name: "crm",
  settings: Settings,
  make: (settings, instance) =>
    Effect.gen(function*() {
      const headers = Object.fromEntries(Object.entries(settings.headers).map(([name, value]) => [name, Redacted.value(value)]))
      const required = urlVariables(settings.url)
      return {
        handle: (event, ctx) =>
          Effect.gen(function*() {
            // A late event describes an older state than the one the CRM already holds: upserting it would roll the
            // record back. It counts as delivered without a call (skip_stale: false sends it, with stale: true).
            if (settings.skip_stale && ctx.lifecycle.stale) {
              yield* Effect.logDebug("stale event not sent to the CRM").pipe(
                Effect.annotateLogs({ plugin: "crm", instance, event_id: ctx.eventId })
              )
              return {}
            }
            const view = viewOf(event, ctx, settings.personal_fields)
            const missing = required.find((name) => {
              const value = lookup(view, name)
              return value === undefined || value === null || value === ""
            })
            if (missing !== undefined) {
              const field = missing.replace(/^data\./, "")
              const personal = (PERSONAL_FIELDS as ReadonlyArray<string>).includes(field) &&
                !(settings.personal_fields as ReadonlyArray<string>).includes(field)
              return yield* new Permanent({
                message: `${settings.method}: the URL needs {{${missing}}}, which this event does not have` +
                  (personal ? ` (${field} is personal: list it in personal_fields)` : "")
              })
            }
            const response = yield* httpCall(settings.method, render(settings.url, view, "url"), {
              ...headers,
              "content-type": "application/json",
              "idempotency-key": ctx.idempotencyKey
            }, JSON.stringify(renderBody(settings.body, view)))
            // 409: the CRM already holds this change (the same Idempotency-Key, or the record as sent).
            if (response.status !== 409) {
              const failure = classifyStatus(response.status, headerOf(response, "retry-after"), yield* Clock.currentTimeMillis)
              if (Option.isSome(failure)) return yield* withMethod(settings.method, failure.value)
            }
            return response.complete ? receiptOf(response.text) : {}
          })
      }
    })
})

export const plugin = CrmPlugin
