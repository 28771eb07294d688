import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { request } from "node:http"
import { eventFixtures, FIXTURE_SECRET, fixture } from "../support/Fixtures.js"
import { post, signedHeaders, startRelay, STORES } from "../support/Relay.js"

const SECRET = "test-secret"

/** Sends a body in chunks without a content-length, as a streaming client would. */
const postChunked = (url: string, chunks: ReadonlyArray<Buffer>, headers: Record<string, string>) =>
  Effect.async<number>((resume) => {
    const req = request(url, { method: "POST", headers: { ...headers, "transfer-encoding": "chunked" } }, (res) => {
      res.resume()
      resume(Effect.succeed(res.statusCode ?? 0))
    })
    req.on("error", () => resume(Effect.succeed(-1)))
    for (const chunk of chunks) req.write(chunk)
    req.end()
  })

describe.each(STORES)("webhooks on $name", ({ make }) => {
  it.scopedLive("accepts every event type signed with the header scheme and stores it once", () =>
    Effect.gen(function*() {
      const relay = yield* startRelay({ store: yield* make, secrets: [SECRET] })
      for (const f of eventFixtures) {
        const response = yield* post(relay.webhookUrl, f.text, signedHeaders(SECRET, f.text))
        assert.strictEqual(response.status, 200, f.eventType)
        assert.strictEqual(response.body.status, "accepted", f.eventType)
        assert.match(response.body.event_id, /^evt_[0-9a-z]+$/)
      }
      assert.strictEqual(yield* relay.events.count, eventFixtures.length)

      const timeline = yield* relay.events.timeline("vkyc_onb_7f3a21")
      assert.deepStrictEqual(timeline.map((row) => row.event_type), [
        "VKYC_USER_LINK_GENERATED",
        "VKYC_USER_AADHAAR_VERIFIED",
        "VKYC_USER_CALL_SCHEDULED",
        "VKYC_USER_PRECHECK_FAILED",
        "VKYC_USER_CALL_QUEUED",
        "VKYC_USER_CALL_STARTED",
        "VKYC_USER_DROPOFF_FROM_CALL",
        "VKYC_USER_CALL_COMPLETED",
        "VKYC_AUDITOR_REVIEW_COMPLETED"
      ])
      const first = timeline[0]!
      assert.deepStrictEqual(
        {
          status: first.status,
          event_status: first.event_status,
          event_sub_status: first.event_sub_status,
          event_time: first.event_time,
          scheme: first.scheme,
          secret_index: first.secret_index,
          webhook_attempt: first.webhook_attempt,
          webhook_version: first.webhook_version,
          body: first.body,
          problems: first.problems
        },
        {
          status: "accepted",
          event_status: "RECEIVED",
          event_sub_status: "LINK_GENERATED",
          event_time: "2025-05-22T03:51:14.000Z",
          scheme: "header",
          secret_index: 0,
          webhook_attempt: "1",
          webhook_version: "2025-01-01",
          body: fixture("VKYC_USER_LINK_GENERATED").text,
          problems: null
        }
      )
      const [link] = yield* relay.events.timeline("kyclink_ananya_0001")
      assert.strictEqual(link!.event_time, "2024-02-15T16:53:15.000Z")
    }))

  it.scopedLive("accepts every event type signed with the legacy in-body scheme", () =>
    Effect.gen(function*() {
      const relay = yield* startRelay({ store: yield* make, secrets: [SECRET, FIXTURE_SECRET] })
      for (const f of eventFixtures) {
        const response = yield* post(relay.webhookUrl, f.text)
        assert.deepStrictEqual([response.status, response.body.status], [200, "accepted"], f.eventType)
      }
      const rows = yield* relay.events.list({ quarantined: false, limit: 100 })
      assert.deepStrictEqual(new Set(rows.map((row) => `${row.scheme}:${row.secret_index}`)), new Set(["body:1"]))
    }))

  it.scopedLive("answers 401 to a wrong secret, tampered body or timestamp and a missing header, and stores nothing", () =>
    Effect.gen(function*() {
      const relay = yield* startRelay({ store: yield* make, secrets: [SECRET] })
      const text = fixture("VKYC_USER_CALL_QUEUED").text
      const good = signedHeaders(SECRET, text)
      const attempts: ReadonlyArray<readonly [string, string, Record<string, string>]> = [
        ["wrong secret", text, signedHeaders("not-the-secret", text)],
        ["tampered body", text.replace("USER_QUEUED", "USER_QUEUEE"), good],
        ["tampered timestamp", text, { ...good, "x-webhook-timestamp": String(Number(good["x-webhook-timestamp"]) + 1) }],
        ["missing signature header", text, { "x-webhook-timestamp": good["x-webhook-timestamp"] }],
        ["missing timestamp header", text, { "x-webhook-signature": good["x-webhook-signature"] }],
        ["no signature at all", text.replace(/"signature": "[^"]*"/, "\"signature\": \"\""), {}],
        ["fixture's in-body signature, secret not configured", text, {}]
      ]
      for (const [name, body, headers] of attempts) {
        const response = yield* post(relay.webhookUrl, body, headers)
        assert.strictEqual(response.status, 401, name)
        assert.strictEqual(response.contentType, "application/problem+json", name)
        assert.strictEqual(response.body.type, "invalid-signature", name)
      }
      assert.strictEqual(yield* relay.events.count, 0)
    }))

  it.scopedLive("accepts the previous secret during a rotation and records which one matched", () =>
    Effect.gen(function*() {
      const relay = yield* startRelay({ store: yield* make, secrets: ["new-secret", "old-secret"] })
      const text = fixture("VKYC_USER_CALL_STARTED").text
      const response = yield* post(relay.webhookUrl, text, signedHeaders("old-secret", text))
      assert.strictEqual(response.status, 200)
      const [row] = yield* relay.events.list({ quarantined: false, limit: 1 })
      assert.deepStrictEqual([row!.id, row!.secret_index], [response.body.event_id, 1])
    }))

  it.scopedLive("stores one event for 50 concurrent identical deliveries", () =>
    Effect.gen(function*() {
      const relay = yield* startRelay({ store: yield* make, secrets: [SECRET] })
      const text = fixture("VKYC_AUDITOR_REVIEW_COMPLETED").text
      const headers = signedHeaders(SECRET, text)
      const responses = yield* Effect.all(Array.from({ length: 50 }, () => post(relay.webhookUrl, text, headers)), {
        concurrency: "unbounded"
      })
      assert.deepStrictEqual(responses.map((r) => r.status), Array(50).fill(200))
      const statuses = responses.map((r) => r.body.status as string).sort()
      assert.deepStrictEqual(statuses, ["accepted", ...Array(49).fill("duplicate")])
      assert.strictEqual(new Set(responses.map((r) => r.body.event_id)).size, 1)
      assert.strictEqual(yield* relay.events.count, 1)
    }))

  it.scopedLive("treats a retry signed again with a new timestamp or a new in-body signature as a duplicate", () =>
    Effect.gen(function*() {
      const relay = yield* startRelay({ store: yield* make, secrets: [SECRET, FIXTURE_SECRET] })
      const text = fixture("VKYC_USER_CALL_COMPLETED").text
      const first = yield* post(relay.webhookUrl, text, signedHeaders(SECRET, text, "1746427759733"))
      const retry = yield* post(relay.webhookUrl, text, signedHeaders(SECRET, text, "1746427999999"))
      const legacy = yield* post(relay.webhookUrl, text)
      assert.deepStrictEqual(
        [first.body.status, retry.body.status, legacy.body.status],
        ["accepted", "duplicate", "duplicate"]
      )
      assert.deepStrictEqual([retry.body.event_id, legacy.body.event_id], [first.body.event_id, first.body.event_id])
      assert.strictEqual(yield* relay.events.count, 1)
    }))

  it.scopedLive("treats the same content as a duplicate whatever its layout: compact, indented, keys reordered", () =>
    Effect.gen(function*() {
      const relay = yield* startRelay({ store: yield* make, secrets: [SECRET] })
      const { signature: _, ...content } = JSON.parse(fixture("VKYC_AUDITOR_REVIEW_COMPLETED").text) as Record<string, unknown>
      const reordered = Object.fromEntries(Object.entries(content).reverse())
      const layouts = [JSON.stringify(content), JSON.stringify(content, null, 2), JSON.stringify(reordered), `${JSON.stringify(content)}\n`]
      const answers = []
      for (const text of layouts) answers.push((yield* post(relay.webhookUrl, text, signedHeaders(SECRET, text, "1746427759733"))).body)
      assert.deepStrictEqual(answers.map((a) => a.status), ["accepted", "duplicate", "duplicate", "duplicate"])
      assert.strictEqual(new Set(answers.map((a) => a.event_id)).size, 1)
      assert.strictEqual(yield* relay.events.count, 1)
    }))

  it.scopedLive("quarantines an authentic event of an unknown type or with broken data, and still answers 200", () =>
    Effect.gen(function*() {
      const relay = yield* startRelay({ store: yield* make, secrets: [SECRET] })
      const unknown = JSON.stringify({
        event_type: "BAV_VERIFICATION_COMPLETED",
        event_time: "2025-05-22T03:51:14Z",
        version: "v2",
        data: { verification_id: "bav_1", status: "VALID" }
      })
      const broken = fixture("VKYC_USER_CALL_QUEUED").text
        .replace("\"reference_id\": 10449", "\"reference_id\": \"ten\"")
        .replace("\"event_time\": \"2025-05-23T14:29:02Z\"", "\"event_time\": \"yesterday\"")
        .replace("\"status\": \"PRE_VIDEO_CALL\",", "")
      const a = yield* post(relay.webhookUrl, unknown, signedHeaders(SECRET, unknown))
      const b = yield* post(relay.webhookUrl, broken, signedHeaders(SECRET, broken))
      assert.deepStrictEqual([a.status, a.body.status], [200, "quarantined"])
      assert.deepStrictEqual(a.body.errors, [{ path: "event_type", message: "not an event type kyc-relay knows" }])
      assert.deepStrictEqual([b.status, b.body.status], [200, "quarantined"])
      assert.deepStrictEqual(
        b.body.errors.map((e: { path: string }) => e.path).sort(),
        ["data.reference_id", "data.status", "event_time"]
      )
      assert.notInclude(JSON.stringify(b.body), "ten", "the response does not echo payload values")

      const quarantined = yield* relay.events.list({ quarantined: true, limit: 10 })
      assert.deepStrictEqual(quarantined.map((row) => row.id).sort(), [a.body.event_id, b.body.event_id].sort())
      const unknownRow = quarantined.find((row) => row.id === a.body.event_id)!
      assert.deepStrictEqual(
        [unknownRow.event_type, unknownRow.verification_id, unknownRow.body, JSON.parse(unknownRow.problems!)],
        ["BAV_VERIFICATION_COMPLETED", "bav_1", unknown, a.body.errors]
      )
      const again = yield* post(relay.webhookUrl, unknown, signedHeaders(SECRET, unknown, "1"))
      assert.deepStrictEqual([again.body.status, again.body.event_id], ["duplicate", a.body.event_id])
    }))

  it.scopedLive("keys a quarantined event by its time as an accepted one would be keyed, and a junk time not at all", () =>
    Effect.gen(function*() {
      const relay = yield* startRelay({ store: yield* make, secrets: [SECRET] })
      // Valid time, broken data: a later release that accepts this event must still see its retries as duplicates.
      const broken = fixture("VKYC_USER_CALL_QUEUED").text.replace("\"reference_id\": 10449", "\"reference_id\": \"ten\"")
      // An event_time of 4 000 characters must not make the key too long for the store's index.
      const junk = fixture("VKYC_USER_CALL_QUEUED").text.replace("2025-05-23T14:29:02Z", "9".repeat(4_000))
      const answers = []
      for (const text of [broken, junk]) answers.push(yield* post(relay.webhookUrl, text, signedHeaders(SECRET, text)))
      assert.deepStrictEqual(answers.map((a) => [a.status, a.body.status]), [[200, "quarantined"], [200, "quarantined"]])
      const rows = yield* relay.events.list({ quarantined: true, limit: 10 })
      const keyOf = (id: string) => rows.find((row) => row.id === id)!.dedupe_key
      assert.match(keyOf(answers[0]!.body.event_id), /^2025-05-23T14:29:02\.000Z\|[0-9a-f]{64}$/)
      assert.match(keyOf(answers[1]!.body.event_id), /^\|[0-9a-f]{64}$/)
    }))
})

describe("webhook request handling", () => {
  it.scopedLive("answers 413 to an oversize body, announced or streamed, and stores nothing", () =>
    Effect.gen(function*() {
      const make = STORES[0].make
      const relay = yield* startRelay({ store: yield* make, secrets: [SECRET], maxBodyBytes: 4096 })
      const big = JSON.stringify({ event_type: "VKYC_USER_CALL_QUEUED", pad: "x".repeat(5000) })
      const announced = yield* post(relay.webhookUrl, big, signedHeaders(SECRET, big))
      assert.deepStrictEqual([announced.status, announced.body.type], [413, "body-too-large"])
      const streamed = yield* postChunked(
        relay.webhookUrl,
        Array.from({ length: 64 }, () => Buffer.alloc(1024, 0x20)),
        signedHeaders(SECRET, "")
      )
      assert.strictEqual(streamed, 413)
      const small = fixture("VKYC_USER_CALL_QUEUED").text
      const fine = yield* post(relay.webhookUrl, small, signedHeaders(SECRET, small))
      assert.strictEqual(fine.status, 200)
      assert.strictEqual(yield* relay.events.count, 1)
    }))

  it.scopedLive("answers 400 to a correctly signed body that is not JSON, not UTF-8 or not an object", () =>
    Effect.gen(function*() {
      const relay = yield* startRelay({ store: yield* STORES[0].make, secrets: [SECRET] })
      const bodies: ReadonlyArray<readonly [string, string | Uint8Array, string]> = [
        ["not JSON", "event_type=VKYC_USER_CALL_QUEUED", "The body is not valid JSON"],
        ["truncated JSON", "{\"event_type\":\"VKYC_", "The body is not valid JSON"],
        ["invalid UTF-8", new Uint8Array([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x3a, 0x31, 0x7d]), "The body is not valid UTF-8"],
        ["a JSON array", "[1,2,3]", "The body must be a JSON object"]
      ]
      for (const [name, body, detail] of bodies) {
        const response = yield* post(relay.webhookUrl, body, signedHeaders(SECRET, body))
        assert.strictEqual(response.status, 400, name)
        assert.strictEqual(response.contentType, "application/problem+json", name)
        assert.isTrue(String(response.body.detail).startsWith(detail), `${name}: ${response.body.detail}`)
      }
      // No headers and a body that cannot be read: there is no signature at all, so 401 rather than 400.
      for (const body of ["not json at all", new Uint8Array([0x7b, 0xff, 0x7d])]) {
        const unsigned = yield* post(relay.webhookUrl, body)
        assert.deepStrictEqual([unsigned.status, unsigned.body.type], [401, "invalid-signature"])
        assert.match(unsigned.body.detail, /^No signature to check: the body is not valid (JSON|UTF-8)/)
      }
      assert.strictEqual(yield* relay.events.count, 0)
    }))

  it.scopedLive("honours cashfree.signature: header refuses the legacy scheme, body ignores the headers", () =>
    Effect.gen(function*() {
      const text = fixture("VKYC_USER_LINK_GENERATED").text
      const headerOnly = yield* startRelay({ store: yield* STORES[0].make, secrets: [FIXTURE_SECRET], signature: "header" })
      assert.strictEqual((yield* post(headerOnly.webhookUrl, text)).status, 401)
      const bodyOnly = yield* startRelay({ store: yield* STORES[0].make, secrets: [FIXTURE_SECRET], signature: "body" })
      const wrongHeaders = signedHeaders("unrelated", text)
      assert.strictEqual((yield* post(bodyOnly.webhookUrl, text, wrongHeaders)).status, 200)
    }))

  it.scopedLive("serves health and readiness probes and refuses other methods and paths", () =>
    Effect.gen(function*() {
      const relay = yield* startRelay({ store: yield* STORES[0].make })
      const get = (path: string) =>
        Effect.promise(() => fetch(`${relay.baseUrl}${path}`).then(async (r) => [r.status, await r.json() as any] as const))
      assert.deepStrictEqual(yield* get("/healthz"), [200, { status: "ok" }])
      assert.deepStrictEqual(yield* get("/readyz"), [200, { status: "ready" }])
      const [status, body] = yield* get("/webhooks/cashfree")
      assert.deepStrictEqual([status, body.type], [405, "method-not-allowed"])
      assert.strictEqual((yield* get("/webhooks/cashfree/")).at(0), 404)
    }))
})
