import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { writeFileSync } from "node:fs"
import { join } from "node:path"
import { fixture } from "../support/Fixtures.js"
import { freePort, spawnCli, stop, tempDir, waitUntilReady } from "../support/Process.js"
import { eventually, startReceiver } from "../support/Receiver.js"
import { post, signedHeaders } from "../support/Relay.js"

const SECRET = "logs-secret-3f9a"

interface LogLine {
  readonly message: string | ReadonlyArray<string>
  readonly logLevel: string
  readonly annotations: Record<string, unknown>
}

/** A configuration on `port` with a SQLite store in `dir`, and `rest` after it. */
const serverYaml = (port: number, dir: string, rest: ReadonlyArray<string>) =>
  [
    "server:",
    `  port: ${port}`,
    "cashfree:",
    "  secrets: [\"${CASHFREE_CLIENT_SECRET}\"]",
    "store:",
    `  url: sqlite:${join(dir, "relay.db")}`,
    ...rest
  ].join("\n")

const messageOf = (line: LogLine) => (Array.isArray(line.message) ? line.message.join(" ") : String(line.message))

describe("logs", () => {
  it.scopedLive("are JSON lines that carry the event, delivery and verification ids, and no secret or personal data", () =>
    Effect.gen(function*() {
      const ok = yield* startReceiver([{ status: 200 }])
      const refusing = yield* startReceiver([{ status: 400 }])
      const dir = yield* tempDir("kyc-relay-logs-")
      const port = yield* freePort
      const config = join(dir, "relay.yaml")
      writeFileSync(config, serverYaml(port, dir, [
        "plugins:",
        "  crm:",
        "    use: webhook",
        `    url: ${ok.url}/crm`,
        "  audit:",
        "    use: webhook",
        `    url: ${refusing.url}/audit`,
        "routes:",
        "  - match: { event_type: VKYC_AUDITOR_REVIEW_COMPLETED }",
        "    to: [crm, audit]",
        "dispatch:",
        "  poll_interval: 100ms"
      ]))
      const server = yield* spawnCli(["serve", "--config", config], { CASHFREE_CLIENT_SECRET: SECRET, KYC_RELAY_LOG_LEVEL: "debug" })
      yield* waitUntilReady(`http://127.0.0.1:${port}/readyz`)

      const event = fixture("VKYC_AUDITOR_REVIEW_COMPLETED")
      const url = `http://127.0.0.1:${port}/webhooks/cashfree`
      const accepted = yield* post(url, event.text, signedHeaders(SECRET, event.text))
      assert.strictEqual(accepted.status, 200)
      const rejected = yield* post(url, event.text, signedHeaders("not-the-secret", event.text))
      assert.strictEqual(rejected.status, 401)
      yield* eventually(() => ok.received.length === 1 && refusing.received.length === 1)
      yield* eventually(() => server.output.stdout.includes("delivery dead") && server.output.stdout.includes("delivery done"))
      assert.strictEqual(yield* stop(server.child), 0)

      const lines = server.output.stdout.trim().split("\n").map((text) => JSON.parse(text) as LogLine)
      const verificationId = (JSON.parse(event.text) as { data: { verification_id: string } }).data.verification_id
      const eventId = accepted.body.event_id as string

      const stored = lines.find((line) => messageOf(line) === "webhook stored")
      assert.isDefined(stored)
      assert.include(stored!.annotations, { event_id: eventId, verification_id: verificationId, status: "accepted" })

      const done = lines.find((line) => messageOf(line) === "delivery done")
      assert.include(done?.annotations, { event_id: eventId, verification_id: verificationId, instance: "crm" })
      assert.match(String(done?.annotations.delivery_id), /^dlv_/)
      const dead = lines.find((line) => messageOf(line) === "delivery dead")
      assert.strictEqual(dead?.logLevel, "WARN")
      assert.include(dead?.annotations, { event_id: eventId, verification_id: verificationId, instance: "audit" })

      const refused = lines.find((line) => messageOf(line) === "webhook rejected")
      assert.include(refused?.annotations, { status: 401, reason: "invalid-signature" })

      const everything = server.output.stdout + server.output.stderr
      const personal = JSON.parse(event.text) as { data: Record<string, unknown> }
      for (const value of [SECRET, ...Object.values(personal.data).filter((v): v is string => typeof v === "string" && /@|\d{10}|https?:|\s/.test(v))]) {
        assert.notInclude(everything, value)
      }
    }), 120_000)

  it.scopedLive("name a plugin instance taken out of the configuration while deliveries still wait for it", () =>
    Effect.gen(function*() {
      const down = yield* startReceiver([{ status: 503 }])
      const dir = yield* tempDir("kyc-relay-logs-")
      const port = yield* freePort
      const config = join(dir, "relay.yaml")
      const withInstance = (name: string) =>
        serverYaml(port, dir, [
          "plugins:",
          `  ${name}:`,
          "    use: webhook",
          `    url: ${down.url}/hook`,
          "routes:",
          `  - to: ${name}`,
          "retry:",
          "  initial_delay: 1h"
        ])
      const env = { CASHFREE_CLIENT_SECRET: SECRET }
      const url = `http://127.0.0.1:${port}/webhooks/cashfree`
      const event = fixture("VKYC_USER_CALL_QUEUED")

      writeFileSync(config, withInstance("old-crm"))
      const first = yield* spawnCli(["serve", "--config", config], env)
      yield* waitUntilReady(`http://127.0.0.1:${port}/readyz`)
      assert.strictEqual((yield* post(url, event.text, signedHeaders(SECRET, event.text))).status, 200)
      yield* eventually(() => down.received.length === 1)
      assert.strictEqual(yield* stop(first.child), 0)

      writeFileSync(config, withInstance("new-crm"))
      const second = yield* spawnCli(["serve", "--config", config], env)
      yield* waitUntilReady(`http://127.0.0.1:${port}/readyz`)
      assert.strictEqual(yield* stop(second.child), 0)
      assert.include(
        second.output.stdout,
        "1 delivery waits for plugin instance old-crm, which is not configured: add it back to run them (kyc-relay deliveries list --instance old-crm)"
      )
    }), 120_000)
})
