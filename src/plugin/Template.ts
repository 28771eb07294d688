import { DateTime, Schema } from "effect"
import Mustache from "mustache"
import type { CashfreeEvent } from "../domain/Event.js"
import type { DeliveryContext } from "./Plugin.js"

/**
 * Fields of `data` that identify a person or open their KYC session. Templates and payloads leave them out
 * unless an instance lists them in `personal_fields`.
 */
export const PERSONAL_FIELDS = ["name", "phone", "email", "vkyc_link", "recording_link", "form_link"] as const
export type PersonalField = (typeof PERSONAL_FIELDS)[number]

export const PersonalFields = Schema.Array(Schema.Literal(...PERSONAL_FIELDS)).annotations({
  description: "Personal fields of data this instance may use (opt-in, one by one)"
})

/** A Mustache template, checked when the configuration loads. */
export const TemplateText = Schema.String.pipe(
  Schema.filter((text) => {
    try {
      Mustache.parse(text)
      return true
    } catch (error) {
      return `not a valid template: ${error instanceof Error ? error.message : String(error)}`
    }
  })
)

/** What a template can refer to: `{{event_type}}`, `{{status}}`, `{{data.verification_id}}`, `{{params.team}}`… */
export interface TemplateView {
  readonly event_id: string
  readonly event_type: string
  readonly event_time: string
  readonly verification_id: string
  readonly status: string
  readonly sub_status: string | null
  readonly stale: boolean
  readonly attempt: number
  readonly data: Readonly<Record<string, unknown>>
  readonly params: Readonly<Record<string, unknown>>
}

/** The event's data without the personal fields the instance has not opted into. */
export const minimisedData = (
  event: CashfreeEvent,
  allowed: ReadonlyArray<PersonalField>
): Readonly<Record<string, unknown>> =>
  Object.fromEntries(
    Object.entries(event.data).filter(([key]) =>
      !(PERSONAL_FIELDS as ReadonlyArray<string>).includes(key) || (allowed as ReadonlyArray<string>).includes(key)
    )
  )

export const viewOf = (
  event: CashfreeEvent,
  ctx: DeliveryContext,
  allowed: ReadonlyArray<PersonalField>
): TemplateView => ({
  event_id: ctx.eventId,
  event_type: event.event_type,
  event_time: DateTime.formatIso(event.event_time),
  verification_id: event.data.verification_id,
  status: "status" in event.data ? event.data.status : event.data.form_status,
  sub_status: "sub_status" in event.data ? event.data.sub_status : null,
  stale: ctx.lifecycle.stale,
  attempt: ctx.attempt,
  data: minimisedData(event, allowed),
  params: ctx.params
})

const HTML: Readonly<Record<string, string>> = { "&": "&amp;", "<": "&lt;", ">": "&gt;", "\"": "&quot;", "'": "&#39;" }

/** How `{{value}}` is escaped for the channel a template is written for (`{{{value}}}` is never escaped). */
export const escapers = {
  html: (text: string) => text.replace(/[&<>"']/g, (c) => HTML[c]!),
  /** Slack mrkdwn: only &, < and > are control characters. */
  slack: (text: string) => text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;"),
  /** A path segment or query value inside a URL template. */
  url: (text: string) => encodeURIComponent(text),
  text: (text: string) => text
} as const

export const render = (template: string, view: TemplateView, escape: keyof typeof escapers): string =>
  Mustache.render(template, view, {}, { escape: (value: unknown) => escapers[escape](String(value)) })
