import { DateTime, Option, ParseResult, Schema } from "effect"

/**
 * A string enum that Cashfree may extend: known values have their literal type, anything else is a branded
 * `Unrecognised` string instead of a failure, so new statuses are stored, not lost. The branded string comes
 * first: every string passes it, and the value is the same either way, so a known value costs one check rather
 * than a scan of up to 26 literals on every webhook.
 */
const openEnum = <const Known extends ReadonlyArray<string>>(name: string, ...known: Known) =>
  Schema.Union(Schema.String.pipe(Schema.brand(`Unrecognised${name}`)), Schema.Literal(...known)).annotations({
    identifier: name
  })

export const VkycStatus = openEnum(
  "VkycStatus",
  "RECEIVED",
  "PRE_VIDEO_CALL",
  "VIDEO_CALL",
  "POST_VIDEO_CALL",
  "AUDITOR_REVIEWED",
  "EXPIRED",
  "REJECTED"
)
export type VkycStatus = typeof VkycStatus.Type

export const VkycSubStatus = openEnum(
  "VkycSubStatus",
  "INSUFFICIENT_BALANCE",
  "LINK_GENERATED",
  "VKYC_EXPIRED",
  "AADHAAR_VERIFICATION_SUCCESS",
  "AADHAAR_VERIFICATION_FAILED",
  "AADHAAR_VERIFICATION_EXPIRED",
  "USER_IP_VERIFICATION_SUCCESSFUL",
  "USER_PROXY_DETECTED",
  "TECHNICAL_FAILURE",
  "USER_LOCATION_VERIFICATION_SUCCESS",
  "USER_LOCATION_OUTSIDE_INDIA",
  "USER_AUDIO_CHECK_FAILED",
  "USER_VIDEO_CHECK_FAILED",
  "USER_LOCATION_PERMISSION_DISABLED",
  "USER_DEVICE_CHECK_SUCCESS",
  "USER_QUEUED",
  "SCHEDULED_USER_QUEUED",
  "NO_AGENT_FOUND",
  "AGENT_ASSIGNED_TO_USER",
  "USER_MEETING_SCHEDULED",
  "USER_ACCEPTED_MEETING",
  "USER_DROPPED_OFF",
  "AGENT_APPROVED",
  "AGENT_REJECTED",
  "AUDITOR_APPROVED",
  "AUDITOR_REJECTED"
)
export type VkycSubStatus = typeof VkycSubStatus.Type

export const FormStatus = openEnum("FormStatus", "RECEIVED", "PENDING", "SUCCESS", "EXPIRED")
export type FormStatus = typeof FormStatus.Type

export const VerificationStepStatus = openEnum("VerificationStepStatus", "SUCCESS", "RECEIVED", "PENDING", "FAILED")

/** Cashfree ids are int64; anything past 2^53 cannot be held exactly as a JS number, so it is refused (the raw body is kept). */
export const CashfreeId = Schema.Number.pipe(
  Schema.filter((n) => Number.isSafeInteger(n), { message: () => "an integer no larger than 2^53 - 1" })
)

const ZONED = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/
const ZONELESS = /^(\d{4}-\d{2}-\d{2}) (\d{2}:\d{2}:\d{2})$/

/**
 * `event_time` comes as `2025-05-22T03:51:14Z` (VKYC) or `2024-02-15 16:53:15` (KYC links, no zone).
 * The zone-less form is read as UTC, as Cashfree's envelope table says; the raw text stays in the stored body.
 */
export const EventTime = Schema.transformOrFail(Schema.String, Schema.DateTimeUtcFromSelf, {
  strict: true,
  decode: (raw, _, ast) => {
    const zoneless = ZONELESS.exec(raw)
    const iso = zoneless !== null ? `${zoneless[1]}T${zoneless[2]}Z` : ZONED.test(raw) ? raw : undefined
    const millis = iso === undefined || !isCalendarTime(iso) ? Number.NaN : Date.parse(iso)
    return Number.isFinite(millis)
      ? ParseResult.succeed(DateTime.unsafeMake(millis))
      : ParseResult.fail(
          new ParseResult.Type(ast, raw, "Expected a time like 2025-05-22T03:51:14Z or 2024-02-15 16:53:15")
        )
  },
  encode: (time) => ParseResult.succeed(DateTime.formatIso(time).replace(".000Z", "Z"))
}).annotations({ identifier: "EventTime" })

const decodeEventTime = Schema.decodeUnknownOption(EventTime)

/** `raw` as the store writes an event's time (ISO 8601, UTC), or undefined if it is not a time Cashfree writes. */
export const eventTimeIso = (raw: unknown): string | undefined =>
  Option.getOrUndefined(Option.map(decodeEventTime(raw), DateTime.formatIso))

/** Date.parse rolls 2025-02-30 over into March; a time Cashfree sent must exist as written. */
const isCalendarTime = (iso: string): boolean => {
  const year = Number(iso.slice(0, 4))
  const month = Number(iso.slice(5, 7))
  const day = Number(iso.slice(8, 10))
  const date = new Date(Date.UTC(year, month - 1, day))
  return date.getUTCMonth() === month - 1 && date.getUTCDate() === day &&
    Number(iso.slice(11, 13)) < 24 && Number(iso.slice(14, 16)) < 60 && Number(iso.slice(17, 19)) < 60
}

const NullableString = Schema.NullOr(Schema.String)

export const VkycData = Schema.Struct({
  verification_id: Schema.NonEmptyString,
  reference_id: CashfreeId,
  user_reference_id: Schema.optional(CashfreeId),
  user_id: Schema.optional(Schema.String),
  status: VkycStatus,
  sub_status: VkycSubStatus,
  vkyc_link: Schema.optional(Schema.String),
  link_expiry: Schema.optional(Schema.String),
  recording_link: Schema.optional(NullableString),
  meeting_schedule: Schema.optional(NullableString),
  auditor_remarks: Schema.optional(NullableString),
  agent_remarks: Schema.optional(NullableString)
})
export type VkycData = typeof VkycData.Type

export const KycLinkData = Schema.Struct({
  verification_id: Schema.NonEmptyString,
  reference_id: CashfreeId,
  name: Schema.optional(Schema.String),
  // A string in the webhook sample, a number in the status API: accept both, keep a string.
  phone: Schema.optional(
    Schema.Union(Schema.String, Schema.transform(Schema.Number, Schema.String, { decode: String, encode: Number }))
  ),
  email: Schema.optional(Schema.String),
  link_expiry: Schema.optional(Schema.String),
  form_link: Schema.optional(Schema.String),
  form_status: FormStatus,
  verification_details: Schema.optional(
    Schema.Array(
      Schema.Struct({
        reference_id: CashfreeId,
        type: Schema.String,
        status: VerificationStepStatus
      })
    )
  )
})
export type KycLinkData = typeof KycLinkData.Type

export const VKYC_EVENT_TYPES = [
  "VKYC_USER_LINK_GENERATED",
  "VKYC_USER_LINK_EXPIRED",
  "VKYC_USER_AADHAAR_VERIFIED",
  "VKYC_USER_CALL_SCHEDULED",
  "VKYC_USER_PRECHECK_FAILED",
  "VKYC_USER_CALL_QUEUED",
  "VKYC_USER_CALL_STARTED",
  "VKYC_USER_DROPOFF_FROM_CALL",
  "VKYC_USER_CALL_COMPLETED",
  "VKYC_AUDITOR_REVIEW_COMPLETED"
] as const
export const KYC_LINK_EVENT_TYPES = ["KYC_LINK_ACTION_PERFORMED", "KYC_LINK_SUCCESS", "KYC_LINK_EXPIRED"] as const
export const EVENT_TYPES = [...VKYC_EVENT_TYPES, ...KYC_LINK_EVENT_TYPES] as const
export type EventType = (typeof EVENT_TYPES)[number]

const vkycEvent = <const T extends (typeof VKYC_EVENT_TYPES)[number]>(eventType: T) =>
  Schema.Struct({ event_type: Schema.Literal(eventType), event_time: EventTime, version: Schema.String, data: VkycData })
    .annotations({ identifier: eventType })

const kycLinkEvent = <const T extends (typeof KYC_LINK_EVENT_TYPES)[number]>(eventType: T) =>
  Schema.Struct({ event_type: Schema.Literal(eventType), event_time: EventTime, version: Schema.String, data: KycLinkData })
    .annotations({ identifier: eventType })

/** Every Secure ID event kyc-relay understands, discriminated by `event_type` (one member per type). */
export const CashfreeEvent = Schema.Union(
  vkycEvent("VKYC_USER_LINK_GENERATED"),
  vkycEvent("VKYC_USER_LINK_EXPIRED"),
  vkycEvent("VKYC_USER_AADHAAR_VERIFIED"),
  vkycEvent("VKYC_USER_CALL_SCHEDULED"),
  vkycEvent("VKYC_USER_PRECHECK_FAILED"),
  vkycEvent("VKYC_USER_CALL_QUEUED"),
  vkycEvent("VKYC_USER_CALL_STARTED"),
  vkycEvent("VKYC_USER_DROPOFF_FROM_CALL"),
  vkycEvent("VKYC_USER_CALL_COMPLETED"),
  vkycEvent("VKYC_AUDITOR_REVIEW_COMPLETED"),
  kycLinkEvent("KYC_LINK_ACTION_PERFORMED"),
  kycLinkEvent("KYC_LINK_SUCCESS"),
  kycLinkEvent("KYC_LINK_EXPIRED")
)
export type CashfreeEvent = typeof CashfreeEvent.Type
export type VkycEvent = Extract<CashfreeEvent, { readonly data: VkycData }>
export type KycLinkEvent = Extract<CashfreeEvent, { readonly data: KycLinkData }>

/** Decodes a stored or sample body (JSON text) into an event; errors list every failing field. */
export const decodeEventJson = Schema.decodeUnknownEither(Schema.parseJson(CashfreeEvent), { errors: "all" })

export const isKnownEventType = (value: unknown): value is EventType =>
  typeof value === "string" && (EVENT_TYPES as ReadonlyArray<string>).includes(value)
