import type { CashfreeEvent } from "../../src/domain/Event.js"
import type { DeliveryContext } from "../../src/plugin/Plugin.js"
import { escapers, render, viewOf, type PersonalField, type TemplateView } from "../../src/plugin/Template.js"

/** Bold first line of the message. */
export const DEFAULT_TITLE = "{{event_type}} · {{verification_id}}"

/** Notification and plain-text fallback: ids, statuses, the auditor's remark. No personal data. */
export const DEFAULT_TEXT = "{{event_type}} for {{verification_id}}: {{status}}{{#sub_status}} / {{sub_status}}{{/sub_status}}" +
  "{{#stale}} (stale){{/stale}}{{#data.auditor_remarks}}. Auditor: {{data.auditor_remarks}}{{/data.auditor_remarks}}"

export interface Mrkdwn {
  readonly type: "mrkdwn"
  readonly text: string
}

// Inner arrays stay mutable: the payload is handed to @slack/web-api, whose Block Kit types use plain arrays.
export type Block =
  | { readonly type: "section"; readonly text: Mrkdwn }
  | { readonly type: "section"; readonly fields: Array<Mrkdwn> }
  | { readonly type: "context"; readonly elements: Array<Mrkdwn> }

export interface SlackMessage {
  /** Notification text and fallback for clients that cannot show blocks. */
  readonly text: string
  readonly blocks: ReadonlyArray<Block>
}

export interface MessageOptions {
  readonly title: string
  readonly text: string
  readonly personalFields: ReadonlyArray<PersonalField>
  /** Slack mention syntax written by the operator (`<!subteam^S123>`): sent as is, never escaped. */
  readonly mention: string | undefined
}

const PERSONAL_LABELS: Readonly<Record<PersonalField, string>> = {
  name: "Name",
  phone: "Phone",
  email: "Email",
  vkyc_link: "VKYC link",
  recording_link: "Recording",
  form_link: "Form"
}

const slack = escapers.slack

/** Cuts escaped mrkdwn to Slack's length limits without leaving half an entity (`&am`) behind. */
const clip = (text: string, max: number) =>
  text.length <= max ? text : `${text.slice(0, max - 1).replace(/&[a-z]*$/, "")}…`

const mrkdwn = (text: string): Mrkdwn => ({ type: "mrkdwn", text })

const field = (label: string, value: string) => mrkdwn(`*${label}*\n${clip(slack(value), 1900)}`)

const textOf = (view: TemplateView, key: string): string | undefined => {
  const value = view.data[key]
  return value === undefined || value === null || value === "" ? undefined : String(value)
}

const stepsOf = (event: CashfreeEvent): ReadonlyArray<Mrkdwn> => {
  const steps = "verification_details" in event.data ? event.data.verification_details : undefined
  return steps === undefined || steps.length === 0
    ? []
    : [field("Steps", steps.map((step) => `${step.type}: ${step.status}`).join("\n"))]
}

const staleNote = (ctx: DeliveryContext) => {
  const current = ctx.lifecycle.current
  const where = current === null
    ? "the verification has already moved past this event"
    : `the verification is already at ${slack(current.status)}${
      current.subStatus === null ? "" : ` / ${slack(current.subStatus)}`
    } (${slack(current.eventType)})`
  return mrkdwn(`:warning: *Stale:* ${where}`)
}

/**
 * The Block Kit message for one event. Every value that comes from the event (remarks, names, ids) is escaped
 * for mrkdwn, so a remark such as `<!channel>` shows as text instead of notifying the channel.
 */
export const buildMessage = (event: CashfreeEvent, ctx: DeliveryContext, options: MessageOptions): SlackMessage => {
  const view = viewOf(event, ctx, options.personalFields)
  const lead = options.mention === undefined ? "" : `${options.mention} `
  const title = clip(render(options.title, view, "slack").replace(/\s+/g, " ").trim(), 200) || slack(event.event_type)
  const text = clip(render(options.text, view, "slack").trim(), 3000) || title
  const fields = [
    field("Event", event.event_type),
    field("Verification", view.verification_id),
    field("Status", view.sub_status === null ? view.status : `${view.status} / ${view.sub_status}`),
    field("Reference", String(event.data.reference_id)),
    ...stepsOf(event),
    ...options.personalFields.flatMap((key) => {
      const value = textOf(view, key)
      return value === undefined ? [] : [field(PERSONAL_LABELS[key], value)]
    })
  ].slice(0, 10) // Slack's limit per section
  const remarks = ([["Auditor remarks", "auditor_remarks"], ["Agent remarks", "agent_remarks"]] as const).flatMap(
    ([label, key]) => {
      const value = textOf(view, key)
      return value === undefined ? [] : [`*${label}*\n${clip(slack(value), 1400)}`]
    }
  )
  const footer = `${view.event_time} · event ${slack(ctx.eventId)}${ctx.attempt > 1 ? ` · attempt ${ctx.attempt}` : ""}`
  return {
    text: `${lead}${text}`,
    blocks: [
      { type: "section", text: mrkdwn(`${lead}*${title}*`) },
      ...(ctx.lifecycle.stale ? [{ type: "context" as const, elements: [staleNote(ctx)] }] : []),
      { type: "section", fields },
      ...(remarks.length === 0 ? [] : [{ type: "section" as const, text: mrkdwn(remarks.join("\n\n")) }]),
      { type: "context", elements: [mrkdwn(footer)] }
    ]
  }
}
