import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import type { VerificationState } from "../domain/Lifecycle.js"
import { storable } from "./Storable.js"
import { FORWARD_ONLY, toRow, toState, type VerificationRow } from "./VerificationRow.js"

/** The latest applied state of each verification, kept so that late events can be recognised as stale. */
export class Verifications extends Effect.Service<Verifications>()("kyc-relay/Verifications", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient

    // Keyed by the id as given; the store holds its storable() form.
    const getMany = (ids: ReadonlyArray<string>) =>
      (ids.length === 0
        ? Effect.succeed([] as ReadonlyArray<VerificationRow>)
        : sql<VerificationRow>`SELECT * FROM verifications WHERE ${sql.in("verification_id", ids.map(storable))}`)
        .pipe(Effect.map((rows) => {
          const byStored = new Map(rows.map((row) => [row.verification_id, toState(row)]))
          return new Map(ids.flatMap((id) => {
            const state = byStored.get(storable(id))
            return state === undefined ? [] : [[id, state] as const]
          }))
        }))

    /**
     * Writes each verification's new state unless the stored one is already final or newer (another process
     * may have moved it on since we read it). One statement for the batch; returns the ids actually written.
     */
    const save = (states: ReadonlyMap<string, VerificationState>, now: string) =>
      states.size === 0 ? Effect.succeed(new Set<string>()) : sql<{ verification_id: string }>`INSERT INTO verifications ${
        sql.insert([...states].map(([id, state]) => toRow(id, state, now)))
      } ${sql.literal(FORWARD_ONLY)}
        RETURNING verification_id`.pipe(
        Effect.map((rows) => {
          const written = new Set(rows.map((row) => row.verification_id))
          return new Set([...states.keys()].filter((id) => written.has(storable(id))))
        })
      )

    return { getMany, save } as const
  })
}) {}
