import type { EventRow } from "../../src/store/Events.js"

/** An accepted event row as the store keeps it, with what a test does not care about filled in. */
export const eventRow = (row: Pick<EventRow, "id" | "dedupe_key"> & Partial<EventRow>): EventRow => ({
  status: "accepted",
  event_type: "VKYC_USER_CALL_QUEUED",
  verification_id: "vkyc_1",
  event_status: "PRE_VIDEO_CALL",
  event_sub_status: "USER_QUEUED",
  event_time: "2025-05-23T14:29:02.000Z",
  received_at: "2026-01-01T00:00:00.000Z",
  scheme: "header",
  secret_index: 0,
  webhook_attempt: null,
  webhook_version: null,
  webhook_timestamp: null,
  idempotency_key: null,
  body: "{}",
  problems: null,
  ...row
})
