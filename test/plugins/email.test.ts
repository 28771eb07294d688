import { assert, describe, it } from "@effect/vitest"
import { Effect, Either, Schema } from "effect"
import { createServer, type Socket } from "node:net"
import type { AddressInfo } from "node:net"
import { SMTPServer } from "smtp-server"
import { EmailPlugin, emailExample } from "../../plugins/email/index.js"
import { parseConfigText } from "../../src/config/ConfigFile.js"
import type { CashfreeEvent } from "../../src/domain/Event.js"
import { assertClean, contextFor, decodeFixture, deliverOnce, label } from "../support/Conformance.js"
import { fixture } from "../support/Fixtures.js"
import { eventually, pause } from "../support/Receiver.js"
import { post, relayConfigYaml, signedHeaders, startRelay, tempSqlite } from "../support/Relay.js"

const SECRET = "test-secret"
const PASSWORD = "s3cret-smtp-pass"
const CUSTOMER = "ananya.sharma@example.com"
const INJECTED = "<b>&\""

// --- a real SMTP server on loopback -------------------------------------------------------------------------

interface Mail {
  readonly from: string
  readonly to: ReadonlyArray<string>
  readonly raw: string
}

type Refusal = readonly [code: number, text: string]

interface Script {
  /** Refuse a recipient at RCPT TO. */
  readonly rcpt?: (address: string) => Refusal | undefined
  /** Refuse the message after DATA. */
  readonly data?: Refusal
  /** Accept AUTH only with this password (any password when unset). */
  readonly password?: string
}

const refusal = ([code, text]: Refusal) => Object.assign(new Error(text), { responseCode: code })

const startSmtp = (script: Script = {}) =>
  Effect.acquireRelease(
    Effect.async<{ readonly port: number; readonly received: Array<Mail>; readonly server: SMTPServer }>((resume) => {
      const received: Array<Mail> = []
      const server = new SMTPServer({
        authOptional: true,
        allowInsecureAuth: true,
        disabledCommands: ["STARTTLS"],
        logger: false,
        closeTimeout: 100,
        onAuth: (auth, _session, callback) =>
          script.password === undefined || auth.password === script.password
            ? callback(null, { user: auth.username })
            : callback(refusal([535, "5.7.8 Authentication credentials invalid"])),
        onRcptTo: (address, _session, callback) => {
          const refused = script.rcpt?.(address.address)
          callback(refused === undefined ? null : refusal(refused))
        },
        onData: (stream, session, callback) => {
          const chunks: Array<Buffer> = []
          stream.on("data", (chunk: Buffer) => chunks.push(chunk))
          stream.on("end", () => {
            if (script.data !== undefined) return callback(refusal(script.data))
            received.push({
              from: session.envelope.mailFrom === false ? "" : session.envelope.mailFrom.address,
              to: session.envelope.rcptTo.map((address) => address.address),
              raw: Buffer.concat(chunks).toString("utf8")
            })
            callback()
          })
        }
      })
      server.listen(0, "127.0.0.1", () =>
        resume(Effect.succeed({ port: (server.server.address() as AddressInfo).port, received, server })))
    }),
    ({ server }) => Effect.async<void>((resume) => server.close(() => resume(Effect.void)))
  )

/** Accepts connections and never says a word: a timeout on the client's side has to end them. */
const startSilent = Effect.acquireRelease(
  Effect.async<{ readonly port: number; readonly hungUp: () => number; readonly close: () => void }>((resume) => {
    const sockets = new Set<Socket>()
    let hungUp = 0
    const server = createServer((socket) => {
      sockets.add(socket)
      socket.on("close", () => hungUp++)
    })
    server.listen(0, "127.0.0.1", () =>
      resume(Effect.succeed({
        port: (server.address() as AddressInfo).port,
        hungUp: () => hungUp,
        close: () => {
          sockets.forEach((socket) => socket.destroy())
          server.close()
        }
      })))
  }),
  ({ close }) => Effect.sync(close)
)

/** A loopback port nothing listens on. */
const closedPort = Effect.async<number>((resume) => {
  const server = createServer()
  server.listen(0, "127.0.0.1", () => {
    const { port } = server.address() as AddressInfo
    server.close(() => resume(Effect.succeed(port)))
  })
})

// --- just enough MIME to read what nodemailer sends ----------------------------------------------------------

interface Part {
  readonly headers: ReadonlyMap<string, string>
  readonly body: string
}

const decodeQuotedPrintable = (text: string) =>
  Buffer.from(
    text.replace(/=\r\n/g, "").replace(/=([0-9A-F]{2})/gi, (_, hex: string) => String.fromCharCode(parseInt(hex, 16))),
    "latin1"
  ).toString("utf8")

/** RFC 2047 encoded words, as nodemailer writes a header holding characters such as < or ". */
const decodeHeader = (value: string) =>
  value.replace(/\?=\s+=\?/g, "?==?").replace(/=\?([^?]+)\?([QqBb])\?([^?]*)\?=/g, (_, charset: string, kind: string, text: string) =>
    kind.toUpperCase() === "B"
      ? Buffer.from(text, "base64").toString(charset.toLowerCase() === "utf-8" ? "utf8" : "latin1")
      : decodeQuotedPrintable(text.replace(/_/g, " ")))

const parsePart = (raw: string): { readonly headers: ReadonlyMap<string, string>; readonly leaves: ReadonlyArray<Part> } => {
  const split = raw.indexOf("\r\n\r\n")
  const headers = new Map(
    raw.slice(0, split).replace(/\r\n[ \t]+/g, " ").split("\r\n").map((line) => {
      const colon = line.indexOf(":")
      return [line.slice(0, colon).toLowerCase(), decodeHeader(line.slice(colon + 1).trim())] as const
    })
  )
  const body = raw.slice(split + 4)
  const type = headers.get("content-type") ?? "text/plain"
  const boundary = /boundary="?([^";]+)"?/i.exec(type)?.[1]
  if (type.startsWith("multipart/") && boundary !== undefined) {
    const parts = body.split(`--${boundary}`).slice(1, -1).map((part) => part.replace(/^\r\n/, "").replace(/\r\n$/, ""))
    return { headers, leaves: parts.flatMap((part) => parsePart(part).leaves) }
  }
  const encoding = headers.get("content-transfer-encoding")?.toLowerCase()
  const decoded = encoding === "quoted-printable"
    ? decodeQuotedPrintable(body)
    : encoding === "base64"
    ? Buffer.from(body, "base64").toString("utf8")
    : body
  return { headers, leaves: [{ headers, body: decoded.replace(/\r\n/g, "\n") }] }
}

const readMail = (mail: Mail) => {
  const { headers, leaves } = parsePart(mail.raw)
  const body = (type: string) => leaves.find((leaf) => leaf.headers.get("content-type")?.startsWith(type))?.body
  return { headers, text: body("text/plain"), html: body("text/html") }
}

// --- settings and events ---------------------------------------------------------------------------------------

const viaUrl = (port: number, extra: Record<string, unknown> = {}) => ({
  smtp_url: `smtp://relay:${PASSWORD}@127.0.0.1:${port}`,
  from: "KYC team <kyc@example.com>",
  to: "{{data.email}}",
  personal_fields: ["email"],
  smtp_timeout: "2s",
  ...extra
})

const viaHost = (port: number, extra: Record<string, unknown> = {}) => ({
  host: "127.0.0.1",
  port,
  secure: false,
  user: "relay",
  password: PASSWORD,
  from: "kyc@example.com",
  to: "{{data.email}}",
  personal_fields: ["email"],
  smtp_timeout: "2s",
  ...extra
})

const withData = (event: CashfreeEvent, data: Record<string, unknown>) =>
  ({ ...event, data: { ...event.data, ...data } }) as CashfreeEvent

const messageOf = (outcome: Either.Either<unknown, { readonly message: string }>) =>
  Either.isLeft(outcome) ? outcome.left.message : ""

interface Row {
  readonly name: string
  readonly server: Script | "silent" | "closed"
  readonly settings?: (port: number) => Record<string, unknown>
  readonly event?: CashfreeEvent
  readonly expect: "done" | "Retryable" | "Permanent"
  readonly message?: string
  /** A line the plugin logs. */
  readonly log?: string
  readonly sent: number
}

const ROWS: ReadonlyArray<Row> = [
  { name: "accepted over smtp_url with credentials", server: { password: PASSWORD }, expect: "done", sent: 1 },
  { name: "accepted over host/port/user/password", server: { password: PASSWORD }, settings: viaHost, expect: "done", sent: 1 },
  {
    name: "421 at RCPT TO",
    server: { rcpt: () => [421, "4.3.2 Service not available, closing channel"] },
    expect: "Retryable",
    message: "^SMTP 421 4\\.3\\.2: Service not available, closing channel$",
    sent: 0
  },
  { name: "450 at RCPT TO", server: { rcpt: () => [450, "4.2.1 Mailbox busy"] }, expect: "Retryable", message: "^SMTP 450", sent: 0 },
  { name: "452 at RCPT TO", server: { rcpt: () => [452, "4.3.1 Insufficient storage"] }, expect: "Retryable", message: "^SMTP 452", sent: 0 },
  { name: "421 at DATA", server: { data: [421, "4.4.2 Try again later"] }, expect: "Retryable", message: "^SMTP 421 .*DATA", sent: 0 },
  { name: "451 at DATA", server: { data: [451, "4.7.1 Greylisted"] }, expect: "Retryable", message: "^SMTP 451", sent: 0 },
  {
    name: "550 at RCPT TO, quoting the address",
    server: { rcpt: (address) => [550, `5.1.1 <${address}>: Recipient address rejected: User unknown`] },
    expect: "Permanent",
    message: "^SMTP 550 5\\.1\\.1 at RCPT TO: Recipient address rejected: User unknown$",
    sent: 0
  },
  {
    name: "553 at RCPT TO",
    server: { rcpt: (address) => [553, `5.1.3 ${address} mailbox name not allowed`] },
    expect: "Permanent",
    message: "^SMTP 553 5\\.1\\.3 at RCPT TO: mailbox name not allowed$",
    sent: 0
  },
  { name: "554 at DATA", server: { data: [554, "5.7.1 Message rejected"] }, expect: "Permanent", message: "^SMTP 554", sent: 0 },
  {
    name: "535 for the password",
    server: { password: "another-password" },
    expect: "Permanent",
    message: "^SMTP 535 5\\.7\\.8 at AUTH",
    sent: 0
  },
  {
    name: "one of two recipients refused",
    server: { rcpt: (address) => address.startsWith("gone@") ? [550, `5.1.1 <${address}>: User unknown`] : undefined },
    settings: (port) => viaUrl(port, { to: "ops@example.com, gone@example.com", personal_fields: [] }),
    expect: "done",
    log: "1 of 2 recipients refused (SMTP 550)",
    sent: 1
  },
  { name: "connection refused", server: "closed", expect: "Retryable", message: "ECONNREFUSED", sent: 0 },
  {
    name: "a server that never greets",
    server: "silent",
    settings: (port) => viaUrl(port, { smtp_timeout: "300ms" }),
    expect: "Retryable",
    message: "ETIMEDOUT",
    sent: 0
  },
  {
    name: "a VKYC event has no address for {{data.email}}",
    server: {},
    event: decodeFixture("VKYC_USER_LINK_EXPIRED"),
    expect: "Permanent",
    message: "^the event carries no email address for `to`$",
    sent: 0
  },
  {
    name: "an address list typed into data.email",
    server: {},
    event: withData(decodeFixture("KYC_LINK_EXPIRED"), { email: `${CUSTOMER}, victim@example.org` }),
    expect: "Permanent",
    message: "^the event carries no email address for `to`$",
    sent: 0
  }
]

describe("email plugin", () => {
  it("decodes the example settings and keeps the password redacted", () => {
    const settings = Schema.decodeUnknownSync(EmailPlugin.settings, { onExcessProperty: "error" })(emailExample)
    assert.notInclude(String(settings.password), "example-password")
    assert.strictEqual(settings.smtp_timeout, 10_000)
  })

  it.effect("refuses settings that cannot work, naming the line and key", () =>
    Effect.gen(function*() {
      const problems = (block: ReadonlyArray<string>) =>
        parseConfigText(
          relayConfigYaml({
            store: "sqlite:unused.db",
            extra: ["plugins:", "  mail:", "    use: ./plugins/email/index.ts", ...block.map((line) => `    ${line}`)].join("\n")
          }),
          "relay.yaml"
        ).pipe(Effect.flip, Effect.map((error) => error.message.split("\n")))
      assert.deepStrictEqual(
        yield* problems(["host: 127.0.0.1", "from: kyc@example.com", "to: \"{{data.email}}\""]),
        ["relay.yaml:15:5 plugins.mail.to: reads data.email, personal data this instance has not opted into: add email to personal_fields"]
      )
      assert.deepStrictEqual(
        yield* problems([
          "host: 127.0.0.1",
          "from: kyc@example.com",
          "to: ops@example.com",
          "personal_fields: [email]",
          "text: \"{{#data}}{{name}}{{/data}} for {{params.email}}\""
        ]),
        ["relay.yaml:17:5 plugins.mail.text: reads data.name, personal data this instance has not opted into: add name to personal_fields"]
      )
      assert.deepStrictEqual(
        yield* problems([`smtp_url: "smtp://u:${PASSWORD}@127.0.0.1"`, "port: 25", "from: kyc@example.com", "to: ops@example.com"]),
        ["relay.yaml:14:5 plugins.mail.port: port cannot be combined with smtp_url: put it in the URL, or drop smtp_url"]
      )
      const noEndpoint = yield* problems(["from: kyc@example.com", "to: ops@example.com"])
      assert.match(noEndpoint[0]!, /plugins\.mail: give smtp_url, or host/)
      const badUrl = yield* problems([`smtp_url: "https://u:${PASSWORD}@127.0.0.1"`, "from: kyc@example.com", "to: ops@example.com"])
      assert.match(badUrl[0]!, /plugins\.mail\.smtp_url: an smtp:\/\/ or smtps:\/\/ URL/)
      assertClean(badUrl, [PASSWORD])
    }))

  for (const row of ROWS) {
    it.scopedLive(`${row.name}: ${row.expect}`, () =>
      Effect.gen(function*() {
        const server = row.server === "closed"
          ? { port: yield* closedPort, received: [] as Array<Mail> }
          : row.server === "silent"
          ? { port: (yield* startSilent).port, received: [] as Array<Mail> }
          : yield* startSmtp(row.server)
        const settings = (row.settings ?? viaUrl)(server.port)
        const { logs, outcome } = yield* deliverOnce(EmailPlugin, settings, row.event ?? decodeFixture("KYC_LINK_EXPIRED"))
        assert.strictEqual(label(outcome), row.expect)
        if (row.message !== undefined) assert.match(messageOf(outcome), new RegExp(row.message))
        assert.strictEqual(server.received.length, row.sent)
        if (row.log !== undefined) assert.isTrue(logs.some((line) => line.includes(row.log!)), logs.join("\n"))
        assertClean([...logs, messageOf(outcome)], [PASSWORD, "gone@example.com"])
      }))
  }

  it.scopedLive("sends the default VKYC text to a fixed address, with ids and statuses only", () =>
    Effect.gen(function*() {
      const smtp = yield* startSmtp()
      const ctx = contextFor({ eventId: "evt_vkyc_1", instance: "ops-mail" })
      const { outcome } = yield* deliverOnce(
        EmailPlugin,
        viaUrl(smtp.port, { to: "KYC desk <ops@example.com>", personal_fields: [] }),
        decodeFixture("VKYC_USER_LINK_EXPIRED"),
        ctx
      )
      assert.deepStrictEqual(outcome, Either.right({ remoteId: "<evt_vkyc_1.ops-mail@example.com>" }))
      const [mail] = smtp.received
      assert.deepStrictEqual([mail!.from, mail!.to], ["kyc@example.com", ["ops@example.com"]])
      const { headers, text, html } = readMail(mail!)
      assert.strictEqual(headers.get("subject"), "Video KYC link expired: vkyc_onb_91c0d4")
      assert.strictEqual(headers.get("message-id"), "<evt_vkyc_1.ops-mail@example.com>")
      assert.strictEqual(headers.get("auto-submitted"), "auto-generated")
      assert.include(text!, "expired on 2025-06-21 before the customer completed the call")
      assert.include(text!, "Status: EXPIRED / VKYC_EXPIRED")
      assert.include(html!, "<p>Verification: vkyc_onb_91c0d4<br>")
      assert.notInclude(mail!.raw, "forms.cashfree.com")
    }))

  it.scopedLive("falls back to a generic text for other event types", () =>
    Effect.gen(function*() {
      const smtp = yield* startSmtp()
      const settings = viaUrl(smtp.port, { to: "ops@example.com", personal_fields: [] })
      const { outcome } = yield* deliverOnce(EmailPlugin, settings, decodeFixture("VKYC_USER_CALL_QUEUED"))
      assert.strictEqual(label(outcome), "done")
      const { headers, text } = readMail(smtp.received[0]!)
      assert.match(headers.get("subject")!, /^VKYC_USER_CALL_QUEUED: \S+ is \S+$/)
      assert.include(text!, "Sent by kyc-relay for event evt_test_1.")
    }))

  it.scopedLive("gives up the SMTP session when the host's time limit interrupts the call", () =>
    Effect.gen(function*() {
      const silent = yield* startSilent
      const settings = viaUrl(silent.port, { smtp_timeout: "1m" })
      const outcome = yield* deliverOnce(EmailPlugin, settings, decodeFixture("KYC_LINK_EXPIRED")).pipe(
        Effect.timeout("200 millis"),
        Effect.either
      )
      assert.isTrue(Either.isLeft(outcome))
      yield* eventually(() => silent.hungUp() === 1, 2000)
    }))

  it.scopedLive("mails the customer and the ops team through the running relay, escaping HTML", () =>
    Effect.gen(function*() {
      const smtp = yield* startSmtp()
      const relay = yield* startRelay({ store: yield* tempSqlite, secrets: [SECRET], extra: relayPlugins(smtp.port) })
      const kyc = JSON.parse(fixture("KYC_LINK_EXPIRED").text)
      kyc.data.link_expiry = `${INJECTED}2025-12-02`
      const kycBody = JSON.stringify(kyc)
      const vkycBody = fixture("VKYC_USER_LINK_EXPIRED").text
      for (const body of [kycBody, vkycBody]) {
        const reply = yield* post(relay.webhookUrl, body, signedHeaders(SECRET, body))
        assert.strictEqual(reply.body.status, "accepted")
      }
      yield* eventually(() => smtp.received.length === 2)
      const customer = smtp.received.find((mail) => mail.to.includes(CUSTOMER))!
      const ops = smtp.received.find((mail) => mail.to.includes("ops@example.com"))!

      assert.deepStrictEqual([customer.from, customer.to], ["kyc@example.com", [CUSTOMER]])
      const toCustomer = readMail(customer)
      assert.strictEqual(toCustomer.headers.get("subject"), "Your verification link has expired")
      assert.strictEqual(toCustomer.headers.get("to"), CUSTOMER)
      assert.include(toCustomer.text!, `has expired (it was valid until ${INJECTED}2025-12-02)`)
      assert.include(toCustomer.text!, "Verification: kyclink_ananya_0001\nReference: 235461\nStatus: EXPIRED")
      assert.include(toCustomer.html!, "has expired (it was valid until &lt;b&gt;&amp;&quot;2025-12-02)")
      assert.notInclude(toCustomer.html!, INJECTED)
      for (const unshared of ["Ananya Sharma", "9876543210", "forms.cashfree.com"]) assert.notInclude(customer.raw, unshared)

      assert.deepStrictEqual([ops.from, ops.to], ["relay@example.com", ["ops@example.com", "kyc-desk@example.com"]])
      const toOps = readMail(ops)
      assert.strictEqual(toOps.headers.get("subject"), `VKYC link expired for vkyc_onb_91c0d4 (${INJECTED}ops)`)
      assert.strictEqual(toOps.text, `Team ${INJECTED}ops: vkyc_onb_91c0d4 is EXPIRED/VKYC_EXPIRED`)
      assert.strictEqual(toOps.html, "<p>Team &lt;b&gt;&amp;&quot;ops: vkyc_onb_91c0d4 is EXPIRED/VKYC_EXPIRED</p>")

      const done = yield* waitDone(relay, 2)
      const remoteIds = yield* Effect.forEach(done, (row) => relay.deliveries.attempts(row.id))
      assert.sameMembers(
        remoteIds.map((attempts) => attempts[0]!.remote_id),
        [toCustomer.headers.get("message-id"), toOps.headers.get("message-id")]
      )
    }))

  it.scopedLive("sends one email for a webhook delivered twice", () =>
    Effect.gen(function*() {
      const smtp = yield* startSmtp()
      const relay = yield* startRelay({ store: yield* tempSqlite, secrets: [SECRET], extra: relayPlugins(smtp.port) })
      const body = fixture("KYC_LINK_EXPIRED").text
      const first = yield* post(relay.webhookUrl, body, signedHeaders(SECRET, body))
      const second = yield* post(relay.webhookUrl, body, signedHeaders(SECRET, body, String(Date.now() + 1000)))
      assert.deepStrictEqual([first.body.status, second.body.status], ["accepted", "duplicate"])
      yield* eventually(() => smtp.received.length === 1)
      yield* waitDone(relay, 1)
      yield* pause(300)
      assert.strictEqual(smtp.received.length, 1)
      assert.deepStrictEqual(yield* relay.deliveries.countByState, { done: 1 })
    }))
})

const relayPlugins = (port: number) => `
plugins:
  expiry-mail:
    use: ./plugins/email/index.ts
    host: 127.0.0.1
    port: ${port}
    secure: false
    from: "KYC team <kyc@example.com>"
    to: "{{data.email}}"
    personal_fields: [email]
  ops-mail:
    use: ./plugins/email/index.ts
    smtp_url: "smtp://127.0.0.1:${port}"
    from: relay@example.com
    to: "ops@example.com, kyc-desk@example.com"
    subject: "VKYC link expired for {{verification_id}} ({{params.team}})"
    text: "Team {{params.team}}: {{verification_id}} is {{status}}/{{sub_status}}"
    html: "<p>Team {{params.team}}: {{verification_id}} is {{status}}/{{sub_status}}</p>"
routes:
  - match: { event_type: KYC_LINK_EXPIRED }
    to: expiry-mail
    skip_stale: true
  - match: { event_type: VKYC_USER_LINK_EXPIRED }
    to: ops-mail
    params: { team: '${INJECTED}ops' }
dispatch:
  poll_interval: 100ms
`

/** The done deliveries, once there are `count` of them (the SMTP server sees a mail before the relay records it). */
const waitDone = (relay: Effect.Effect.Success<ReturnType<typeof startRelay>>, count: number) =>
  Effect.gen(function*() {
    const deadline = Date.now() + 5000
    while (true) {
      const done = yield* relay.deliveries.list({ state: "done", limit: 10 })
      if (done.length === count) return done
      if (Date.now() > deadline) return yield* Effect.die(new Error(`${done.length} of ${count} deliveries done`))
      yield* pause(20)
    }
  })
