import { assert, describe, it } from "@effect/vitest"
import { PgClient } from "@effect/sql-pg"
import { Deferred, Effect, Fiber, Redacted } from "effect"
import { parseConfigText } from "../../src/config/ConfigFile.js"
import { fixture, uniqueEvent } from "../support/Fixtures.js"
import { eventually, pause, startReceiver } from "../support/Receiver.js"
import { post, relayConfigYaml, signedHeaders, startRelay, STORES, tempPostgres } from "../support/Relay.js"

const SECRET = "direct-secret"
const LEASE_MS = 60_000

/** One `webhook` instance with one worker, and every event routed to it. */
const sinkConfig = (sinkUrl: string, timeout: string, dispatch: ReadonlyArray<string>) =>
  ["plugins:", "  sink:", "    use: webhook", `    url: ${sinkUrl}/hook`, "    concurrency: 1", `    timeout: ${timeout}`,
    "routes:", "  - to: sink", "dispatch:", ...dispatch.map((line) => `  ${line}`), ""].join("\n")

// A timeout close to the lease: the instance holds one delivery at a time. No polling, so only ingest's handover
// and the claim it wakes move deliveries.
const oneAtATime = (sinkUrl: string) => sinkConfig(sinkUrl, "40s", ["poll_interval: 1h", "lease: 60s"])

describe.each(STORES)("deliveries handed over by ingest on $name", ({ make }) => {
  it.scopedLive("a new event's delivery is leased in its own transaction when its instance has room, and waits for a claim when not", () =>
    Effect.gen(function*() {
      const store = yield* make
      // The first call is answered after a second and a half: meanwhile the instance has no room.
      const sink = yield* startReceiver((_, index) => ({ status: 200, ...(index === 0 ? { delayMs: 1_500 } : {}) }))
      const { deliveries, dispatcher: { owner }, webhookUrl } = yield* startRelay({ store, secrets: [SECRET], extra: oneAtATime(sink.url) })
      const send = (i: number) =>
        Effect.gen(function*() {
          const body = uniqueEvent("direct", i)
          const answer = yield* post(webhookUrl, body, signedHeaders(SECRET, body))
          assert.strictEqual(answer.status, 200)
          return (answer.body as { event_id: string }).event_id
        })
      const rowOf = (eventId: string) =>
        Effect.map(deliveries.list({ eventId, limit: 1 }), ([row]) => row!)

      const before = Date.now()
      const first = yield* send(0)
      // Read as soon as the webhook is answered: the transaction that stored the event leased its delivery.
      const leased = yield* rowOf(first)
      assert.strictEqual(leased.state, "running")
      assert.strictEqual(leased.attempts, 1)
      assert.isTrue(leased.lease_owner?.startsWith(`${owner}#`), `held by this process: ${leased.lease_owner}`)
      // Not claimed afterwards: leased at the moment it was created, and not updated since.
      assert.strictEqual(Date.parse(leased.lease_until!), Date.parse(leased.created_at) + LEASE_MS)
      assert.strictEqual(leased.updated_at, leased.created_at)
      assert.isAtLeast(Date.parse(leased.created_at), before)

      // The only worker is busy: the next deliveries are written for a claim, unleased.
      const rest = [yield* send(1), yield* send(2)]
      for (const eventId of rest) {
        const row = yield* rowOf(eventId)
        assert.deepStrictEqual([row.state, row.attempts, row.lease_owner, row.lease_until], ["pending", 0, null, null])
      }

      yield* eventually(() => sink.received.length === 3)
      assert.deepStrictEqual(sink.received.map((r) => r.headers["x-kyc-relay-event-id"]), [first, ...rest])
      assert.deepStrictEqual(sink.received.map((r) => r.headers["x-kyc-relay-attempt"]), ["1", "1", "1"])
      // The attempts are recorded by the dispatcher's next write.
      const states = Effect.forEach([first, ...rest], (eventId) => Effect.map(rowOf(eventId), (row) => [row.state, row.attempts, row.lease_owner]))
      let recorded = yield* states
      for (let i = 0; i < 500 && !recorded.every(([state]) => state === "done"); i++) {
        yield* pause(20)
        recorded = yield* states
      }
      assert.deepStrictEqual(recorded, Array(3).fill(["done", 1, null]))
    }), 30_000)
})

const reloadConfig = (sinkUrl: string) => sinkConfig(sinkUrl, "5s", ["poll_interval: 100ms", "lease: 60s", "shutdown_grace: 1s"])

const callQueuedAt = (eventTime: string) => {
  const json = JSON.parse(fixture("VKYC_USER_CALL_QUEUED").text)
  json.data.verification_id = "direct_reload"
  json.event_time = eventTime
  return JSON.stringify(json)
}

describe("deliveries handed over by ingest across a reload", () => {
  it.scopedLive("a delivery leased to a lane that stopped while its event was being stored is handed back at once", () =>
    Effect.gen(function*() {
      const store = yield* tempPostgres
      const sink = yield* startReceiver()
      const relay = yield* startRelay({ store, secrets: [SECRET], extra: reloadConfig(sink.url) })
      const first = callQueuedAt("2025-05-22T03:51:14Z")
      assert.strictEqual((yield* post(relay.webhookUrl, first, signedHeaders(SECRET, first))).status, 200)
      yield* eventually(() => sink.received.length === 1)

      // Another transaction holds the verification's row, so the next event's transaction waits after its
      // delivery has been given room in the lane; meanwhile a reload stops that lane.
      const unlock = yield* Deferred.make<void>()
      const locked = yield* Deferred.make<void>()
      const lock = yield* Effect.fork(
        Effect.gen(function*() {
          const sql = yield* PgClient.PgClient
          yield* sql.withTransaction(Effect.gen(function*() {
            yield* sql`SELECT 1 FROM verifications WHERE verification_id = 'direct_reload' FOR UPDATE`
            yield* Deferred.succeed(locked, undefined)
            yield* Deferred.await(unlock)
          }))
        }).pipe(Effect.provide(PgClient.layer({ url: Redacted.make(store), maxConnections: 1 })), Effect.orDie)
      )
      yield* Deferred.await(locked)
      const second = callQueuedAt("2025-05-22T03:52:14Z")
      const posting = yield* Effect.fork(post(relay.webhookUrl, second, signedHeaders(SECRET, second)))
      yield* pause(300)
      yield* relay.dispatcher.reload(yield* parseConfigText(relayConfigYaml({ store, secrets: [SECRET], extra: reloadConfig(sink.url) }), "test.yaml"))
      yield* Deferred.succeed(unlock, undefined)
      yield* Fiber.join(lock)
      const answer = yield* Fiber.join(posting)
      assert.strictEqual(answer.status, 200)

      // Not left leased to the stopped lane until the lease (a minute) runs out.
      yield* eventually(() => sink.received.length === 2)
      assert.strictEqual(sink.received[1]!.headers["x-kyc-relay-event-id"], answer.body.event_id)
      assert.strictEqual(sink.received[1]!.headers["x-kyc-relay-attempt"], "1")
    }), 30_000)
})
