import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { readFileSync, writeFileSync } from "node:fs"
import { join, resolve } from "node:path"
import { eventFixtures, repoRoot } from "../support/Fixtures.js"
import { freePort, runCli, spawnCli, stop, tempDir, waitUntilReady } from "../support/Process.js"

const ENV = { CASHFREE_CLIENT_SECRET: "walkthrough-secret", KYC_RELAY_LOG_LEVEL: "Info" }

describe("kyc-relay command", () => {
  it("bundles a sample for every event type, identical to the provider fixtures", () => {
    for (const f of eventFixtures) {
      assert.strictEqual(readFileSync(resolve(repoRoot, "src/cashfree/samples", `${f.eventType}.json`), "utf8"), f.text)
    }
  })

  it.scopedLive("refuses to start on a bad configuration and says where the problem is", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir("kyc-relay-cli-")
      const file = join(dir, "bad.yaml")
      writeFileSync(file, "server:\n  port: http\ncashfree:\n  secrets: [\"${CASHFREE_CLIENT_SECRET}\"]\n")
      const result = yield* runCli(["serve", "--config", file], ENV)
      assert.strictEqual(result.code, 1)
      assert.strictEqual(result.stderr.trim(), `kyc-relay: ${file}:2:3 server.port: expected number`)
      assert.notInclude(result.stdout, "listening")
      const viaEnv = yield* runCli(["check-config"], { ...ENV, KYC_RELAY_CONFIG: file })
      assert.strictEqual(viaEnv.code, 1)
      assert.include(viaEnv.stderr, `${file}:2:3 server.port`)
    }))

  it.scopedLive("walks through send, events list and events show against a running server", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir("kyc-relay-cli-")
      const port = yield* freePort
      const config = join(dir, "relay.yaml")
      writeFileSync(
        config,
        [
          "server:",
          `  port: ${port}`,
          "cashfree:",
          "  secrets: [\"${CASHFREE_CLIENT_SECRET}\"]",
          "store:",
          `  url: sqlite:${join(dir, "relay.db")}`
        ].join("\n")
      )
      const args = ["--config", config]
      const server = yield* spawnCli(["serve", ...args], ENV)
      yield* waitUntilReady(`http://127.0.0.1:${port}/readyz`)

      const first = yield* runCli(["send", "VKYC_USER_LINK_GENERATED", ...args], ENV)
      assert.strictEqual(first.code, 0, first.stderr)
      assert.match(first.stdout, /-> 200 \{"status":"accepted","event_id":"evt_/)
      const again = yield* runCli(["send", "VKYC_USER_LINK_GENERATED", ...args], ENV)
      assert.match(again.stdout, /-> 200 \{"status":"duplicate"/)
      // The legacy in-body scheme is off unless cashfree.signature turns it on.
      const legacy = yield* runCli(["send", "KYC_LINK_EXPIRED", "--scheme", "body", ...args], ENV)
      assert.match(legacy.stdout, /\(body signature\) -> 401 /)
      const link = yield* runCli(["send", "KYC_LINK_EXPIRED", ...args], ENV)
      assert.match(link.stdout, /-> 200 \{"status":"accepted"/)
      const wrong = yield* runCli(["send", "VKYC_USER_CALL_QUEUED", "--secret", "wrong", ...args], ENV)
      assert.strictEqual(wrong.code, 1)
      assert.match(wrong.stdout, /-> 401 /)
      const unknown = yield* runCli(["send", "NOT_AN_EVENT", ...args], ENV)
      assert.strictEqual(unknown.code, 1)
      assert.include(unknown.stderr, "is neither an event type nor a .json file; event types: VKYC_USER_LINK_GENERATED")

      const list = yield* runCli(["events", "list", ...args], ENV)
      const rows = list.stdout.trim().split("\n")
      assert.strictEqual(rows.length, 2)
      assert.match(rows[0]!, /accepted\s+KYC_LINK_EXPIRED\s+kyclink_ananya_0001\s+EXPIRED\/-/)
      assert.match(rows[1]!, /accepted\s+VKYC_USER_LINK_GENERATED\s+vkyc_onb_7f3a21\s+RECEIVED\/LINK_GENERATED/)
      const show = yield* runCli(["events", "show", "vkyc_onb_7f3a21", "--json", ...args], ENV)
      const shown = show.stdout.trim().split("\n").map((line) => JSON.parse(line))
      assert.deepStrictEqual(shown.map((row) => [row.event_type, row.event_time]), [
        ["VKYC_USER_LINK_GENERATED", "2025-05-22T03:51:14.000Z"]
      ])
      const quarantined = yield* runCli(["events", "list", "--quarantined", ...args], ENV)
      assert.strictEqual(quarantined.stdout.trim(), "nothing found")

      assert.strictEqual(yield* stop(server.child), 0)
      assert.include(server.output.stdout, `listening on http://127.0.0.1:${port}/webhooks/cashfree`)
      for (const secret of [ENV.CASHFREE_CLIENT_SECRET, "Ananya", "9876543210", "ananya.sharma@example.com", "forms.cashfree.com"]) {
        assert.notInclude(server.output.stdout + server.output.stderr, secret)
      }
    }), 120_000)
})
