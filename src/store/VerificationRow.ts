import type { VerificationState } from "../domain/Lifecycle.js"
import { storable } from "./Storable.js"

/** A verification's stored state, as both stores and the SQLite writer thread read and write it. */
export interface VerificationRow {
  readonly verification_id: string
  readonly event_id: string
  readonly event_type: string
  readonly status: string
  readonly sub_status: string | null
  readonly event_time: string
  readonly rank: number | string
  readonly terminal: number | string | boolean
}

export const toState = (row: VerificationRow): VerificationState => ({
  eventId: row.event_id,
  eventType: row.event_type,
  status: row.status,
  subStatus: row.sub_status,
  eventTime: row.event_time,
  rank: Number(row.rank),
  terminal: Number(row.terminal) === 1 || row.terminal === true
})

export const toRow = (id: string, state: VerificationState, now: string) => ({
  verification_id: storable(id),
  event_id: state.eventId,
  event_type: state.eventType,
  status: storable(state.status),
  sub_status: state.subStatus === null ? null : storable(state.subStatus),
  event_time: state.eventTime,
  rank: state.rank,
  terminal: state.terminal ? 1 : 0,
  updated_at: now
})

/** The upsert's condition: a stored final state is never left, and an older event never overwrites a newer one. */
export const FORWARD_ONLY = `ON CONFLICT (verification_id) DO UPDATE SET
  event_id = excluded.event_id, event_type = excluded.event_type, status = excluded.status,
  sub_status = excluded.sub_status, event_time = excluded.event_time, rank = excluded.rank,
  terminal = excluded.terminal, updated_at = excluded.updated_at
WHERE verifications.terminal = 0 AND (excluded.event_time > verifications.event_time OR
  (excluded.event_time = verifications.event_time AND excluded.rank >= verifications.rank))`
