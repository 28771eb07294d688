import * as NodeContext from "@effect/platform-node/NodeContext"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Random } from "effect"
import { Deliveries, type DeliveryRow, type Finish } from "../../src/store/Deliveries.js"
import { Events, type EventRow } from "../../src/store/Events.js"
import * as Sql from "../../src/store/Sql.js"
import { fixture } from "../support/Fixtures.js"
import { STORES } from "../support/Relay.js"
import { eventRow } from "../support/Rows.js"

const T0 = Date.parse("2030-01-01T00:00:00.000Z")
const at = (seconds: number) => new Date(T0 + seconds * 1000).toISOString()
const LEASE = 60

const event = (i: number): EventRow =>
  eventRow({
    id: `evt_claims_${String(i).padStart(5, "0")}`,
    dedupe_key: `claims-${i}`,
    verification_id: `claims_${i}`,
    event_time: at(0),
    received_at: at(0),
    body: fixture("VKYC_USER_CALL_QUEUED").text
  })

/** A pending delivery of event `i` to `sink`, due `due` seconds after T0. */
const delivery = (i: number, due: number): DeliveryRow => ({
  id: `dlv_claims_${String(i).padStart(5, "0")}`,
  event_id: event(i).id,
  instance: "sink",
  route: 0,
  params: "{}",
  retry: null,
  state: "pending",
  attempts: 0,
  next_attempt_at: at(due),
  lease_owner: null,
  lease_until: null,
  last_error: null,
  created_at: at(due),
  updated_at: at(due)
})

const done = (row: { readonly id: string; readonly attempts: number }, owner: string, seconds: number, n: number): Finish => ({
  deliveryId: row.id,
  owner,
  lease: owner,
  attempt: row.attempts,
  attemptId: `att_${owner}_${row.id}_${n}`,
  startedAt: at(seconds),
  finishedAt: at(seconds),
  outcome: "done",
  error: null,
  remoteId: null,
  state: "done",
  nextAttemptAt: null
})

/** The store services on `url`, with `count` events and one delivery each (delivery i due i seconds after T0). */
const seeded = (url: string, count: number) =>
  Effect.gen(function*() {
    const ctx = yield* Layer.build(
      Layer.mergeAll(Deliveries.Default, Events.Default).pipe(Layer.provideMerge(Sql.layer(url)), Layer.provide(NodeContext.layer))
    ).pipe(Effect.orDie)
    const events = yield* Effect.provide(Events, ctx)
    const deliveries = yield* Effect.provide(Deliveries, ctx)
    const ids = Array.from({ length: count }, (_, i) => i)
    for (let from = 0; from < count; from += 500) {
      const slice = ids.slice(from, from + 500)
      yield* events.insertBatch(slice.map(event)).pipe(Effect.orDie)
      yield* deliveries.enqueue(slice.map((i) => delivery(i, i))).pipe(Effect.orDie)
    }
    return deliveries
  })

describe.each(STORES)("batch claims on $name", ({ make }) => {
  it.scoped("take the oldest due deliveries with their event, then those whose lease ran out", () =>
    Effect.gen(function*() {
      const deliveries = yield* seeded(yield* make, 5)
      // At T0+3s deliveries 0..3 are due; 4 is not.
      const first = yield* deliveries.claim("sink", "a", at(3), at(3 + LEASE), 2)
      assert.deepStrictEqual(first.map((row) => [row.id, row.attempts, row.lease_owner, row.state]), [
        ["dlv_claims_00000", 1, "a", "running"],
        ["dlv_claims_00001", 1, "a", "running"]
      ])
      assert.strictEqual(first[0]!.body, fixture("VKYC_USER_CALL_QUEUED").text)
      assert.isFalse(first[0]!.stale)
      const rest = yield* deliveries.claim("sink", "b", at(3), at(3 + 10 * LEASE), 64)
      assert.deepStrictEqual(rest.map((row) => row.id), ["dlv_claims_00002", "dlv_claims_00003"])
      assert.deepStrictEqual(yield* deliveries.claim("sink", "b", at(3), at(3 + LEASE), 64), [])
      assert.deepStrictEqual(yield* deliveries.claim("other", "b", at(100), at(100 + LEASE), 64), [])

      // Past a's lease its two deliveries are taken over first, then the one that became due.
      const later = at(3 + LEASE + 1)
      const takenOver = yield* deliveries.claim("sink", "c", later, at(3 + 2 * LEASE), 3)
      assert.deepStrictEqual(takenOver.map((row) => [row.id, row.attempts, row.lease_owner]), [
        ["dlv_claims_00000", 2, "c"],
        ["dlv_claims_00001", 2, "c"],
        ["dlv_claims_00004", 1, "c"]
      ])
    }))

  it.scoped("record moves on only what the worker still holds, and a release undoes a claim", () =>
    Effect.gen(function*() {
      const deliveries = yield* seeded(yield* make, 3)
      const [zero, one] = yield* deliveries.claim("sink", "a", at(2), at(2 + LEASE), 2)
      const [overtaken] = yield* deliveries.claim("sink", "b", at(3 + LEASE), at(3 + 2 * LEASE), 1)
      assert.strictEqual(overtaken!.id, zero!.id)

      // a finishes both: the one b took over stays b's; both attempts are kept in the log.
      const retry: Finish = {
        ...done(one!, "a", 4, 1),
        outcome: "Retryable",
        error: "Retryable: HTTP 503",
        state: "pending",
        nextAttemptAt: at(30)
      }
      const kept = yield* deliveries.record([done(zero!, "a", 4, 1), retry])
      assert.deepStrictEqual([...kept], [one!.id])
      const rows = new Map((yield* deliveries.list({ limit: 10 })).map((row) => [row.id, row]))
      assert.deepStrictEqual(
        [rows.get(zero!.id)!.state, rows.get(zero!.id)!.lease_owner],
        ["running", "b"]
      )
      assert.deepStrictEqual(
        [rows.get(one!.id)!.state, rows.get(one!.id)!.next_attempt_at, rows.get(one!.id)!.last_error, rows.get(one!.id)!.lease_owner],
        ["pending", at(30), "Retryable: HTTP 503", null]
      )
      assert.strictEqual((yield* deliveries.attempts(zero!.id)).length, 1)

      // b hands its claim back: pending again, the attempt it never made not counted; a cannot release b's.
      yield* deliveries.release([{ id: zero!.id, lease_owner: "a" }], at(5 + LEASE))
      assert.strictEqual((yield* deliveries.list({ limit: 10 })).find((row) => row.id === zero!.id)!.lease_owner, "b")
      yield* deliveries.release([{ id: zero!.id, lease_owner: "b" }], at(5 + LEASE))
      const released = (yield* deliveries.list({ limit: 10 })).find((row) => row.id === zero!.id)!
      assert.deepStrictEqual([released.state, released.attempts, released.lease_owner, released.lease_until], ["pending", 1, null, null])
      const again = yield* deliveries.claim("sink", "c", at(6 + LEASE), at(6 + 2 * LEASE), 1)
      assert.deepStrictEqual(again.map((row) => [row.id, row.attempts]), [[zero!.id, 2]])
    }))
})

describe("batch claims on PostgreSQL from several dispatchers at once", () => {
  it.scoped("never hand one delivery to two of them", () =>
    Effect.gen(function*() {
      const COUNT = 3_000
      const deliveries = yield* seeded(yield* STORES[1].make, COUNT)
      const now = at(COUNT)
      // Six claimers (three owners, two each) on their own pooled connections, batches of up to 64, each batch
      // recorded as done before the next claim, until nothing is due.
      const claimer = (owner: string) =>
        Effect.gen(function*() {
          const mine: Array<string> = []
          let n = 0
          while (true) {
            const limit = yield* Random.nextIntBetween(1, 65)
            const batch = yield* deliveries.claim("sink", owner, now, at(COUNT + LEASE), limit)
            if (batch.length === 0) return mine
            assert.isAtMost(batch.length, limit)
            const kept = yield* deliveries.record(batch.map((row) => done(row, owner, COUNT, n++)))
            assert.strictEqual(kept.size, batch.length, "nobody else took them over")
            mine.push(...batch.map((row) => row.id))
          }
        })
      const owners = ["a", "a", "b", "b", "c", "c"]
      const claimed = yield* Effect.forEach(owners, claimer, { concurrency: "unbounded" })
      const all = claimed.flat()
      assert.strictEqual(all.length, COUNT, "as many claims as deliveries")
      assert.strictEqual(new Set(all).size, COUNT, "no delivery claimed twice")
      for (const owner of new Set(owners)) {
        assert.isAbove(claimed.filter((_, i) => owners[i] === owner).flat().length, 0, `${owner} got some`)
      }
      assert.deepStrictEqual(yield* deliveries.countByState, { done: COUNT })
    }), 60_000)
})
