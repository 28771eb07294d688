import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

export const createDeliveries = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`ALTER TABLE events ADD COLUMN stale INTEGER NOT NULL DEFAULT 0`
  yield* sql`CREATE TABLE verifications (
    verification_id TEXT PRIMARY KEY,
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    status TEXT NOT NULL,
    sub_status TEXT,
    event_time TEXT NOT NULL,
    rank INTEGER NOT NULL,
    terminal INTEGER NOT NULL,
    updated_at TEXT NOT NULL
  )`
  // One row per (event, plugin instance): the unique pair is what keeps a delivery from being scheduled twice.
  yield* sql`CREATE TABLE deliveries (
    id TEXT PRIMARY KEY,
    event_id TEXT NOT NULL,
    instance TEXT NOT NULL,
    route INTEGER NOT NULL,
    params TEXT NOT NULL,
    retry TEXT,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    next_attempt_at TEXT NOT NULL,
    lease_owner TEXT,
    lease_until TEXT,
    last_error TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (event_id, instance)
  )`
  yield* sql`CREATE INDEX deliveries_due ON deliveries (instance, state, next_attempt_at)`
  yield* sql`CREATE INDEX deliveries_state ON deliveries (state, updated_at)`
  yield* sql`CREATE TABLE attempts (
    id TEXT PRIMARY KEY,
    delivery_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    worker TEXT NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT NOT NULL,
    outcome TEXT NOT NULL,
    error TEXT,
    remote_id TEXT
  )`
  yield* sql`CREATE INDEX attempts_delivery ON attempts (delivery_id, started_at)`
})
