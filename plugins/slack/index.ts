import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import type { FetchFunction, Logger } from "@slack/web-api"
import { Clock, Effect, Option, Redacted, Schema } from "effect"
import type { CashfreeEvent } from "../../src/domain/Event.js"
import { definePlugin, Permanent, Retryable, type DeliveryReceipt, type PluginError } from "../../src/plugin/Plugin.js"
import { PersonalFields, TemplateText } from "../../src/plugin/Template.js"
import { buildMessage, DEFAULT_TEXT, DEFAULT_TITLE, type SlackMessage } from "./Message.js"
import { classifyApiError, classifyWebhookAnswer, retryAfterSeconds } from "./Outcome.js"

/** Backstop for the client; the host's own `timeout:` (default 30 s) interrupts the call, and so aborts it, first. */
const CLIENT_TIMEOUT_MS = 30_000

const HttpUrl = Schema.String.pipe(
  Schema.pattern(/^https?:\/\/\S+$/, { message: () => "an http:// or https:// URL" })
)

const Channel = Schema.String.pipe(
  Schema.pattern(/^\S+$/, { message: () => "a channel ID such as C0123ABCDEF, or a name such as #kyc-ops" })
)

const Mention = Schema.String.pipe(
  Schema.pattern(/^<[@!][^<>]+>(\s*<[@!][^<>]+>)*$/, {
    message: () => "Slack mention syntax, such as <!subteam^S0123ABC>, <@U0123ABC> or <!here>"
  })
)

const Decision = Schema.Struct({
  channel: Schema.optional(Channel),
  mention: Schema.optional(Mention)
})

/** Per outcome of the auditor's review: where it goes and whom it notifies. Unknown keys are refused. */
const Decisions = Schema.Struct({
  AUDITOR_APPROVED: Schema.optional(Decision),
  AUDITOR_REJECTED: Schema.optional(Decision)
})
type Decisions = typeof Decisions.Type
type DecisionKey = keyof Decisions

const DECISION_KEYS: ReadonlyArray<DecisionKey> = ["AUDITOR_APPROVED", "AUDITOR_REJECTED"]

const Settings = Schema.Struct({
  /** Bot token (`xoxb-…`), written `"${SLACK_BOT_TOKEN}"` in YAML. */
  token: Schema.optional(Schema.Redacted(Schema.NonEmptyString)),
  channel: Schema.optional(Channel),
  /** A Slack-compatible Web API base, e.g. a gateway; default https://slack.com/api/. */
  api_url: Schema.optional(HttpUrl),
  /** Instead of token and channel: an incoming webhook URL (it is a secret, and fixes the channel). */
  incoming_webhook: Schema.optional(Schema.Redacted(HttpUrl)),
  title: Schema.optionalWith(TemplateText, { default: () => DEFAULT_TITLE }),
  text: Schema.optionalWith(TemplateText, { default: () => DEFAULT_TEXT }),
  personal_fields: Schema.optionalWith(PersonalFields, { default: () => [] }),
  decisions: Schema.optionalWith(Decisions, { default: () => ({}) })
}).pipe(
  Schema.filter((settings) => {
    if (settings.incoming_webhook === undefined) {
      return [
        ...(settings.token === undefined
          ? [{ path: ["token"], message: "required: a bot token such as \"${SLACK_BOT_TOKEN}\" (or give incoming_webhook)" }]
          : []),
        ...(settings.channel === undefined ? [{ path: ["channel"], message: "required: the channel to post to" }] : [])
      ]
    }
    return [
      ...(["token", "channel", "api_url"] as const).flatMap((key) =>
        settings[key] === undefined
          ? []
          : [{ path: [key], message: "not used with incoming_webhook, which fixes the workspace and channel" }]
      ),
      ...DECISION_KEYS.flatMap((key) =>
        settings.decisions[key]?.channel === undefined
          ? []
          : [{
            path: ["decisions", key, "channel"],
            message: "an incoming webhook posts to its own channel only; give token and channel instead"
          }]
      )
    ]
  })
)

/** A complete, valid settings block (as written in YAML) for documentation and the conformance suite. */
export const slackExample = {
  token: "xoxb-0000000000-0000000000000-examplexampleexample",
  channel: "C0KYCOPS01",
  api_url: "https://slack.com/api/",
  title: DEFAULT_TITLE,
  text: DEFAULT_TEXT,
  personal_fields: [],
  decisions: {
    AUDITOR_APPROVED: { channel: "C0KYCDONE1" },
    AUDITOR_REJECTED: { channel: "C0KYCRISK1", mention: "<!subteam^S0KYCRISK>" }
  }
} satisfies typeof Settings.Encoded

const quietLogger = (level: ReturnType<Logger["getLevel"]>): Logger => ({
  debug: () => {},
  info: () => {},
  warn: () => {},
  error: () => {},
  setLevel: () => {},
  getLevel: () => level,
  setName: () => {}
})

/**
 * The fetch the Slack client uses for one call: aborted when the host interrupts the call (its timeout, a
 * shutdown), so a message is not posted after the host has given up on it; and every 429 carries Retry-After in
 * seconds, so the client always raises its rate-limit error with the wait.
 */
const fetchFor = (interrupt: AbortSignal, now: number): FetchFunction => async (url, init) => {
  const response = await fetch(url, {
    ...init,
    signal: init?.signal === undefined ? interrupt : AbortSignal.any([init.signal, interrupt])
  })
  const seconds = response.status === 429 ? retryAfterSeconds(response.headers.get("retry-after"), now) : undefined
  if (seconds === undefined) return response
  const headers = new Headers(response.headers)
  headers.set("retry-after", seconds)
  return new Response(response.body, { status: response.status, statusText: response.statusText, headers })
}

const decisionFor = (event: CashfreeEvent, decisions: Decisions) => {
  if (event.event_type !== "VKYC_AUDITOR_REVIEW_COMPLETED") return undefined
  const key = DECISION_KEYS.find((candidate) => candidate === event.data.sub_status)
  return key === undefined ? undefined : decisions[key]
}

/**
 * Posts each event to Slack as a Block Kit message with a plain-text fallback, through the Web API
 * (`chat.postMessage` with a bot token) or an incoming webhook. No personal data unless `personal_fields` opts in;
 * event values are escaped for mrkdwn. The client's own retries are off: failures are classified for the host.
 */
export const SlackPlugin = definePlugin({
  name: "slack",
  settings: Settings,
  make: (settings) =>
    Effect.gen(function*() {
      const http = yield* HttpClient.HttpClient
      // Loaded only when a Slack instance is configured.
      const { LogLevel, WebClient } = yield* Effect.promise(() => import("@slack/web-api"))
      const logger = quietLogger(LogLevel.ERROR)
      const viaWebApi = (token: string, channel: string, message: SlackMessage) =>
        Effect.gen(function*() {
          const now = yield* Clock.currentTimeMillis
          const result = yield* Effect.tryPromise({
            try: (signal) =>
              new WebClient(token, {
                ...(settings.api_url === undefined ? {} : { slackApiUrl: settings.api_url }),
                retryConfig: { retries: 0 },
                rejectRateLimitedCalls: true,
                timeout: CLIENT_TIMEOUT_MS,
                logger,
                fetch: fetchFor(signal, now)
              }).chat.postMessage({
                channel,
                text: message.text,
                blocks: [...message.blocks],
                unfurl_links: false,
                unfurl_media: false
              }),
            catch: (error) => classifyApiError(error, now)
          })
          return result.ts === undefined ? {} : { remoteId: result.ts }
        })

      const viaWebhook = (url: string, message: SlackMessage) =>
        Effect.gen(function*() {
          const request = HttpClientRequest.post(url).pipe(
            HttpClientRequest.bodyUnsafeJson({
              text: message.text,
              blocks: message.blocks,
              unfurl_links: false,
              unfurl_media: false
            })
          )
          const response = yield* http.execute(request).pipe(
            Effect.mapError((error) => new Retryable({ message: `Slack not reached: ${error.reason}` }))
          )
          const body = yield* response.text.pipe(Effect.orElseSucceed(() => ""))
          const now = yield* Clock.currentTimeMillis
          const failure = classifyWebhookAnswer(response.status, response.headers["retry-after"], body, now)
          if (Option.isSome(failure)) return yield* failure.value
          return {}
        }).pipe(Effect.scoped)

      return {
        handle: (event, ctx): Effect.Effect<DeliveryReceipt, PluginError> => {
          const decision = decisionFor(event, settings.decisions)
          const message = buildMessage(event, ctx, {
            title: settings.title,
            text: settings.text,
            personalFields: settings.personal_fields,
            mention: decision?.mention
          })
          if (settings.incoming_webhook !== undefined) {
            return viaWebhook(Redacted.value(settings.incoming_webhook), message)
          }
          const channel = decision?.channel ?? settings.channel
          // The settings filter already refuses this; kept so the types need no assertions.
          if (settings.token === undefined || channel === undefined) {
            return Effect.fail(new Permanent({ message: "token and channel are required" }))
          }
          return viaWebApi(Redacted.value(settings.token), channel, message)
        }
      }
    })
})

/** Lets `use: ./plugins/slack/index.ts` load it until it is registered as a built-in. */
export const plugin = SlackPlugin
