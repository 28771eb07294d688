import type { Finish } from "./Deliveries.js"

/** The `attempts` row recording one finished attempt. A module of its own: the writer thread loads no Effect. */
export const attemptRow = (f: Finish) => ({
  id: f.attemptId,
  delivery_id: f.deliveryId,
  attempt: f.attempt,
  worker: f.owner,
  started_at: f.startedAt,
  finished_at: f.finishedAt,
  outcome: f.outcome,
  error: f.error,
  remote_id: f.remoteId
})
