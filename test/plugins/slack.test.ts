import { assert, describe, it } from "@effect/vitest"
import { Effect, Either, Redacted, Schema } from "effect"
import { createServer, type IncomingHttpHeaders } from "node:http"
import type { AddressInfo } from "node:net"
import { slackExample, SlackPlugin } from "../../plugins/slack/index.js"
import { CashfreeEvent } from "../../src/domain/Event.js"
import { issuesOf, pathText } from "../../src/domain/Issues.js"
import { assertClean, contextFor, decodeFixture, deliverOnce, label } from "../support/Conformance.js"
import { fixture } from "../support/Fixtures.js"
import { eventually, pause } from "../support/Receiver.js"
import { post, signedHeaders, startRelay, tempSqlite } from "../support/Relay.js"

const SECRET = "test-secret"
const TOKEN = "xoxb-test-1234567890-abcdefSECRET"
const HOSTILE_REMARK = "<!channel> & <script>"
const ESCAPED_REMARK = "&lt;!channel&gt; &amp; &lt;script&gt;"

interface SlackCall {
  readonly path: string
  readonly headers: IncomingHttpHeaders
  /** The method's arguments, form- or JSON-encoded as sent, with `blocks` parsed. */
  readonly args: Record<string, any>
}

interface SlackAnswer {
  readonly status?: number
  readonly headers?: Record<string, string>
  /** JSON unless a string; default `{ ok: true, channel, ts }`. */
  readonly body?: unknown
  /** Never answer: for interruption. */
  readonly hang?: boolean
}

const parseArgs = (headers: IncomingHttpHeaders, body: string): Record<string, any> => {
  if ((headers["content-type"] ?? "").startsWith("application/json")) return JSON.parse(body)
  const args: Record<string, any> = Object.fromEntries(new URLSearchParams(body))
  if (typeof args.blocks === "string") args.blocks = JSON.parse(args.blocks)
  return args
}

/**
 * A loopback stand-in for the Slack Web API (`POST /api/chat.postMessage`) and incoming webhooks: records each
 * call and answers from `answer`; by default `{ ok: true, channel, ts }` with a fresh ts.
 */
const startSlack = (answer: (call: SlackCall, index: number) => SlackAnswer = () => ({})) =>
  Effect.acquireRelease(
    Effect.async<{ readonly url: string; readonly calls: Array<SlackCall>; readonly aborted: Array<number>; readonly close: () => void }>(
      (resume) => {
        const calls: Array<SlackCall> = []
        const aborted: Array<number> = []
        const server = createServer((req, res) => {
          let body = ""
          req.setEncoding("utf8")
          req.on("data", (chunk) => (body += chunk))
          req.on("end", () => {
            const call = { path: req.url ?? "", headers: req.headers, args: parseArgs(req.headers, body) }
            const index = calls.length
            calls.push(call)
            const reply = answer(call, index)
            if (reply.hang === true) {
              res.on("close", () => aborted.push(index))
              return
            }
            const payload = reply.body ?? { ok: true, channel: call.args.channel, ts: `1716530000.${String(index + 1).padStart(6, "0")}` }
            res.writeHead(reply.status ?? 200, {
              "content-type": typeof payload === "string" ? "text/plain" : "application/json",
              ...reply.headers
            })
            res.end(typeof payload === "string" ? payload : JSON.stringify(payload))
          })
        })
        server.listen(0, "127.0.0.1", () => {
          const { port } = server.address() as AddressInfo
          resume(Effect.succeed({
            url: `http://127.0.0.1:${port}`,
            calls,
            aborted,
            close: () => {
              server.close()
              server.closeAllConnections()
            }
          }))
        })
      }
    ),
    (slack) => Effect.sync(() => slack.close())
  )

/** A loopback port nothing listens on. */
const closedPort = Effect.async<number>((resume) => {
  const server = createServer()
  server.listen(0, "127.0.0.1", () => {
    const { port } = server.address() as AddressInfo
    server.close(() => resume(Effect.succeed(port)))
  })
})

/** A fixture with some of its data replaced, as the relay would decode it. */
const eventWith = (eventType: string, data: Record<string, unknown>) => {
  const raw = JSON.parse(fixture(eventType).text)
  return JSON.stringify({ ...raw, data: { ...raw.data, ...data } })
}
const decodeEvent = (text: string) => Schema.decodeUnknownSync(Schema.parseJson(CashfreeEvent))(text)

const settingsFor = (apiUrl: string, more: Record<string, unknown> = {}) => ({
  ...slackExample,
  token: TOKEN,
  api_url: apiUrl,
  ...more
})

const textsOf = (calls: ReadonlyArray<SlackCall>) => calls.map((call) => JSON.stringify(call.args))

describe("slack plugin through the running relay", () => {
  const config = (apiUrl: string) => `
plugins:
  slack-ops:
    use: ./plugins/slack/index.ts
    token: "\${SLACK_BOT_TOKEN}"
    channel: C0DEFAULT
    api_url: ${apiUrl}
    decisions:
      AUDITOR_APPROVED: { channel: C0APPROVED }
      AUDITOR_REJECTED: { channel: C0REJECTED, mention: "<!subteam^S0RISK>" }
routes:
  - to: slack-ops
dispatch:
  poll_interval: 100ms
`
  const withToken = Effect.acquireRelease(
    Effect.sync(() => {
      const before = process.env.SLACK_BOT_TOKEN
      process.env.SLACK_BOT_TOKEN = TOKEN
      return before
    }),
    (before) =>
      Effect.sync(() => {
        if (before === undefined) delete process.env.SLACK_BOT_TOKEN
        else process.env.SLACK_BOT_TOKEN = before
      })
  )
  const send = (url: string, text: string) => post(url, text, signedHeaders(SECRET, text))

  it.scopedLive("posts each auditor decision to its channel with its mention, escaped, with the bot token", () =>
    Effect.gen(function*() {
      yield* withToken
      const slack = yield* startSlack()
      const relay = yield* startRelay({ store: yield* tempSqlite, secrets: [SECRET], extra: config(`${slack.url}/api/`) })
      const approved = yield* send(
        relay.webhookUrl,
        eventWith("VKYC_AUDITOR_REVIEW_COMPLETED", { auditor_remarks: HOSTILE_REMARK })
      )
      const rejected = yield* send(
        relay.webhookUrl,
        eventWith("VKYC_AUDITOR_REVIEW_COMPLETED", {
          verification_id: "vkyc_onb_9c0d44",
          sub_status: "AUDITOR_REJECTED",
          auditor_remarks: "Face does not match the document",
          agent_remarks: null
        })
      )
      yield* send(relay.webhookUrl, fixture("VKYC_USER_CALL_QUEUED").text)
      assert.deepStrictEqual([approved.body.status, rejected.body.status], ["accepted", "accepted"])
      yield* eventually(() => slack.calls.length === 3)

      for (const call of slack.calls) {
        assert.strictEqual(call.path, "/api/chat.postMessage")
        assert.strictEqual(call.headers.authorization, `Bearer ${TOKEN}`)
        assert.strictEqual(call.args.unfurl_links, "false")
      }
      const byChannel = Object.fromEntries(slack.calls.map((call) => [call.args.channel, call.args]))
      assert.deepStrictEqual(Object.keys(byChannel).sort(), ["C0APPROVED", "C0DEFAULT", "C0REJECTED"])

      const ok = byChannel.C0APPROVED!
      assert.strictEqual(
        ok.text,
        `VKYC_AUDITOR_REVIEW_COMPLETED for vkyc_onb_7f3a21: AUDITOR_REVIEWED / AUDITOR_APPROVED. Auditor: ${ESCAPED_REMARK}`
      )
      assert.deepStrictEqual(ok.blocks, [
        { type: "section", text: { type: "mrkdwn", text: "*VKYC_AUDITOR_REVIEW_COMPLETED · vkyc_onb_7f3a21*" } },
        {
          type: "section",
          fields: [
            { type: "mrkdwn", text: "*Event*\nVKYC_AUDITOR_REVIEW_COMPLETED" },
            { type: "mrkdwn", text: "*Verification*\nvkyc_onb_7f3a21" },
            { type: "mrkdwn", text: "*Status*\nAUDITOR_REVIEWED / AUDITOR_APPROVED" },
            { type: "mrkdwn", text: "*Reference*\n10449" }
          ]
        },
        { type: "section", text: { type: "mrkdwn", text: `*Auditor remarks*\n${ESCAPED_REMARK}\n\n*Agent remarks*\nGood to go` } },
        { type: "context", elements: [{ type: "mrkdwn", text: `2025-05-24T06:10:00.000Z · event ${approved.body.event_id}` }] }
      ])

      const no = byChannel.C0REJECTED!
      assert.strictEqual(
        no.text,
        "<!subteam^S0RISK> VKYC_AUDITOR_REVIEW_COMPLETED for vkyc_onb_9c0d44: AUDITOR_REVIEWED / AUDITOR_REJECTED. " +
          "Auditor: Face does not match the document"
      )
      assert.strictEqual(no.blocks[0].text.text, "<!subteam^S0RISK> *VKYC_AUDITOR_REVIEW_COMPLETED · vkyc_onb_9c0d44*")
      assert.strictEqual(no.blocks[2].text.text, "*Auditor remarks*\nFace does not match the document")

      assert.match(byChannel.C0DEFAULT!.text, /^VKYC_USER_CALL_QUEUED for /)
      const sent = textsOf(slack.calls)
      assert.isFalse(sent.some((text) => text.includes("<!channel>") || text.includes("<script>")), "remarks escaped")
      assertClean(sent, [])

      yield* pause(200)
      const delivered = yield* relay.deliveries.list({ limit: 10 })
      assert.deepStrictEqual(delivered.map((d) => d.state), ["done", "done", "done"])
      assert.strictEqual(slack.calls.length, 3)
    }))

  it.scopedLive("a webhook delivered again (concurrently, or re-signed later) still makes one Slack message", () =>
    Effect.gen(function*() {
      yield* withToken
      const slack = yield* startSlack()
      const relay = yield* startRelay({ store: yield* tempSqlite, secrets: [SECRET], extra: config(`${slack.url}/api/`) })
      const text = fixture("VKYC_AUDITOR_REVIEW_COMPLETED").text
      const headers = signedHeaders(SECRET, text)
      const first = yield* Effect.all([post(relay.webhookUrl, text, headers), post(relay.webhookUrl, text, headers)], {
        concurrency: "unbounded"
      })
      yield* eventually(() => slack.calls.length === 1)
      const later = yield* post(relay.webhookUrl, text, signedHeaders(SECRET, text, String(Date.now() + 1000)))
      assert.deepStrictEqual([...first.map((r) => r.body.status).sort(), later.body.status], ["accepted", "duplicate", "duplicate"])
      yield* pause(500)
      assert.strictEqual(slack.calls.length, 1)
      assert.deepStrictEqual(yield* relay.deliveries.countByState, { done: 1 })
    }))
})

interface Row {
  readonly name: string
  readonly answer: SlackAnswer
  readonly outcome: string
  readonly message?: string
}

const TABLE: ReadonlyArray<Row> = [
  { name: "ok: posted", answer: {}, outcome: "done" },
  {
    name: "HTTP 429 ratelimited with Retry-After: 7",
    answer: { status: 429, headers: { "retry-after": "7" }, body: { ok: false, error: "ratelimited" } },
    outcome: "RateLimited:7000",
    message: "Slack rate limited (HTTP 429)"
  },
  {
    name: "HTTP 429 without Retry-After",
    answer: { status: 429, body: { ok: false, error: "ratelimited" } },
    outcome: "RateLimited:30000",
    message: "Slack rate limited (HTTP 429)"
  },
  {
    name: "ok:false ratelimited at HTTP 200 with Retry-After: 5",
    answer: { headers: { "retry-after": "5" }, body: { ok: false, error: "ratelimited" } },
    outcome: "RateLimited:5000",
    message: "Slack error ratelimited"
  },
  ...["channel_not_found", "invalid_auth", "not_authed", "not_in_channel", "is_archived", "invalid_blocks"].map((code) => ({
    name: code,
    answer: { body: { ok: false, error: code } },
    outcome: "Permanent",
    message: `Slack error ${code}`
  })),
  {
    name: "internal_error (Slack's own trouble)",
    answer: { body: { ok: false, error: "internal_error" } },
    outcome: "Retryable",
    message: "Slack error internal_error"
  },
  { name: "HTTP 503", answer: { status: 503, body: "upstream down" }, outcome: "Retryable", message: "Slack HTTP 503" },
  {
    name: "HTTP 500 with a code",
    answer: { status: 500, body: { ok: false, error: "fatal_error" } },
    outcome: "Retryable",
    message: "Slack HTTP 500 fatal_error"
  },
  { name: "HTTP 404 (wrong api_url)", answer: { status: 404, body: "no such page" }, outcome: "Permanent", message: "Slack HTTP 404" },
  {
    name: "HTTP 200 that is not Web API JSON, echoing the token",
    answer: { body: `<html>Bearer ${TOKEN}</html>` },
    outcome: "Permanent",
    message: "Slack's answer was not Web API JSON (check api_url)"
  }
]

describe("slack plugin conformance", () => {
  const event = decodeFixture("VKYC_AUDITOR_REVIEW_COMPLETED")

  it("decodes the example settings, keeps the token redacted, and refuses mistakes by key", () => {
    // As the host decodes an instance's block and reports its problems.
    const decode = Schema.decodeUnknownEither(SlackPlugin.settings, { errors: "all", onExcessProperty: "error" })
    const example = decode(slackExample)
    assert.isTrue(Either.isRight(example))
    const settings = Either.getOrThrow(decode({ ...slackExample, token: TOKEN }))
    assert.strictEqual(Redacted.value(settings.token!), TOKEN)
    assert.notInclude(`${String(settings.token)} ${JSON.stringify(settings)}`, TOKEN)

    const problems = (raw: unknown) =>
      Either.match(decode(raw), {
        onRight: () => [],
        onLeft: (error) => issuesOf(error).map((issue) => `${pathText(issue.path)}: ${issue.message}`)
      })
    const { token: _token, ...noToken } = slackExample
    assert.deepStrictEqual(problems(noToken), ["token: required: a bot token such as \"${SLACK_BOT_TOKEN}\" (or give incoming_webhook)"])
    assert.deepStrictEqual(problems({ ...slackExample, decisions: { AUDITOR_APROVED: { channel: "C1" } } }).map((p) => p.split(":")[0]), [
      "decisions.AUDITOR_APROVED"
    ])
    assert.deepStrictEqual(problems({ ...slackExample, decisions: { AUDITOR_REJECTED: { mention: "@risk" } } }), [
      "decisions.AUDITOR_REJECTED.mention: Slack mention syntax, such as <!subteam^S0123ABC>, <@U0123ABC> or <!here>"
    ])
    assert.match(problems({ ...slackExample, title: "{{#open}}" })[0]!, /^title: not a valid template/)
    assert.deepStrictEqual(problems({ ...slackExample, colour: "red" }).map((p) => p.split(":")[0]), ["colour"])
    const hook = "https://hooks.slack.com/services/T000/B000/SECRETPART"
    assert.deepStrictEqual(problems({ ...slackExample, incoming_webhook: hook }).map((p) => p.split(":")[0]), [
      "token",
      "channel",
      "api_url",
      "decisions.AUDITOR_APPROVED.channel",
      "decisions.AUDITOR_REJECTED.channel"
    ])
    assert.deepStrictEqual(problems({ incoming_webhook: hook, decisions: { AUDITOR_REJECTED: { mention: "<!here>" } } }), [])
    assert.notInclude(problems({ incoming_webhook: "hooks.slack.com/services/T000/B000/SECRETPART" }).join("\n"), "SECRETPART")
  })

  for (const row of TABLE) {
    it.scopedLive(`Web API: ${row.name} → ${row.outcome}`, () =>
      Effect.gen(function*() {
        const slack = yield* startSlack(() => row.answer)
        const { logs, outcome } = yield* deliverOnce(SlackPlugin, settingsFor(`${slack.url}/api/`), event)
        assert.strictEqual(label(outcome), row.outcome)
        assert.strictEqual(slack.calls.length, 1, "the client does not retry on its own")
        const message = Either.isLeft(outcome) ? outcome.left.message : undefined
        assert.strictEqual(message, row.message)
        if (Either.isRight(outcome)) assert.deepStrictEqual(outcome.right, { remoteId: "1716530000.000001" })
        assertClean([...logs, message ?? ""], [TOKEN, "Looks Good", "Good to go"])
      }))
  }

  it.scopedLive("Web API: connection refused → Retryable", () =>
    Effect.gen(function*() {
      const port = yield* closedPort
      const { logs, outcome } = yield* deliverOnce(SlackPlugin, settingsFor(`http://127.0.0.1:${port}/api/`), event)
      assert.strictEqual(label(outcome), "Retryable")
      const message = Either.isLeft(outcome) ? outcome.left.message : ""
      assert.strictEqual(message, "Slack not reached: ECONNREFUSED")
      assertClean([...logs, message], [TOKEN])
    }))

  it.scopedLive("an interrupted call (the host's timeout) aborts the request instead of leaving it running", () =>
    Effect.gen(function*() {
      const slack = yield* startSlack(() => ({ hang: true }))
      const result = yield* deliverOnce(SlackPlugin, settingsFor(`${slack.url}/api/`), event).pipe(
        Effect.timeoutOption("300 millis")
      )
      assert.isTrue(result._tag === "None")
      yield* eventually(() => slack.aborted.length === 1, 2000)
    }))

  it.scopedLive("leaves personal data out unless opted in, field by field", () =>
    Effect.gen(function*() {
      const slack = yield* startSlack()
      const kycLink = decodeFixture("KYC_LINK_SUCCESS")
      yield* deliverOnce(SlackPlugin, settingsFor(`${slack.url}/api/`), kycLink)
      yield* deliverOnce(SlackPlugin, settingsFor(`${slack.url}/api/`, { personal_fields: ["name", "email"] }), kycLink)
      const [plain, opted] = slack.calls
      assertClean(textsOf([plain!]), [])
      assert.strictEqual(plain!.args.text, "KYC_LINK_SUCCESS for kyclink_ananya_0001: SUCCESS")
      const fields = (call: SlackCall) => call.args.blocks[1].fields.map((f: { text: string }) => f.text)
      assert.deepStrictEqual(fields(plain!), [
        "*Event*\nKYC_LINK_SUCCESS",
        "*Verification*\nkyclink_ananya_0001",
        "*Status*\nSUCCESS",
        "*Reference*\n235461",
        "*Steps*\nOFFLINE_AADHAAR_VERIFICATION: SUCCESS\nPANDETAILS_VERIFICATION: SUCCESS\n" +
        "BANKDETAILS_VALIDATION: SUCCESS\nUPIDETAILS_VALIDATION: SUCCESS"
      ])
      assert.deepStrictEqual(fields(opted!).slice(5), ["*Name*\nAnanya Sharma", "*Email*\nananya.sharma@example.com"])
      assert.notInclude(JSON.stringify(opted!.args), "9876543210")
    }))

  it.scopedLive("marks stale events, and renders custom templates with escaping and route params", () =>
    Effect.gen(function*() {
      const slack = yield* startSlack()
      const hostile = decodeEvent(eventWith("VKYC_USER_CALL_STARTED", { agent_remarks: HOSTILE_REMARK }))
      const ctx = contextFor({
        attempt: 2,
        params: { team: "KYC <ops>" },
        lifecycle: {
          stale: true,
          current: {
            eventId: "evt_0",
            eventType: "VKYC_AUDITOR_REVIEW_COMPLETED",
            status: "AUDITOR_REVIEWED",
            subStatus: "AUDITOR_APPROVED",
            eventTime: "2025-05-24T06:10:00.000Z",
            rank: 4,
            terminal: true
          }
        }
      })
      const settings = settingsFor(`${slack.url}/api/`, {
        title: "{{params.team}}: {{data.agent_remarks}}",
        text: "{{verification_id}} {{data.agent_remarks}} {{data.name}}"
      })
      const { outcome } = yield* deliverOnce(SlackPlugin, settings, hostile, ctx)
      assert.strictEqual(label(outcome), "done")
      const { args } = slack.calls[0]!
      assert.strictEqual(args.text, `vkyc_onb_7f3a21 ${ESCAPED_REMARK}`)
      assert.strictEqual(args.blocks[0].text.text, `*KYC &lt;ops&gt;: ${ESCAPED_REMARK}*`)
      assert.deepStrictEqual(args.blocks[1], {
        type: "context",
        elements: [{
          type: "mrkdwn",
          text: ":warning: *Stale:* the verification is already at AUDITOR_REVIEWED / AUDITOR_APPROVED (VKYC_AUDITOR_REVIEW_COMPLETED)"
        }]
      })
      assert.match(args.blocks.at(-1).elements[0].text, / · attempt 2$/)
    }))
})

describe("slack plugin with an incoming webhook", () => {
  const event = decodeFixture("VKYC_AUDITOR_REVIEW_COMPLETED")
  const hookSettings = (url: string) => ({
    incoming_webhook: `${url}/services/T000/B000/XXXX`,
    decisions: { AUDITOR_APPROVED: { mention: "<!here>" } }
  })

  it.scopedLive("posts the same blocks as JSON", () =>
    Effect.gen(function*() {
      const slack = yield* startSlack(() => ({ body: "ok" }))
      const { outcome } = yield* deliverOnce(SlackPlugin, hookSettings(slack.url), event)
      assert.deepStrictEqual(Either.getOrThrow(outcome), {})
      const [call] = slack.calls
      assert.strictEqual(call!.path, "/services/T000/B000/XXXX")
      assert.strictEqual(call!.headers.authorization, undefined)
      assert.strictEqual(
        call!.args.text,
        "<!here> VKYC_AUDITOR_REVIEW_COMPLETED for vkyc_onb_7f3a21: AUDITOR_REVIEWED / AUDITOR_APPROVED. Auditor: Looks Good"
      )
      assert.strictEqual(call!.args.blocks.length, 4)
      assertClean(textsOf(slack.calls), [])
    }))

  const rows: ReadonlyArray<Row> = [
    ...([[404, "channel_not_found"], [410, "channel_is_archived"], [400, "invalid_payload"], [403, "action_prohibited"]] as const)
      .map(([status, code]) => ({
        name: `${status} ${code}`,
        answer: { status, body: code },
        outcome: "Permanent",
        message: `Slack HTTP ${status} ${code}`
      })),
    {
      name: "429 with Retry-After: 3",
      answer: { status: 429, headers: { "retry-after": "3" }, body: "rate_limited" },
      outcome: "RateLimited:3000",
      message: "Slack rate limited (HTTP 429)"
    },
    { name: "500 rollup_error", answer: { status: 500, body: "rollup_error" }, outcome: "Retryable", message: "Slack HTTP 500 rollup_error" }
  ]
  for (const row of rows) {
    it.scopedLive(`${row.name} → ${row.outcome}`, () =>
      Effect.gen(function*() {
        const slack = yield* startSlack(() => row.answer)
        const { logs, outcome } = yield* deliverOnce(SlackPlugin, hookSettings(slack.url), event)
        assert.strictEqual(label(outcome), row.outcome)
        const message = Either.isLeft(outcome) ? outcome.left.message : ""
        assert.strictEqual(message, row.message)
        assertClean([...logs, message], ["XXXX"])
      }))
  }

  it.scopedLive("connection refused → Retryable", () =>
    Effect.gen(function*() {
      const port = yield* closedPort
      const { outcome } = yield* deliverOnce(SlackPlugin, hookSettings(`http://127.0.0.1:${port}`), event)
      assert.strictEqual(label(outcome), "Retryable")
      assert.strictEqual(Either.isLeft(outcome) ? outcome.left.message : "", "Slack not reached: Transport")
    }))
})
