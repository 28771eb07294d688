import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { execFileSync, spawn } from "node:child_process"
import { existsSync, readFileSync, writeFileSync } from "node:fs"
import { join, resolve } from "node:path"
import { beforeAll } from "vitest"
import { repoRoot } from "../support/Fixtures.js"
import { listening, stop, tempDir } from "../support/Process.js"
import { relayConfigYaml } from "../support/Relay.js"

// `npm start` runs the compiled build, not the sources through tsx as bin/kyc-relay.js does.
const ENTRY = resolve(repoRoot, "dist/src/main.js")
const ENV = { CASHFREE_CLIENT_SECRET: "compiled-secret", KYC_RELAY_LOG_LEVEL: "Info" }

const spawnCompiled = (args: ReadonlyArray<string>) =>
  spawn(process.execPath, [ENTRY, ...args], { cwd: repoRoot, env: { ...process.env, ...ENV } })

const runCompiled = (args: ReadonlyArray<string>) =>
  Effect.async<{ code: number | null; stdout: string; stderr: string }>((resume) => {
    const child = spawnCompiled(args)
    let stdout = ""
    let stderr = ""
    child.stdout.on("data", (chunk) => (stdout += chunk))
    child.stderr.on("data", (chunk) => (stderr += chunk))
    child.on("close", (code) => resume(Effect.succeed({ code, stdout, stderr })))
  })

const serveCompiled = (config: string) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const child = spawnCompiled(["serve", "--config", config])
      const output = { stdout: "", stderr: "" }
      child.stdout.on("data", (chunk) => (output.stdout += chunk))
      child.stderr.on("data", (chunk) => (output.stderr += chunk))
      return { child, output }
    }),
    ({ child }) => stop(child)
  )

/** Polls until `file` holds a line naming `eventId`, for at most 10 s. */
const deliveredTo = (file: string, eventId: string) =>
  Effect.promise(async () => {
    const deadline = Date.now() + 10_000
    while (Date.now() < deadline) {
      if (existsSync(file) && readFileSync(file, "utf8").includes(eventId)) return true
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    return false
  })

describe("the compiled service", () => {
  // Always from the current sources: a test of the build must never run a stale dist/.
  beforeAll(() => {
    execFileSync("npm", ["run", "--silent", "build"], { cwd: repoRoot, stdio: "pipe" })
  }, 180_000)

  it.scopedLive("loads custom plugins written in TypeScript (built or not) and in JavaScript", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir("kyc-relay-compiled-")
      const files = { audit: join(dir, "audit.jsonl"), typed: join(dir, "typed.jsonl"), plain: join(dir, "plain.jsonl") }
      const config = join(dir, "relay.yaml")
      writeFileSync(
        config,
        relayConfigYaml({
          store: `sqlite:${join(dir, "relay.db")}`,
          secrets: ["${CASHFREE_CLIENT_SECRET}"],
          extra: [
            "plugins:",
            "  audit:", // compiled into dist/ by the build
            "    use: ./plugins/examples/audit-log.ts",
            `    file: ${JSON.stringify(files.audit)}`,
            "  typed:", // outside the build: transpiled at start-up
            "    use: ./test/plugin/fixtures/typed-plugin.ts",
            `    file: ${JSON.stringify(files.typed)}`,
            "  plain:",
            "    use: ./test/plugin/fixtures/plain-plugin.mjs",
            `    file: ${JSON.stringify(files.plain)}`,
            "routes:",
            "  - to: [audit, typed, plain]"
          ].join("\n")
        })
      )

      const checked = yield* runCompiled(["check-config", "--config", config])
      assert.strictEqual(checked.code, 0, checked.stderr)
      assert.include(checked.stdout, "plugins    audit (audit-log), typed (typed-fixture), plain (plain-fixture)")

      const server = yield* serveCompiled(config)
      const url = yield* listening(server)
      // `send` reads the bundled samples, which the build copies next to the compiled code.
      const sent = yield* runCompiled(["send", "VKYC_USER_LINK_GENERATED", "--config", config, "--url", `${url}/webhooks/cashfree`])
      assert.strictEqual(sent.code, 0, sent.stderr)
      const eventId = /-> 200 \{"status":"accepted","event_id":"(evt_[^"]+)"/.exec(sent.stdout)?.[1]
      assert.isDefined(eventId, sent.stdout)

      for (const [name, file] of Object.entries(files)) {
        assert.isTrue(yield* deliveredTo(file, eventId!), `${name} plugin did not record ${eventId}:\n${server.output.stdout}`)
      }
    }), 60_000)
})
