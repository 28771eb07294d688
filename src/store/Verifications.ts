import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import type { VerificationState } from "../domain/Lifecycle.js"
import { storable } from "./Storable.js"

interface Row {
  readonly verification_id: string
  readonly event_id: string
  readonly event_type: string
  readonly status: string
  readonly sub_status: string | null
  readonly event_time: string
  readonly rank: number | string
  readonly terminal: number | string | boolean
}

const toState = (row: Row): VerificationState => ({
  eventId: row.event_id,
  eventType: row.event_type,
  status: row.status,
  subStatus: row.sub_status,
  eventTime: row.event_time,
  rank: Number(row.rank),
  terminal: Number(row.terminal) === 1 || row.terminal === true
})

/** The latest applied state of each verification, kept so that late events can be recognised as stale. */
export class Verifications extends Effect.Service<Verifications>()("kyc-relay/Verifications", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient

    // Keyed by the id as given; the store holds its storable() form.
    const getMany = (ids: ReadonlyArray<string>) =>
      (ids.length === 0
        ? Effect.succeed([] as ReadonlyArray<Row>)
        : sql<Row>`SELECT * FROM verifications WHERE ${sql.in("verification_id", ids.map(storable))}`)
        .pipe(Effect.map((rows) => {
          const byStored = new Map(rows.map((row) => [row.verification_id, toState(row)]))
          return new Map(ids.flatMap((id) => {
            const state = byStored.get(storable(id))
            return state === undefined ? [] : [[id, state] as const]
          }))
        }))

    const get = (id: string) => getMany([id]).pipe(Effect.map((states) => states.get(id) ?? null), Effect.orDie)

    /**
     * Writes each verification's new state unless the stored one is already final or newer (another process
     * may have moved it on since we read it). One statement for the batch; returns the ids actually written.
     */
    const save = (states: ReadonlyMap<string, VerificationState>, now: string) =>
      states.size === 0 ? Effect.succeed(new Set<string>()) : sql<{ verification_id: string }>`INSERT INTO verifications ${
        sql.insert([...states].map(([id, state]) => ({
          verification_id: storable(id),
          event_id: state.eventId,
          event_type: state.eventType,
          status: storable(state.status),
          sub_status: state.subStatus === null ? null : storable(state.subStatus),
          event_time: state.eventTime,
          rank: state.rank,
          terminal: state.terminal ? 1 : 0,
          updated_at: now
        })))
      } ON CONFLICT (verification_id) DO UPDATE SET
          event_id = excluded.event_id, event_type = excluded.event_type, status = excluded.status,
          sub_status = excluded.sub_status, event_time = excluded.event_time, rank = excluded.rank,
          terminal = excluded.terminal, updated_at = excluded.updated_at
        WHERE verifications.terminal = 0 AND (excluded.event_time > verifications.event_time OR
          (excluded.event_time = verifications.event_time AND excluded.rank >= verifications.rank))
        RETURNING verification_id`.pipe(
        Effect.map((rows) => {
          const written = new Set(rows.map((row) => row.verification_id))
          return new Set([...states.keys()].filter((id) => written.has(storable(id))))
        })
      )

    return { getMany, get, save } as const
  })
}) {}
