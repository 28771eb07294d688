import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { writeFileSync } from "node:fs"
import { join } from "node:path"
import { fixture } from "../support/Fixtures.js"
import { freePort, runCli, spawnCli, stop, tempDir, waitUntilReady } from "../support/Process.js"
import { eventually, startReceiver } from "../support/Receiver.js"
import { post, signedHeaders } from "../support/Relay.js"

const SECRET = "reload-secret"

describe("configuration reload", () => {
  it.scopedLive("SIGHUP switches routes and plugins; a bad file is refused and the old one stays", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir("kyc-relay-reload-")
      const first = yield* startReceiver()
      const second = yield* startReceiver()
      const port = yield* freePort
      const file = join(dir, "relay.yaml")
      const config = (sink: string, extra = "") =>
        [
          "server:",
          `  port: ${port}`,
          "cashfree:",
          `  secrets: ["${SECRET}"]`,
          "store:",
          `  url: sqlite:${join(dir, "relay.db")}`,
          "plugins:",
          "  sink:",
          "    use: webhook",
          `    url: ${sink}/hook`,
          "routes:",
          "  - to: sink",
          extra
        ].join("\n")
      writeFileSync(file, config(first.url))
      const server = yield* spawnCli(["serve", "--config", file])
      yield* waitUntilReady(`http://127.0.0.1:${port}/readyz`)
      const webhook = `http://127.0.0.1:${port}/webhooks/cashfree`
      const send = (eventType: string) => {
        const text = fixture(eventType).text
        return post(webhook, text, signedHeaders(SECRET, text))
      }

      yield* send("VKYC_USER_LINK_GENERATED")
      yield* eventually(() => first.received.length === 1)

      writeFileSync(file, config(second.url))
      server.child.kill("SIGHUP")
      yield* eventually(() => server.output.stdout.includes("configuration reloaded"))
      yield* send("VKYC_USER_AADHAAR_VERIFIED")
      yield* eventually(() => second.received.length === 1)
      assert.strictEqual(first.received.length, 1)

      writeFileSync(file, config(first.url, "  - to: nowhere"))
      server.child.kill("SIGHUP")
      yield* eventually(() => server.output.stdout.includes("configuration not reloaded"))
      assert.include(server.output.stdout, `${file}:13:5 routes.1.to: no plugin instance named \\"nowhere\\"`)
      yield* send("VKYC_USER_CALL_SCHEDULED")
      yield* eventually(() => second.received.length === 2)
      assert.strictEqual(first.received.length, 1)

      // A file that validates but names a plugin instance that cannot start: nothing of it is applied.
      const unstartable = [
        "  audit:",
        "    use: ./plugins/examples/audit-log.ts",
        "    file: /dev/null/audit/audit.jsonl",
        "routes:",
        "  - to: [sink, audit]"
      ].join("\n")
      writeFileSync(file, config(first.url).replace("routes:\n  - to: sink", unstartable))
      server.child.kill("SIGHUP")
      yield* eventually(() => server.output.stdout.includes("plugin instance audit could not start: ENOTDIR"))
      yield* send("VKYC_USER_CALL_QUEUED")
      yield* eventually(() => second.received.length === 3)
      assert.strictEqual(first.received.length, 1)

      assert.strictEqual(yield* stop(server.child), 0)

      // At start-up the same file is refused with one clear line, and check-config finds it first.
      const refused = yield* runCli(["serve", "--config", file])
      assert.strictEqual(refused.code, 1)
      assert.strictEqual(refused.stderr.trim(), "kyc-relay: plugin instance audit could not start: ENOTDIR")
      const checked = yield* runCli(["check-config", "--config", file])
      assert.strictEqual(checked.code, 1)
      assert.strictEqual(checked.stderr.trim(), "kyc-relay: plugin instance audit could not start: ENOTDIR")
    }), 120_000)
})
