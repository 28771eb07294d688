/**
 * The columns the ingest transaction writes, in one order, for the statements that name them one by one (the
 * SQLite writer thread's prepared statements, PostgreSQL's single-statement batch). Free of the Effect runtime,
 * so that the writer thread can load it.
 */

export const EVENT_COLUMNS = [
  "id", "dedupe_key", "status", "event_type", "verification_id", "event_status", "event_sub_status", "event_time",
  "received_at", "scheme", "secret_index", "webhook_attempt", "webhook_version", "webhook_timestamp",
  "idempotency_key", "body", "problems"
] as const

export const VERIFICATION_COLUMNS = [
  "verification_id", "event_id", "event_type", "status", "sub_status", "event_time", "rank", "terminal", "updated_at"
] as const

export const DELIVERY_COLUMNS = [
  "id", "event_id", "instance", "route", "params", "retry", "state", "attempts", "next_attempt_at", "lease_owner",
  "lease_until", "last_error", "created_at", "updated_at"
] as const
