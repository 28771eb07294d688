import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { fixture } from "../support/Fixtures.js"
import { eventually, pause, startReceiver } from "../support/Receiver.js"
import { post, signedHeaders, startRelay, tempSqlite } from "../support/Relay.js"

const SECRET = "metrics-secret"

/** `name{labels} value` lines of a Prometheus text exposition, as a map. */
const parse = (text: string) =>
  new Map(
    text.split("\n").filter((line) => line !== "" && !line.startsWith("#")).map((line) => {
      const at = line.lastIndexOf(" ")
      return [line.slice(0, at), Number(line.slice(at + 1))] as const
    })
  )

describe("GET /metrics", () => {
  it.scopedLive("counts what the test sent: webhooks by outcome and reason, deliveries and attempts by instance", () =>
    Effect.gen(function*() {
      const sink = yield* startReceiver((req) => ({ status: req.json?.event_type === "VKYC_USER_CALL_STARTED" ? 400 : 200 }))
      const relay = yield* startRelay({
        store: yield* tempSqlite,
        secrets: [SECRET],
        maxBodyBytes: 4096,
        extra: `
plugins:
  sink:
    use: webhook
    url: ${sink.url}/hook
routes:
  - match: { event_type: "VKYC_*" }
    to: sink
`
      })
      const signed = (text: string) => post(relay.webhookUrl, text, signedHeaders(SECRET, text))
      for (const type of ["VKYC_USER_LINK_GENERATED", "VKYC_USER_AADHAAR_VERIFIED", "VKYC_USER_CALL_STARTED"]) {
        yield* signed(fixture(type).text)
      }
      yield* signed(fixture("VKYC_USER_LINK_GENERATED").text)
      yield* signed(fixture("KYC_LINK_SUCCESS").text) // matches no route
      yield* signed(JSON.stringify({ event_type: "BAV_DONE", event_time: "2025-01-01T00:00:00Z", version: "v2", data: {} }))
      yield* signed(fixture("VKYC_USER_CALL_STARTED").text.replace("\"reference_id\": 10449", "\"reference_id\": \"x\""))
      yield* post(relay.webhookUrl, fixture("VKYC_USER_CALL_QUEUED").text, signedHeaders("wrong", "x"))
      yield* post(relay.webhookUrl, fixture("VKYC_USER_CALL_QUEUED").text, signedHeaders("wrong", "y"))
      yield* signed("not json")
      yield* signed(JSON.stringify({ pad: "x".repeat(5000) }))
      yield* eventually(() => sink.received.length === 3)
      yield* pause(200)

      const response = yield* Effect.promise(() => fetch(`${relay.baseUrl}/metrics`))
      assert.strictEqual(response.status, 200)
      assert.match(response.headers.get("content-type")!, /^text\/plain/)
      const metrics = parse(yield* Effect.promise(() => response.text()))
      assert.deepStrictEqual(
        {
          accepted: metrics.get(`kyc_relay_webhooks_total{outcome="accepted",reason=""}`),
          duplicate: metrics.get(`kyc_relay_webhooks_total{outcome="duplicate",reason=""}`),
          quarantined: metrics.get(`kyc_relay_webhooks_total{outcome="quarantined",reason="unknown-event-type"}`),
          invalid: metrics.get(`kyc_relay_webhooks_total{outcome="quarantined",reason="invalid-fields"}`),
          badSignature: metrics.get(`kyc_relay_webhooks_total{outcome="rejected",reason="invalid-signature"}`),
          malformed: metrics.get(`kyc_relay_webhooks_total{outcome="rejected",reason="malformed-body"}`),
          tooLarge: metrics.get(`kyc_relay_webhooks_total{outcome="rejected",reason="body-too-large"}`),
          ingestCount: metrics.get(`kyc_relay_ingest_seconds_count{outcome="accepted"}`),
          done: metrics.get(`kyc_relay_deliveries_total{instance="sink",state="done"}`),
          dead: metrics.get(`kyc_relay_deliveries_total{instance="sink",state="dead"}`),
          attemptsDone: metrics.get(`kyc_relay_delivery_attempts_total{instance="sink",result="done"}`),
          attemptsPermanent: metrics.get(`kyc_relay_delivery_attempts_total{instance="sink",result="Permanent"}`),
          endToEndCount: metrics.get(`kyc_relay_delivery_seconds_count{instance="sink"}`),
          unrouted: metrics.get("kyc_relay_unrouted_events_total")
        },
        {
          accepted: 4,
          duplicate: 1,
          quarantined: 1,
          invalid: 1,
          badSignature: 2,
          malformed: 1,
          tooLarge: 1,
          ingestCount: 4,
          done: 2,
          dead: 1,
          attemptsDone: 2,
          attemptsPermanent: 1,
          endToEndCount: 2,
          unrouted: 1
        }
      )
      assert.isUndefined(metrics.get(`kyc_relay_queue_depth{instance="sink"}`), "nothing is waiting")
    }))
})
