import type { CashfreeEvent } from "./Event.js"

/** Where a verification stands, as the latest applied event says. */
export interface VerificationState {
  readonly eventId: string
  readonly eventType: string
  readonly status: string
  readonly subStatus: string | null
  readonly eventTime: string
  readonly rank: number
  readonly terminal: boolean
}

export interface Lifecycle {
  /** True when the verification already moved past this event (it arrived late, or after a final state). */
  readonly stale: boolean
  readonly current: VerificationState | null
}

// Maps, not object literals: a status such as "constructor" must not find Object.prototype's members.
const VKYC_RANK: ReadonlyMap<string, number> = new Map([
  ["RECEIVED", 0],
  ["PRE_VIDEO_CALL", 1],
  ["VIDEO_CALL", 2],
  ["POST_VIDEO_CALL", 3],
  ["AUDITOR_REVIEWED", 4],
  ["EXPIRED", 5],
  ["REJECTED", 5]
])
const VKYC_TERMINAL = new Set(["AUDITOR_REVIEWED", "EXPIRED", "REJECTED"])

const KYC_LINK_RANK: ReadonlyMap<string, number> = new Map([
  ["KYC_LINK_ACTION_PERFORMED", 0],
  ["KYC_LINK_SUCCESS", 1],
  ["KYC_LINK_EXPIRED", 1]
])

/** The state an event would put its verification in. Unknown statuses rank with the first phase. */
export const stateOf = (eventId: string, event: CashfreeEvent, eventTime: string): VerificationState => {
  if (event.event_type.startsWith("KYC_LINK_")) {
    const data = event.data as { readonly form_status: string }
    return {
      eventId,
      eventType: event.event_type,
      status: data.form_status,
      subStatus: null,
      eventTime,
      rank: KYC_LINK_RANK.get(event.event_type) ?? 0,
      terminal: event.event_type !== "KYC_LINK_ACTION_PERFORMED"
    }
  }
  const data = event.data as { readonly status: string; readonly sub_status: string }
  return {
    eventId,
    eventType: event.event_type,
    status: data.status,
    subStatus: data.sub_status,
    eventTime,
    rank: VKYC_RANK.get(data.status) ?? 0,
    terminal: VKYC_TERMINAL.has(data.status)
  }
}

/**
 * Whether `next` is older than `current`. Event time decides first, because the flow is not monotonic (a user
 * who drops off a call queues again); rank breaks ties between events of the same second; a final state
 * (auditor decision, expiry, rejection, link success) is never left.
 */
export const isStale = (current: VerificationState | null, next: VerificationState): boolean =>
  current !== null && (
    current.terminal ||
    next.eventTime < current.eventTime ||
    (next.eventTime === current.eventTime && next.rank < current.rank)
  )
