import { Effect, ParseResult, Redacted, Schema } from "effect"
import Mustache from "mustache"
import type { NodemailerError } from "nodemailer"
import addressparser from "nodemailer/lib/addressparser"
import type { CashfreeEvent } from "../../src/domain/Event.js"
import { definePlugin, Permanent, Retryable } from "../../src/plugin/Plugin.js"
import {
  PERSONAL_FIELDS,
  PersonalFields,
  render,
  TemplateText,
  type TemplateView,
  viewOf
} from "../../src/plugin/Template.js"

interface SmtpEndpoint {
  readonly host: string
  readonly port?: number
  readonly secure: boolean
  readonly user?: string
  readonly password?: string
}

/** `smtp://` or `smtps://`, optional `user:password@` (percent-encoded), host, optional port; nothing else. */
const parseSmtpUrl = (text: string): SmtpEndpoint | undefined => {
  let url: URL
  try {
    url = new URL(text)
  } catch {
    return undefined
  }
  if (url.protocol !== "smtp:" && url.protocol !== "smtps:") return undefined
  if (url.hostname === "" || (url.pathname !== "" && url.pathname !== "/") || url.search !== "" || url.hash !== "") {
    return undefined
  }
  try {
    return {
      host: url.hostname.replace(/^\[(.*)\]$/, "$1"),
      ...(url.port === "" ? {} : { port: Number(url.port) }),
      secure: url.protocol === "smtps:",
      ...(url.username === "" ? {} : { user: decodeURIComponent(url.username) }),
      ...(url.password === "" ? {} : { password: decodeURIComponent(url.password) })
    }
  } catch {
    return undefined
  }
}

const SmtpUrl = Schema.Redacted(
  Schema.String.pipe(Schema.filter((text) => parseSmtpUrl(text) !== undefined, {
    message: () => "an smtp:// or smtps:// URL such as smtp://user:password@smtp.example.com:587, without path or query"
  }))
)

const Port = Schema.Int.pipe(Schema.between(1, 65535, { message: () => "a port number from 1 to 65535" }))

const MAILBOX = /^[^\s@]+@[^\s@]+$/

/** One mailbox, bare or with a display name: `kyc@example.com`, `KYC team <kyc@example.com>`. */
const Sender = Schema.String.pipe(
  Schema.filter((text) => {
    const parsed = addressparser(text, { flatten: true })
    return parsed.length === 1 && MAILBOX.test(parsed[0]!.address)
  }, { message: () => "one email address, e.g. kyc@example.com or \"KYC team <kyc@example.com>\"" })
)

const UNITS: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000 }

/** Milliseconds, written like the host's durations: `500ms`, `10s`, `1m`. */
const Timeout = Schema.transformOrFail(Schema.String, Schema.Number, {
  strict: true,
  decode: (text, _, ast) => {
    const match = /^(\d+(?:\.\d+)?)\s*(ms|s|m)$/.exec(text.trim())
    const ms = match === null ? NaN : Number(match[1]) * UNITS[match[2]!]!
    return ms >= 1 && ms <= 600_000
      ? ParseResult.succeed(ms)
      : ParseResult.fail(new ParseResult.Type(ast, text, "a duration from 1ms to 10m, such as 500ms, 10s or 1m"))
  },
  encode: (ms) => ParseResult.succeed(`${ms}ms`)
})

type Spans = ReturnType<typeof Mustache.parse>

const PERSONAL: ReadonlySet<string> = new Set(PERSONAL_FIELDS)

/**
 * The personal fields of `data` a template reads: `{{data.email}}`, `{{#data.email}}`, or `{{email}}` inside a
 * `{{#data}}` section (where Mustache finds it by walking up the context stack).
 */
const personalFieldsIn = (spans: Spans, inData: boolean): ReadonlyArray<string> =>
  spans.flatMap((span) => {
    const [type, name] = span
    if (type !== "name" && type !== "&" && type !== "#" && type !== "^") return []
    const path = name.split(".")
    const field = path[0] === "data" ? path[1] : inData ? path[0] : undefined
    const own = field !== undefined && PERSONAL.has(field) ? [field] : []
    const children = Array.isArray(span[4]) ? personalFieldsIn(span[4], inData || (type === "#" && name === "data")) : []
    return [...own, ...children]
  })

const TEMPLATE_KEYS = ["to", "subject", "text", "html"] as const
const ENDPOINT_KEYS = ["host", "port", "secure", "user", "password"] as const

const Fields = Schema.Struct({
  /** The whole endpoint in one secret: `smtp://user:password@host:587` (STARTTLS when offered) or `smtps://…:465`. */
  smtp_url: Schema.optional(SmtpUrl),
  host: Schema.optional(Schema.NonEmptyString),
  /** Default 587, or 465 with `secure: true`. */
  port: Schema.optional(Port),
  /** true: TLS from the first byte (usually port 465); false: plain, upgraded with STARTTLS when the server offers it. */
  secure: Schema.optional(Schema.Boolean),
  user: Schema.optional(Schema.NonEmptyString),
  password: Schema.optional(Schema.Redacted(Schema.NonEmptyString)),
  /** Refuse to send unless the connection is encrypted (TLS or STARTTLS). */
  require_tls: Schema.optionalWith(Schema.Boolean, { default: () => false }),
  /** Limit for connecting, the greeting, and each SMTP reply. */
  smtp_timeout: Schema.optionalWith(Timeout, { default: () => 10_000 }),
  from: Sender,
  /** Comma-separated recipients; a template, e.g. `{{data.email}}` (needs `email` in personal_fields). */
  to: TemplateText,
  subject: Schema.optional(TemplateText),
  text: Schema.optional(TemplateText),
  html: Schema.optional(TemplateText),
  personal_fields: Schema.optionalWith(PersonalFields, { default: () => [] })
})

const Settings = Fields.pipe(
  Schema.filter((settings) => {
    const issues: Array<Schema.FilterIssue> = []
    if (settings.smtp_url !== undefined) {
      for (const key of ENDPOINT_KEYS) {
        if (settings[key] !== undefined) {
          issues.push({ path: [key], message: `${key} cannot be combined with smtp_url: put it in the URL, or drop smtp_url` })
        }
      }
    } else if (settings.host === undefined) {
      issues.push({ path: [], message: "give smtp_url, or host (with port, secure, user and password as needed)" })
    } else if ((settings.user === undefined) !== (settings.password === undefined)) {
      const missing = settings.user === undefined ? "user" : "password"
      issues.push({ path: [missing], message: "user and password go together: give both, or neither" })
    }
    for (const key of TEMPLATE_KEYS) {
      const template = settings[key]
      if (template === undefined) continue
      const used = [...new Set(personalFieldsIn(Mustache.parse(template), false))]
      const missing = used.filter((field) => !(settings.personal_fields as ReadonlyArray<string>).includes(field))
      if (missing.length > 0) {
        issues.push({
          path: [key],
          message: `reads ${missing.map((field) => `data.${field}`).join(", ")}, personal data this instance has not opted into: ` +
            `add ${missing.join(", ")} to personal_fields`
        })
      }
    }
    return issues
  })
)
type Settings = typeof Settings.Type

interface Templates {
  readonly subject: string
  readonly text: string
  readonly html: string
}

const FOOTER_TEXT = "\n\n--\nSent by kyc-relay for event {{event_id}}.\n"
const FOOTER_HTML = "<p style=\"color:#666;font-size:small\">Sent by kyc-relay for event {{event_id}}.</p>\n"

/** Defaults carry ids and statuses only, never a personal field, so they are safe whatever `personal_fields` says. */
const DEFAULTS: Partial<Record<CashfreeEvent["event_type"], Templates>> = {
  // KYC links carry the customer's address: written to the customer.
  KYC_LINK_EXPIRED: {
    subject: "Your verification link has expired",
    text: "Hello,\n\n" +
      "The link to complete your identity verification has expired{{#data.link_expiry}} (it was valid until " +
      "{{data.link_expiry}}){{/data.link_expiry}}, so the verification could not be finished.\n\n" +
      "Please get in touch with us and we will send you a new link.\n\n" +
      "Verification: {{verification_id}}\nReference: {{data.reference_id}}\nStatus: {{status}}" + FOOTER_TEXT,
    html: "<p>Hello,</p>\n" +
      "<p>The link to complete your identity verification has expired{{#data.link_expiry}} (it was valid until " +
      "{{data.link_expiry}}){{/data.link_expiry}}, so the verification could not be finished.</p>\n" +
      "<p>Please get in touch with us and we will send you a new link.</p>\n" +
      "<p>Verification: {{verification_id}}<br>\nReference: {{data.reference_id}}<br>\nStatus: {{status}}</p>\n" + FOOTER_HTML
  },
  // VKYC events carry no address: written to the team that follows the verification up.
  VKYC_USER_LINK_EXPIRED: {
    subject: "Video KYC link expired: {{verification_id}}",
    text: "The video KYC link for verification {{verification_id}} expired{{#data.link_expiry}} on " +
      "{{data.link_expiry}}{{/data.link_expiry}} before the customer completed the call.\n\n" +
      "Verification: {{verification_id}}\nReference: {{data.reference_id}}\n" +
      "{{#data.user_id}}User id: {{data.user_id}}\n{{/data.user_id}}" +
      "Status: {{status}} / {{sub_status}}\nEvent time: {{event_time}}" + FOOTER_TEXT,
    html: "<p>The video KYC link for verification {{verification_id}} expired{{#data.link_expiry}} on " +
      "{{data.link_expiry}}{{/data.link_expiry}} before the customer completed the call.</p>\n" +
      "<p>Verification: {{verification_id}}<br>\nReference: {{data.reference_id}}<br>\n" +
      "{{#data.user_id}}User id: {{data.user_id}}<br>\n{{/data.user_id}}" +
      "Status: {{status}} / {{sub_status}}<br>\nEvent time: {{event_time}}</p>\n" + FOOTER_HTML
  }
}

const GENERIC: Templates = {
  subject: "{{event_type}}: {{verification_id}} is {{status}}",
  text: "{{event_type}} at {{event_time}}\n\n" +
    "Verification: {{verification_id}}\nReference: {{data.reference_id}}\n" +
    "Status: {{status}}{{#sub_status}} / {{sub_status}}{{/sub_status}}\n" +
    "{{#stale}}This event is older than the latest known state of the verification.\n{{/stale}}" + FOOTER_TEXT.slice(1),
  html: "<p>{{event_type}} at {{event_time}}</p>\n" +
    "<p>Verification: {{verification_id}}<br>\nReference: {{data.reference_id}}<br>\n" +
    "Status: {{status}}{{#sub_status}} / {{sub_status}}{{/sub_status}}</p>\n" +
    "{{#stale}}<p>This event is older than the latest known state of the verification.</p>\n{{/stale}}" + FOOTER_HTML
}

// Event data comes from outside (the merchant's link request, the customer's form): a value holding list
// syntax (comma, brackets, spaces…) would add recipients of someone else's choosing, so it is left out of `to`.
const LIST_SYNTAX = /[\s,;:<>()"\\[\]]/

const recipientView = (view: TemplateView): TemplateView => ({
  ...view,
  data: Object.fromEntries(
    Object.entries(view.data).filter(([, value]) => typeof value !== "string" || !LIST_SYNTAX.test(value))
  )
})

const recipientsOf = (rendered: string) => {
  const parsed = addressparser(rendered, { flatten: true }).filter((entry) => entry.address !== "" || entry.name !== "")
  if (parsed.length === 0) return Effect.fail(new Permanent({ message: "the event carries no email address for `to`" }))
  if (!parsed.every((entry) => MAILBOX.test(entry.address))) {
    return Effect.fail(new Permanent({ message: "`to` does not render to a list of email addresses" }))
  }
  return Effect.succeed(parsed)
}

/** The SMTP command that failed; nodemailer's own steps (CONN, API) mean nothing to an operator. */
const stepOf = (error: NodemailerError) =>
  error.command === undefined || error.command === "CONN" || error.command === "API" ? "" : ` at ${error.command}`

/** The server's reply without addresses (a rejection often quotes the recipient), shortened. */
const replyText = (error: NodemailerError): string => {
  const line = (error.response ?? "").split(/\r?\n/)[0]!
  const enhanced = /^\d{3}[ -](\d\.\d{1,3}\.\d{1,3})\b/.exec(line)?.[1]
  const reason = line
    .replace(/^\d{3}[ -](\d\.\d{1,3}\.\d{1,3}\b)?/, "")
    .replace(/<[^>]*>/g, "")
    .split(/\s+/)
    .filter((word) => word !== "" && !word.includes("@"))
    .join(" ")
    .replace(/^[\s:,.;-]+/, "")
  const short = reason.length > 100 ? `${reason.slice(0, 99)}…` : reason
  return `SMTP ${error.responseCode}${enhanced === undefined ? "" : ` ${enhanced}`}${stepOf(error)}${short === "" ? "" : `: ${short}`}`
}

// Failures that carry no SMTP reply and that a later attempt would meet again.
const SETUP_CODES: ReadonlySet<string> = new Set([
  "EAUTH",
  "ENOAUTH",
  "EOAUTH2",
  "ECONFIG",
  "EENVELOPE",
  "EMESSAGE",
  "EREQUIRETLS",
  "EMAXRECIPIENTS"
])

/**
 * 4xx replies and connection trouble may pass; 5xx replies are final (RFC 5321). The message holds the codes and
 * the server's reason stripped of addresses, never nodemailer's own message, which can quote recipients.
 */
export const classify = (cause: unknown): Retryable | Permanent => {
  const error = (typeof cause === "object" && cause !== null ? cause : {}) as NodemailerError
  const reply = error.responseCode
  if (typeof reply === "number" && reply >= 400 && reply < 600) {
    const message = replyText(error)
    return reply < 500 ? new Retryable({ message }) : new Permanent({ message })
  }
  const code = typeof error.code === "string" ? error.code : "unknown error"
  const detail = [error.originalCode, error.timeoutType].filter((part) => part !== undefined)
  const what = `${code}${detail.length === 0 ? "" : ` (${detail.join(", ")})`}`
  return SETUP_CODES.has(code)
    ? new Permanent({ message: `SMTP ${what}${stepOf(error)}` })
    : new Retryable({ message: `SMTP connection failed: ${what}` })
}

const endpointOf = (settings: Settings): SmtpEndpoint =>
  settings.smtp_url !== undefined
    ? parseSmtpUrl(Redacted.value(settings.smtp_url))!
    : {
      host: settings.host!,
      ...(settings.port === undefined ? {} : { port: settings.port }),
      ...(settings.user === undefined ? {} : { user: settings.user }),
      ...(settings.password === undefined ? {} : { password: Redacted.value(settings.password) }),
      secure: settings.secure ?? settings.port === 465
    }

/** The domain of the sender, for Message-IDs. */
const domainOf = (from: string) => addressparser(from, { flatten: true })[0]?.address.split("@")[1] ?? "kyc-relay.invalid"

/**
 * Sends one email per event over SMTP (nodemailer), rendered from Mustache templates. `to` is a template, so a
 * KYC link event can go to the customer (`{{data.email}}`, with `email` in `personal_fields`) and a VKYC event
 * to a fixed team address. The Message-ID is the same on every retry and replay, so a mail client can drop a
 * copy sent again after an answer was lost.
 */
export const EmailPlugin = definePlugin({
  name: "email",
  settings: Settings,
  make: (settings, instance) =>
    Effect.gen(function*() {
      const endpoint = endpointOf(settings)
      // nodemailer is loaded only once an email instance is configured (the settings need only addressparser).
      const [{ createTransport }, { default: SMTPTransport }] = yield* Effect.promise(() =>
        Promise.all([import("nodemailer"), import("nodemailer/lib/smtp-transport")])
      )
      // One connection per message, no pool: a pool queues and resends on its own, out of the host's sight.
      const transport = yield* Effect.acquireRelease(
        Effect.sync(() =>
          createTransport(
            new SMTPTransport({
              host: endpoint.host,
              port: endpoint.port,
              secure: endpoint.secure,
              auth: endpoint.user === undefined ? undefined : { user: endpoint.user, pass: endpoint.password },
              requireTLS: settings.require_tls,
              connectionTimeout: settings.smtp_timeout,
              greetingTimeout: settings.smtp_timeout,
              socketTimeout: settings.smtp_timeout,
              dnsTimeout: settings.smtp_timeout,
              logger: false,
              debug: false
            })
          )
        ),
        (transport) => Effect.sync(() => transport.close())
      )
      const messageDomain = domainOf(settings.from)
      const custom = settings.text !== undefined || settings.html !== undefined

      return {
        handle: (event, ctx) =>
          Effect.gen(function*() {
            const view = viewOf(event, ctx, settings.personal_fields)
            const to = yield* recipientsOf(render(settings.to, recipientView(view), "text"))
            const defaults = DEFAULTS[event.event_type] ?? GENERIC
            const text = custom ? settings.text : defaults.text
            const html = custom ? settings.html : defaults.html
            const messageId = `<${ctx.eventId}.${instance.replace(/[^A-Za-z0-9_-]+/g, "-")}@${messageDomain}>`
            const info = yield* Effect.tryPromise({
              try: (signal) =>
                transport.sendMail({
                  from: settings.from,
                  to: [...to],
                  subject: render(settings.subject ?? defaults.subject, view, "text"),
                  text: text === undefined ? undefined : render(text, view, "text"),
                  html: html === undefined ? undefined : render(html, view, "html"),
                  messageId,
                  headers: { "Auto-Submitted": "auto-generated", "X-Kyc-Relay-Event-Id": ctx.eventId },
                  signal
                }),
              catch: classify
            })
            if (info.rejected.length > 0) {
              const codes = (info.rejectedErrors ?? []).map((error) => error.responseCode ?? "?").join(", ")
              yield* Effect.logWarning(`${info.rejected.length} of ${to.length} recipients refused (SMTP ${codes})`).pipe(
                Effect.annotateLogs({ plugin: "email", instance, event_id: ctx.eventId })
              )
            }
            return { remoteId: info.messageId }
          })
      }
    })
})

/** Complete settings as they would be written in YAML; loopback, so a run of the conformance suite stays local. */
export const emailExample = {
  host: "127.0.0.1",
  port: 2525,
  secure: false,
  user: "kyc-relay",
  password: "example-password",
  require_tls: false,
  smtp_timeout: "10s",
  from: "KYC team <kyc@example.com>",
  to: "{{data.email}}",
  subject: "Your verification link has expired",
  text: "Your verification link has expired. Reference: {{data.reference_id}}",
  html: "<p>Your verification link has expired. Reference: {{data.reference_id}}</p>",
  personal_fields: ["email"]
}

export const plugin = EmailPlugin
