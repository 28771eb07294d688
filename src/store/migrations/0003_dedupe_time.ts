import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * Dedupe keys start with the event's time (see dedupeKey in src/http/Webhook.ts), so that new keys land together
 * at the end of the unique index rather than on a random page each. Keys stored before get the same prefix.
 */
export const prefixDedupeKeys = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`UPDATE events SET dedupe_key = COALESCE(event_time, '') || '|' || dedupe_key`
})
