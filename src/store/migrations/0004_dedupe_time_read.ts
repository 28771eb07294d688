import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import { eventTimeIso } from "../../domain/Event.js"

/**
 * Keys made before this release started with the event's time as received when the event was quarantined, and
 * kept that prefix when a replay accepted it; a retry of such an event would now get a different key. Those keys
 * get the time as src/http/Webhook.ts now reads it (or none). A key whose new form another event already holds
 * is left as it is: that retry already has its row.
 */
export const readDedupeTimes = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const rows = yield* sql<{ id: string; dedupe_key: string; event_time: string | null }>`
    SELECT id, dedupe_key, event_time FROM events
    WHERE status = 'quarantined'
      OR substr(dedupe_key, 1, length(COALESCE(event_time, '')) + 1) <> COALESCE(event_time, '') || '|'`
  for (const row of rows) {
    // Every key ends with the 64 hex digits of the body's hash.
    const key = `${eventTimeIso(row.event_time) ?? ""}|${row.dedupe_key.slice(-64)}`
    if (key === row.dedupe_key) continue
    const taken = yield* sql`SELECT id FROM events WHERE dedupe_key = ${key}`
    if (taken.length === 0) yield* sql`UPDATE events SET dedupe_key = ${key} WHERE id = ${row.id}`
  }
})
