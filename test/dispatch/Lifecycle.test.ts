import { assert, describe, it } from "@effect/vitest"
import { SqlClient } from "@effect/sql"
import { Effect, Either } from "effect"
import * as Sql from "../../src/store/Sql.js"
import { fixture } from "../support/Fixtures.js"
import { eventually, pause, startReceiver } from "../support/Receiver.js"
import { post, signedHeaders, startRelay, STORES } from "../support/Relay.js"

const SECRET = "test-secret"

const sinks = (crm: string, audit: string) => `
plugins:
  crm:
    use: webhook
    url: ${crm}/contacts
  audit:
    use: webhook
    url: ${audit}/audit
routes:
  - name: CRM keeps the latest state
    match: { event_type: "VKYC_*" }
    to: crm
    skip_stale: true
    params: { object: contact }
  - to: audit
retry:
  initial_delay: 100ms
  max_attempts: 2
dispatch:
  poll_interval: 100ms
`

describe.each(STORES)("lifecycle and replay on $name", ({ make }) => {
  it.scopedLive("flags a late event as stale, skips it where the route says so, and tells plugins", () =>
    Effect.gen(function*() {
      const crm = yield* startReceiver()
      const audit = yield* startReceiver()
      const relay = yield* startRelay({ store: yield* make, secrets: [SECRET], extra: sinks(crm.url, audit.url) })
      const send = (eventType: string) => {
        const text = fixture(eventType).text
        return post(relay.webhookUrl, text, signedHeaders(SECRET, text))
      }
      yield* send("VKYC_USER_CALL_QUEUED")
      // Delivered before the decision arrives; once a newer event is applied, a delivery not yet made is stale too.
      yield* eventually(() => audit.received.length === 1 && crm.received.length === 1)
      yield* send("VKYC_AUDITOR_REVIEW_COMPLETED")
      yield* send("VKYC_USER_LINK_GENERATED") // older than the auditor's decision: stale
      yield* send("VKYC_USER_CALL_STARTED") // after a final state: stale
      yield* eventually(() => audit.received.length === 4 && crm.received.length === 2)
      yield* pause(200)
      assert.deepStrictEqual(
        crm.received.map((r) => [r.json.event_type, r.json.stale, r.json.params]),
        [
          ["VKYC_USER_CALL_QUEUED", false, { object: "contact" }],
          ["VKYC_AUDITOR_REVIEW_COMPLETED", false, { object: "contact" }]
        ]
      )
      assert.deepStrictEqual(
        audit.received.map((r) => [r.json.event_type, r.json.stale]).sort(),
        [
          ["VKYC_AUDITOR_REVIEW_COMPLETED", false],
          ["VKYC_USER_CALL_QUEUED", false],
          ["VKYC_USER_CALL_STARTED", true],
          ["VKYC_USER_LINK_GENERATED", true]
        ]
      )
    }))

  it.scopedLive("hands a retry over as stale once a newer event of its verification has been applied", () =>
    Effect.gen(function*() {
      // The CRM is down for the first call only: the older event is retried after the newer one went through.
      const crm = yield* startReceiver((_req, index) => ({ status: index === 0 ? 503 : 200 }))
      const relay = yield* startRelay({
        store: yield* make,
        secrets: [SECRET],
        extra: `
plugins:
  crm:
    use: webhook
    url: ${crm.url}/contacts
routes:
  - to: crm
retry:
  initial_delay: 1s
  jitter: 0
dispatch:
  poll_interval: 100ms
`
      })
      for (const type of ["VKYC_USER_LINK_GENERATED", "VKYC_AUDITOR_REVIEW_COMPLETED"]) {
        const text = fixture(type).text
        assert.strictEqual((yield* post(relay.webhookUrl, text, signedHeaders(SECRET, text))).status, 200)
        yield* eventually(() => crm.received.length === (type === "VKYC_USER_LINK_GENERATED" ? 1 : 2))
      }
      yield* eventually(() => crm.received.length === 3)
      assert.deepStrictEqual(crm.received.map((r) => [r.json.event_type, r.json.stale]), [
        ["VKYC_USER_LINK_GENERATED", false],
        ["VKYC_AUDITOR_REVIEW_COMPLETED", false],
        ["VKYC_USER_LINK_GENERATED", true]
      ])
    }))

  it.scopedLive("replays dead letters, single events and time ranges under the current rules", () =>
    Effect.gen(function*() {
      let crmStatus = 400
      const crm = yield* startReceiver(() => ({ status: crmStatus }))
      const audit = yield* startReceiver()
      const relay = yield* startRelay({ store: yield* make, secrets: [SECRET], extra: sinks(crm.url, audit.url) })
      const text = fixture("VKYC_USER_CALL_QUEUED").text
      const { body } = yield* post(relay.webhookUrl, text, signedHeaders(SECRET, text))
      yield* eventually(() => crm.received.length === 1 && audit.received.length === 1)
      yield* pause(200)
      const [dead] = yield* relay.deliveries.list({ state: "dead", limit: 10 })
      assert.deepStrictEqual([dead!.instance, dead!.last_error], ["crm", "permanent failure: HTTP 400"])

      const misspelt = yield* Effect.either(relay.replay.dead("crn"))
      assert.deepStrictEqual(Either.isLeft(misspelt) ? misspelt.left.message : "replayed", 'no plugin instance named "crn"; instances: crm, audit')

      crmStatus = 200
      assert.deepStrictEqual(yield* relay.replay.dead("crm"), { events: 0, deliveries: 1, stillQuarantined: 0, orphaned: [], disabled: [] })
      yield* eventually(() => crm.received.length === 2)
      yield* pause(200)
      assert.deepStrictEqual(yield* relay.deliveries.countByState, { done: 2 })

      assert.deepStrictEqual(yield* relay.replay.event(body.event_id), { events: 1, deliveries: 2, stillQuarantined: 0, orphaned: [], disabled: [] })
      yield* eventually(() => crm.received.length === 3 && audit.received.length === 2)
      const ids = new Set(crm.received.map((r) => r.headers["idempotency-key"]))
      assert.strictEqual(ids.size, 1, "a replay keeps the idempotency key")

      const unknown = JSON.stringify({ event_type: "BAV_DONE", event_time: "2025-01-01T00:00:00Z", version: "v2", data: {} })
      yield* post(relay.webhookUrl, unknown, signedHeaders(SECRET, unknown))
      assert.deepStrictEqual(yield* relay.replay.quarantined, { events: 0, deliveries: 0, stillQuarantined: 1, orphaned: [], disabled: [] })
      const everything = yield* relay.replay.range("2000-01-01T00:00:00.000Z", undefined)
      assert.deepStrictEqual(everything, { events: 1, deliveries: 2, stillQuarantined: 1, orphaned: [], disabled: [] })
      const nothing = yield* relay.replay.range("2000-01-01T00:00:00.000Z", "2000-01-02T00:00:00.000Z")
      assert.deepStrictEqual(nothing, { events: 0, deliveries: 0, stillQuarantined: 0, orphaned: [], disabled: [] })
    }))

  it.scopedLive("runs quarantined events that now decode through the lifecycle, and keeps ids exact on replay", () =>
    Effect.gen(function*() {
      const crm = yield* startReceiver()
      const audit = yield* startReceiver()
      const relay = yield* startRelay({ store: yield* make, secrets: [SECRET], extra: sinks(crm.url, audit.url) })
      const decision = fixture("VKYC_AUDITOR_REVIEW_COMPLETED").text
      assert.strictEqual((yield* post(relay.webhookUrl, decision, signedHeaders(SECRET, decision))).status, 200)
      yield* eventually(() => crm.received.length === 1 && audit.received.length === 1)

      // Events an earlier release quarantined: an older step of the same verification, which decodes now, and
      // one whose id has a fraction that JSON.parse would round away.
      const queued = fixture("VKYC_USER_CALL_QUEUED").text
      const inexact = queued.replace("\"reference_id\": 10449", "\"reference_id\": 4503599627370497.5")
      const quarantined = (id: string, body: string) => ({
        id, dedupe_key: `${id}|${"0".repeat(64)}`, status: "quarantined" as const, event_type: "VKYC_USER_CALL_QUEUED",
        verification_id: "vkyc_onb_7f3a21", event_status: "PRE_VIDEO_CALL", event_sub_status: "USER_QUEUED",
        event_time: "2025-05-23T14:29:02Z", received_at: "2026-01-01T00:00:00.000Z", scheme: "header" as const, secret_index: 0,
        webhook_attempt: null, webhook_version: null, webhook_timestamp: null, idempotency_key: null, body, problems: "[]"
      })
      yield* relay.events.insertBatch([quarantined("evt_old_queued", queued), quarantined("evt_old_inexact", inexact)])

      assert.deepStrictEqual(yield* relay.replay.quarantined, { events: 1, deliveries: 1, stillQuarantined: 1, orphaned: [], disabled: [] })
      yield* eventually(() => audit.received.length === 2)
      yield* pause(200)
      assert.strictEqual(crm.received.length, 1, "the CRM route skips an event older than the auditor's decision")
      assert.deepStrictEqual([audit.received[1]!.json.event_type, audit.received[1]!.json.stale], ["VKYC_USER_CALL_QUEUED", true])
      const still = yield* relay.events.list({ quarantined: true, limit: 10 })
      assert.deepStrictEqual(still.map((row) => row.id), ["evt_old_inexact"])
    }))
})

describe("lifecycle with two relays on one PostgreSQL database", () => {
  it.scopedLive("never moves a verification back from its final state when late events race on two instances", () =>
    Effect.gen(function*() {
      const store = yield* STORES[1].make
      const a = yield* startRelay({ store, secrets: [SECRET] })
      const b = yield* startRelay({ store, secrets: [SECRET] })
      const variant = (eventType: string, id: string) => {
        const doc = JSON.parse(fixture(eventType).text)
        return JSON.stringify({ ...doc, data: { ...doc.data, verification_id: id } })
      }
      const pairs = Array.from({ length: 300 }, (_, i) => `race_${i}`)
      yield* Effect.forEach(pairs, (id) => {
        const approved = variant("VKYC_AUDITOR_REVIEW_COMPLETED", id)
        const link = variant("VKYC_USER_LINK_GENERATED", id)
        return Effect.all([
          post(a.webhookUrl, approved, signedHeaders(SECRET, approved)),
          post(b.webhookUrl, link, signedHeaders(SECRET, link))
        ], { concurrency: 2 })
      }, { concurrency: 20 })
      const states = yield* Effect.flatMap(SqlClient.SqlClient, (sql) =>
        sql<{ status: string; n: number | string }>`SELECT status, COUNT(*) AS n FROM verifications GROUP BY status`).pipe(
          Effect.provide(Sql.layer(store)),
          Effect.orDie
        )
      assert.deepStrictEqual(states.map((row) => [row.status, Number(row.n)]), [["AUDITOR_REVIEWED", 300]])
    }), 60_000)
})
