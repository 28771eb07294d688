import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

export const createEvents = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  // Times are ISO-8601 UTC text so that ordering and comparison behave the same on SQLite and PostgreSQL.
  yield* sql`CREATE TABLE events (
    id TEXT PRIMARY KEY,
    dedupe_key TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL,
    event_type TEXT,
    verification_id TEXT,
    event_status TEXT,
    event_sub_status TEXT,
    event_time TEXT,
    received_at TEXT NOT NULL,
    scheme TEXT NOT NULL,
    secret_index INTEGER NOT NULL,
    webhook_attempt TEXT,
    webhook_version TEXT,
    webhook_timestamp TEXT,
    idempotency_key TEXT,
    body TEXT NOT NULL,
    problems TEXT
  )`
  yield* sql`CREATE INDEX events_verification_time ON events (verification_id, event_time)`
  yield* sql`CREATE INDEX events_status_received ON events (status, received_at)`
})
