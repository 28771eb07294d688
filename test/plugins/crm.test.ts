import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Either, HashMap, Logger, LogLevel, Redacted, Schedule, Schema } from "effect"
import { createServer } from "node:http"
import type { AddressInfo } from "node:net"
import { CrmPlugin, crmExample } from "../../plugins/crm/index.js"
import { parseConfigText } from "../../src/config/ConfigFile.js"
import type { PluginError } from "../../src/plugin/Plugin.js"
import { assertClean, contextFor, decodeFixture, deliverOnce, label } from "../support/Conformance.js"
import { fixture } from "../support/Fixtures.js"
import type { Answer } from "../support/Receiver.js"
import { eventually, pause, startReceiver } from "../support/Receiver.js"
import { post, signedHeaders, startRelay, tempSqlite } from "../support/Relay.js"

const SECRET = "test-secret"
const TOKEN = "secret-crm-token"

const relayYaml = (crmUrl: string) => `
plugins:
  crm:
    use: ./plugins/crm/index.ts
    url: "${crmUrl}/contacts/{{data.user_id}}"
    headers:
      authorization: "Bearer ${TOKEN}"
routes:
  - match: { event_type: "VKYC_*" }
    to: crm
retry:
  initial_delay: 100ms
dispatch:
  poll_interval: 100ms
`

/** A provider fixture with some `data` fields changed, without its stale in-body signature (it is signed by header). */
const modified = (eventType: string, data: Record<string, unknown>) => {
  const { signature: _, ...event } = JSON.parse(fixture(eventType).text) as Record<string, any>
  return JSON.stringify({ ...event, data: { ...event.data, ...data } })
}

/** Every log line written while `effect` runs (including the relay's fibers it starts), as JSON text. */
const capturingLogs = <A, E, R>(lines: Array<string>, effect: Effect.Effect<A, E, R>) =>
  effect.pipe(
    Effect.provide(Logger.replace(
      Logger.defaultLogger,
      Logger.make(({ annotations, message }) => {
        lines.push(JSON.stringify({ message, annotations: Object.fromEntries(HashMap.toEntries(annotations)) }))
      })
    )),
    Logger.withMinimumLogLevel(LogLevel.Debug)
  )

/** A port nothing listens on: bound once on loopback, then released. */
const closedPort = Effect.async<number>((resume) => {
  const server = createServer()
  server.listen(0, "127.0.0.1", () => {
    const { port } = server.address() as AddressInfo
    server.close(() => resume(Effect.succeed(port)))
  })
})

/** A local CRM that answers every request with one status and JSON body (startReceiver's body is fixed). */
const startJsonCrm = (status: number, body: unknown) =>
  Effect.acquireRelease(
    Effect.async<{ readonly url: string; readonly close: () => void }>((resume) => {
      const server = createServer((req, res) => {
        req.resume()
        req.on("end", () => {
          res.writeHead(status, { "content-type": "application/json" })
          res.end(JSON.stringify(body))
        })
      })
      server.listen(0, "127.0.0.1", () => {
        const { port } = server.address() as AddressInfo
        resume(Effect.succeed({
          url: `http://127.0.0.1:${port}`,
          close: () => {
            server.close()
            server.closeAllConnections()
          }
        }))
      })
    }),
    (crm) => Effect.sync(() => crm.close())
  )

/** Polls `read` until `done` holds, for at most 5 s. */
const waitFor = <A, E>(read: Effect.Effect<A, E>, done: (value: A) => boolean) =>
  read.pipe(
    Effect.repeat({ until: done, schedule: Schedule.spaced("20 millis") }),
    Effect.timeout("5 seconds"),
    Effect.orDie
  )

const settingsFor = (url: string, extra: Record<string, unknown> = {}) => ({
  ...crmExample,
  url: `${url}/contacts/{{data.user_id}}`,
  ...extra
})

const messageOf = (outcome: Either.Either<unknown, PluginError>) => Either.isLeft(outcome) ? outcome.left.message : ""

describe("crm plugin through the relay", () => {
  it.scopedLive("upserts with the id percent-encoded in the path, mapped JSON fields and a stable Idempotency-Key; skips stale events", () => {
    const lines: Array<string> = []
    return capturingLogs(
      lines,
      Effect.gen(function*() {
        const crm = yield* startReceiver((_, index) => ({ status: index === 0 ? 503 : 200 }))
        const relay = yield* startRelay({ store: yield* tempSqlite, secrets: [SECRET], extra: relayYaml(crm.url) })
        const send = (text: string) => post(relay.webhookUrl, text, signedHeaders(SECRET, text))

        const queued = yield* send(modified("VKYC_USER_CALL_QUEUED", { verification_id: "vkyc_crm_enc", user_id: "team a/42" }))
        assert.strictEqual(queued.body.status, "accepted")
        yield* eventually(() => crm.received.length === 2)
        const [first, retry] = crm.received
        assert.deepStrictEqual([first!.method, first!.path], ["PUT", "/contacts/team%20a%2F42"])
        assert.deepStrictEqual([retry!.method, retry!.path], ["PUT", "/contacts/team%20a%2F42"])
        assert.strictEqual(first!.headers["idempotency-key"], `kyc-relay:${queued.body.event_id}:crm`)
        assert.strictEqual(retry!.headers["idempotency-key"], first!.headers["idempotency-key"], "stable across a retry")
        assert.strictEqual(first!.headers["content-type"], "application/json")
        assert.strictEqual(first!.headers.authorization, `Bearer ${TOKEN}`)
        assert.deepStrictEqual(first!.json, {
          verification_id: "vkyc_crm_enc",
          status: "PRE_VIDEO_CALL",
          sub_status: "USER_QUEUED",
          event_type: "VKYC_USER_CALL_QUEUED",
          event_time: "2025-05-23T14:29:02.000Z",
          stale: false
        })
        assert.strictEqual(retry!.body, first!.body)
        yield* waitFor(relay.deliveries.countByState, (counts) => counts.done === 1)
        const [delivery] = yield* relay.deliveries.list({ eventId: queued.body.event_id, limit: 10 })
        assert.deepStrictEqual([delivery!.state, delivery!.attempts], ["done", 2])
        const attempts = yield* relay.deliveries.attempts(delivery!.id)
        assert.deepStrictEqual(attempts.map((a) => [a.outcome, a.error]), [["Retryable", "Retryable: PUT HTTP 503"], ["done", null]])

        // The auditor's decision, then an event from before it: the late one must not reach the CRM.
        yield* send(fixture("VKYC_AUDITOR_REVIEW_COMPLETED").text)
        const late = yield* send(fixture("VKYC_USER_LINK_GENERATED").text)
        yield* eventually(() => crm.received.length === 3)
        yield* waitFor(relay.deliveries.countByState, (counts) => counts.done === 3)
        yield* pause(300)
        assert.strictEqual(crm.received.length, 3, "the stale event was not sent")
        assert.deepStrictEqual(
          [crm.received[2]!.path, crm.received[2]!.json.event_type, crm.received[2]!.json.stale],
          ["/contacts/user_58213", "VKYC_AUDITOR_REVIEW_COMPLETED", false]
        )
        const [skipped] = yield* relay.deliveries.list({ eventId: late.body.event_id, limit: 10 })
        assert.deepStrictEqual([skipped!.state, skipped!.attempts], ["done", 1])
        assert.isTrue(lines.some((line) => line.includes("Retryable: PUT HTTP 503")), "the relay's log lines were captured")
        assert.isTrue(lines.some((line) => line.includes("stale event not sent to the CRM")))
        assertClean([...lines, ...attempts.map((a) => a.error ?? "")], [TOKEN])
      })
    )
  })

  it.scopedLive("a duplicate webhook makes exactly one CRM call", () =>
    Effect.gen(function*() {
      const crm = yield* startReceiver()
      const relay = yield* startRelay({ store: yield* tempSqlite, secrets: [SECRET], extra: relayYaml(crm.url) })
      const text = fixture("VKYC_USER_CALL_STARTED").text
      const first = yield* post(relay.webhookUrl, text, signedHeaders(SECRET, text))
      // Cashfree's own retry: the same body signed again later.
      const again = yield* post(relay.webhookUrl, text, signedHeaders(SECRET, text, String(Date.now() + 1000)))
      assert.deepStrictEqual([first.body.status, again.body.status], ["accepted", "duplicate"])
      yield* eventually(() => crm.received.length >= 1)
      yield* pause(300)
      assert.strictEqual(crm.received.length, 1)
      assert.deepStrictEqual(yield* relay.deliveries.countByState, { done: 1 })
    }))
})

interface Row {
  readonly name: string
  readonly answer: Answer
  readonly expect: string | RegExp
  readonly message?: string
}

const ROWS: ReadonlyArray<Row> = [
  { name: "200", answer: { status: 200 }, expect: "done" },
  { name: "409 (already applied)", answer: { status: 409 }, expect: "done" },
  { name: "429 with Retry-After: 3", answer: { status: 429, headers: { "retry-after": "3" } }, expect: "RateLimited:3000", message: "PUT HTTP 429" },
  { name: "503", answer: { status: 503 }, expect: "Retryable", message: "PUT HTTP 503" },
  { name: "408", answer: { status: 408 }, expect: "Retryable", message: "PUT HTTP 408" },
  { name: "400", answer: { status: 400 }, expect: "Permanent", message: "PUT HTTP 400" },
  { name: "404", answer: { status: 404 }, expect: "Permanent", message: "PUT HTTP 404" }
]

describe("crm plugin conformance", () => {
  it("decodes the example settings, and fills in the defaults", () => {
    const decode = Schema.decodeUnknownSync(CrmPlugin.settings, { onExcessProperty: "error" })
    const example = decode(crmExample)
    assert.strictEqual(example.method, "PUT")
    assert.strictEqual(Redacted.value(example.headers.authorization!), `Bearer ${TOKEN}`)
    assert.notInclude(JSON.stringify(example), TOKEN)
    const minimal = decode({ url: "https://crm.example.com/contacts/{{data.user_id}}" })
    assert.deepStrictEqual(
      { method: minimal.method, headers: minimal.headers, personal_fields: minimal.personal_fields, skip_stale: minimal.skip_stale },
      { method: "PUT", headers: {}, personal_fields: [], skip_stale: true }
    )
    assert.deepStrictEqual(Object.keys(minimal.body), ["verification_id", "status", "sub_status", "event_type", "event_time", "stale"])
  })

  it("refuses URLs that are not http(s), let a value choose the host, or skip percent-encoding; and bad headers", () => {
    const decode = Schema.decodeUnknownEither(CrmPlugin.settings, { onExcessProperty: "error" })
    for (const url of [
      "ftp://crm.example.com/contacts",
      "crm.example.com/contacts",
      "https://{{params.host}}/contacts",
      "https://crm.example.com{{data.user_id}}",
      "https://crm.example.com/contacts/{{{data.user_id}}}",
      "https://crm.example.com/contacts/{{&data.user_id}}",
      "https://crm.example.com/contacts/{{#data.user_id}}"
    ]) {
      assert.isTrue(Either.isLeft(decode({ url })), url)
    }
    assert.isTrue(Either.isRight(decode({ url: "http://127.0.0.1:8080" })))
    assert.isTrue(Either.isLeft(decode({ url: crmExample.url, method: "GET" })))
    assert.isTrue(Either.isLeft(decode({ url: crmExample.url, headers: { "Idempotency-Key": "x" } })))
    assert.isTrue(Either.isLeft(decode({ url: crmExample.url, personal_fields: ["aadhaar"] })))
    // A refused header value is never repeated in the error.
    for (const value of [`Bearer ${TOKEN}\r\nx-evil: 1`, 4242424242]) {
      const refused = decode({ url: crmExample.url, headers: { authorization: value } })
      assert.isTrue(Either.isLeft(refused))
      assert.notInclude(String(Either.isLeft(refused) ? refused.left : ""), String(value).slice(0, 16))
    }
  })

  it.effect("takes header values from the environment and keeps them out of config output", () =>
    Effect.gen(function*() {
      process.env.KYC_RELAY_TEST_CRM_TOKEN = TOKEN
      const loaded = yield* parseConfigText(
        [
          "cashfree:",
          "  secrets: [x]",
          "store:",
          "  url: \"sqlite::memory:\"",
          "plugins:",
          "  crm:",
          "    use: ./plugins/crm/index.ts",
          "    url: https://crm.example.com/contacts/{{data.user_id}}",
          "    headers:",
          "      authorization: \"Bearer ${KYC_RELAY_TEST_CRM_TOKEN}\"",
          "routes:",
          "  - to: crm"
        ].join("\n"),
        "crm.yaml"
      ).pipe(Effect.ensuring(Effect.sync(() => delete process.env.KYC_RELAY_TEST_CRM_TOKEN)))
      const settings = loaded.instances.get("crm")!.settings as { readonly headers: Record<string, Redacted.Redacted> }
      assert.strictEqual(Redacted.value(settings.headers.authorization!), `Bearer ${TOKEN}`)
      assert.notInclude(JSON.stringify(settings), TOKEN)
      assert.notInclude(String(settings.headers.authorization), TOKEN)
    }))

  for (const row of ROWS) {
    it.scopedLive(`CRM answers ${row.name} → ${row.expect}`, () =>
      Effect.gen(function*() {
        const crm = yield* startReceiver([row.answer])
        const { outcome, logs } = yield* deliverOnce(CrmPlugin, settingsFor(crm.url), decodeFixture("VKYC_USER_CALL_QUEUED"))
        assert.strictEqual(label(outcome), row.expect)
        assert.strictEqual(messageOf(outcome), row.message ?? "")
        assert.strictEqual(crm.received.length, 1)
        assert.strictEqual(crm.received[0]!.path, "/contacts/user_58213")
        assert.strictEqual(crm.received[0]!.headers.authorization, `Bearer ${TOKEN}`)
        assertClean([...logs, messageOf(outcome)], [TOKEN])
      }))
  }

  it.scopedLive("CRM answers 429 with an HTTP-date Retry-After → RateLimited until that date", () =>
    Effect.gen(function*() {
      const crm = yield* startReceiver([{ status: 429, headers: { "retry-after": new Date(Date.now() + 10_000).toUTCString() } }])
      const { outcome, logs } = yield* deliverOnce(CrmPlugin, settingsFor(crm.url), decodeFixture("VKYC_USER_CALL_QUEUED"))
      assert.isTrue(Either.isLeft(outcome) && outcome.left._tag === "RateLimited", label(outcome))
      const wait = Either.isLeft(outcome) && outcome.left._tag === "RateLimited" ? Duration.toMillis(outcome.left.retryAfter) : 0
      // The date has one-second precision and some time passes before it is read.
      assert.isAtLeast(wait, 8_000)
      assert.isAtMost(wait, 10_000)
      assertClean([...logs, messageOf(outcome)], [TOKEN])
    }))

  it.scopedLive("connection refused → Retryable, naming the method and error code only", () =>
    Effect.gen(function*() {
      const port = yield* closedPort
      const { outcome, logs } = yield* deliverOnce(
        CrmPlugin,
        settingsFor(`http://127.0.0.1:${port}`),
        decodeFixture("VKYC_USER_CALL_QUEUED")
      )
      assert.strictEqual(label(outcome), "Retryable")
      assert.strictEqual(messageOf(outcome), "PUT request failed: ECONNREFUSED")
      assertClean([...logs, messageOf(outcome)], [TOKEN, String(port)])
    }))

  it.scopedLive("returns the CRM's JSON id as the remote id", () =>
    Effect.gen(function*() {
      const crm = yield* startJsonCrm(201, { id: 90210, name: "ignored" })
      const { outcome } = yield* deliverOnce(CrmPlugin, settingsFor(crm.url), decodeFixture("VKYC_USER_CALL_QUEUED"))
      assert.deepStrictEqual(Either.getOrUndefined(outcome), { remoteId: "90210" })
      const text = yield* startJsonCrm(200, { id: "contact_7" })
      const second = yield* deliverOnce(CrmPlugin, settingsFor(text.url), decodeFixture("VKYC_USER_CALL_QUEUED"))
      assert.deepStrictEqual(Either.getOrUndefined(second.outcome), { remoteId: "contact_7" })
    }))

  it.scopedLive("a stale event is done without a call, unless skip_stale is false (then it says stale: true)", () =>
    Effect.gen(function*() {
      const crm = yield* startReceiver()
      const stale = contextFor({ lifecycle: { stale: true, current: null } })
      const event = decodeFixture("VKYC_USER_LINK_GENERATED")
      const skipped = yield* deliverOnce(CrmPlugin, settingsFor(crm.url), event, stale)
      assert.strictEqual(label(skipped.outcome), "done")
      assert.strictEqual(crm.received.length, 0)
      const sent = yield* deliverOnce(CrmPlugin, { url: `${crm.url}/contacts/{{data.user_id}}`, skip_stale: false }, event, stale)
      assert.strictEqual(label(sent.outcome), "done")
      assert.strictEqual(crm.received.length, 1)
      assert.strictEqual(crm.received[0]!.json.stale, true)
      assertClean([...skipped.logs, ...sent.logs], [TOKEN])
    }))

  it.scopedLive("method and body mapping: exact tags keep their JSON type, personal fields only when opted in", () =>
    Effect.gen(function*() {
      const crm = yield* startReceiver()
      const body = {
        ref: "{{data.reference_id}}",
        email: "{{data.email}}",
        note: "{{event_type}} for <{{data.name}}> & co",
        missing: "{{data.user_id}}"
      }
      const event = decodeFixture("KYC_LINK_SUCCESS")
      const url = `${crm.url}/contacts/{{verification_id}}`
      const without = yield* deliverOnce(CrmPlugin, { url, method: "POST", body }, event)
      const opted = yield* deliverOnce(CrmPlugin, { url, method: "PATCH", body, personal_fields: ["email", "name"] }, event)
      assert.deepStrictEqual([label(without.outcome), label(opted.outcome)], ["done", "done"])
      assert.deepStrictEqual(crm.received.map((r) => [r.method, r.path]), [
        ["POST", "/contacts/kyclink_ananya_0001"],
        ["PATCH", "/contacts/kyclink_ananya_0001"]
      ])
      assert.deepStrictEqual(crm.received[0]!.json, { ref: 235461, email: null, note: "KYC_LINK_SUCCESS for <> & co", missing: null })
      assert.deepStrictEqual(crm.received[1]!.json, {
        ref: 235461,
        email: "ananya.sharma@example.com",
        note: "KYC_LINK_SUCCESS for <Ananya Sharma> & co",
        missing: null
      })
    }))

  it.scopedLive("an event without the URL's id → Permanent, with no call", () =>
    Effect.gen(function*() {
      const crm = yield* startReceiver()
      const { outcome, logs } = yield* deliverOnce(CrmPlugin, settingsFor(crm.url), decodeFixture("KYC_LINK_SUCCESS"))
      assert.strictEqual(label(outcome), "Permanent")
      assert.match(messageOf(outcome), /^PUT: the URL needs \{\{data\.user_id\}\}/)
      assert.strictEqual(crm.received.length, 0)
      assertClean([...logs, messageOf(outcome)], [TOKEN])
    }))
})
