/**
 * What a claim returns for each delivery it takes: the row, and its event's body, stale flag and verification id,
 * so that a worker needs no further read. Shared by the SQL client's claim (Deliveries) and the writer thread's
 * (SqliteWrite); a module of its own, as the writer thread loads no Effect.
 */
export const CLAIMED_COLUMNS = `*,
  (SELECT body FROM events WHERE events.id = deliveries.event_id) AS body,
  (SELECT stale FROM events WHERE events.id = deliveries.event_id) AS stale,
  (SELECT verification_id FROM events WHERE events.id = deliveries.event_id) AS verification_id`
