import * as NodeContext from "@effect/platform-node/NodeContext"
import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Duration, Effect, Either, Redacted } from "effect"
import { loadConfigFile, parseConfigText } from "../../src/config/ConfigFile.js"
import { EVENT_TYPES } from "../../src/domain/Event.js"

const withEnv = (env: Record<string, string>) => Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env))))

const problemsOf = (text: string, env: Record<string, string> = {}) =>
  parseConfigText(text, "relay.yaml").pipe(
    withEnv(env),
    Effect.flip,
    Effect.map((error) => error.message.split("\n"))
  )

describe("configuration file", () => {
  it.effect("fills defaults and reads secrets and values from the environment", () =>
    Effect.gen(function*() {
      const { config } = yield* parseConfigText(
        [
          "server:",
          "  port: ${PORT:-9000}",
          "cashfree:",
          "  secrets:",
          "    - \"${CF_SECRET}\"",
          "    - \"${CF_OLD:-older}\"",
          "    - ${CF_HASH}",
          "    - ${CF_QUOTED}",
          "store:",
          "  url: sqlite:${DATA_DIR}/relay.db"
        ].join("\n"),
        "relay.yaml"
      ).pipe(withEnv({ CF_SECRET: "s3cret", DATA_DIR: "/var/lib/kyc", CF_HASH: "abc #def", CF_QUOTED: "'quoted'" }))
      assert.deepStrictEqual(
        {
          server: config.server,
          cashfree: { ...config.cashfree, secrets: config.cashfree.secrets.map(Redacted.value) },
          store: config.store
        },
        {
          server: { host: "127.0.0.1", port: 9000, path: "/webhooks/cashfree", max_body_bytes: 262144, trusted_proxies: [] },
          // Unquoted references keep the value as it is: YAML would cut "abc #def" at the comment.
          cashfree: { secrets: ["s3cret", "older", "abc #def", "'quoted'"], signature: "header" },
          store: { url: "sqlite:/var/lib/kyc/relay.db" }
        }
      )
      assert.notInclude(String(config.cashfree.secrets[0]), "s3cret", "secrets print redacted")
    }))

  it.effect("names file, line, column and key of a wrong value, and what would be valid", () =>
    Effect.gen(function*() {
      const lines = yield* problemsOf(
        ["server:", "  port: 99999", "cashfree:", "  secrets: [\"x\"]", "  signature: both"].join("\n")
      )
      assert.deepStrictEqual(lines, [
        "relay.yaml:2:3 server.port: a port number from 1 to 65535 (0 lets the system choose)",
        "relay.yaml:5:3 cashfree.signature: expected \"auto\" | \"header\" | \"body\""
      ])
    }))

  it.effect("refuses unknown keys, so a typo is not silently ignored", () =>
    Effect.gen(function*() {
      const lines = yield* problemsOf(["server:", "  prot: 8080", "cashfree:", "  secrets: [\"x\"]"].join("\n"))
      assert.deepStrictEqual(lines, [
        "relay.yaml:2:3 server.prot: unknown key; expected one of \"host\" | \"port\" | \"path\" | \"max_body_bytes\" | \"allowed_ips\" | \"trusted_proxies\""
      ])
    }))

  it.effect("reports a missing section, an unset variable and bad YAML", () =>
    Effect.gen(function*() {
      assert.deepStrictEqual(yield* problemsOf("server:\n  port: 1\n"), [
        "relay.yaml:1:1 cashfree: is missing"
      ])
      assert.deepStrictEqual(yield* problemsOf("cashfree:\n  secrets:\n    - \"${NOPE}\"\n"), [
        "relay.yaml:3:7 cashfree.secrets.0: environment variable NOPE is not set (set it, or write ${NOPE:-default})"
      ])
      const yaml = yield* problemsOf("cashfree:\n  secrets: [\"x\"\n  signature: auto\n")
      assert.strictEqual(yaml.length, 1)
      assert.match(yaml[0]!, /^relay\.yaml:\d+:\d+: /)
      assert.deepStrictEqual(yield* problemsOf("cashfree:\n  secrets: []\n"), [
        "relay.yaml:2:3 cashfree.secrets: at least one client secret"
      ])
    }))

  it.effect("never prints a secret in an error", () =>
    Effect.gen(function*() {
      const lines = yield* problemsOf("cashfree:\n  secrets: [\"${S}\"]\n  extra: 1\n", { S: "top-secret-value" })
      assert.notInclude(lines.join("\n"), "top-secret-value")
    }))

  it.effect("says which file could not be read", () =>
    Effect.gen(function*() {
      const error = yield* loadConfigFile("/nonexistent/kyc-relay.yaml").pipe(Effect.flip, Effect.provide(NodeContext.layer))
      assert.strictEqual(
        error.message,
        "/nonexistent/kyc-relay.yaml: cannot read this file (pass --config FILE or set KYC_RELAY_CONFIG)"
      )
    }))

  it.effect("accepts the configuration shipped in config/, with or without the plugins' environment", () =>
    Effect.gen(function*() {
      const load = (env: Record<string, string>) =>
        loadConfigFile("config/kyc-relay.yaml").pipe(withEnv(env), Effect.provide(NodeContext.layer))
      const bare = yield* load({ CASHFREE_CLIENT_SECRET: "x" })
      assert.strictEqual(bare.config.store.url, "sqlite:data/kyc-relay.db")
      assert.deepStrictEqual([...bare.instances.keys()], ["log-all", "audit"])
      assert.deepStrictEqual([...bare.disabled.keys()], ["slack-compliance", "link-expiry-mail", "vkyc-desk-mail", "crm"])
      const full = yield* load({
        CASHFREE_CLIENT_SECRET: "x",
        SLACK_BOT_TOKEN: "xoxb-test",
        SMTP_URL: "smtp://127.0.0.1:2525",
        CRM_BASE_URL: "https://crm.example.com",
        CRM_TOKEN: "t"
      })
      assert.deepStrictEqual(
        [...full.instances.values()].map((i) => `${i.name}:${i.plugin.name}`),
        ["log-all:log", "audit:audit-log", "slack-compliance:slack", "link-expiry-mail:email", "vkyc-desk-mail:email", "crm:crm"]
      )
      assert.strictEqual(full.disabled.size, 0)
    }))

  it.effect("checks plugins, routes, globs and durations, naming line and key and suggesting names", () =>
    Effect.gen(function*() {
      const lines = yield* problemsOf([
        "cashfree:",
        "  secrets: [\"x\"]",
        "plugins:",
        "  ops:",
        "    use: webhok",
        "  crm:",
        "    use: webhook",
        "    url: ftp://crm",
        "    colour: blue",
        "  audit:",
        "    use: ./plugins/missing.ts",
        "routes:",
        "  - match: { event_type: \"vkyc_*\" }",
        "    to: ops",
        "  - match: { event_type: VKYC_USER_LINK_GENERATD }",
        "    to: [crm, opps]",
        "retry:",
        "  initial_delay: 5 minutes"
      ].join("\n"))
      assert.deepStrictEqual(lines, [
        "relay.yaml:13:14 routes.0.match.event_type: an event type or a glob of capitals, digits, _, * and ? (e.g. VKYC_*)",
        "relay.yaml:18:3 retry.initial_delay: a duration such as 500ms, 30s, 5m, 24h or 7d"
      ])
      const second = yield* problemsOf([
        "cashfree:",
        "  secrets: [\"x\"]",
        "plugins:",
        "  ops:",
        "    use: webhok",
        "  crm:",
        "    use: webhook",
        "    url: ftp://crm",
        "    colour: blue",
        "  audit:",
        "    use: ./plugins/missing.ts",
        "routes:",
        "  - match: { event_type: VKYC_USER_LINK_GENERATD }",
        "    to: [crm, opps]"
      ].join("\n"))
      // The loader's own words for a missing module differ between Node versions.
      const cannotLoad = second.findIndex((line) => line.startsWith("relay.yaml:11:5 plugins.audit.use: cannot load ./plugins/missing.ts: "))
      assert.isAtLeast(cannotLoad, 0)
      assert.deepStrictEqual(second.filter((_, i) => i !== cannotLoad), [
        "relay.yaml:5:5 plugins.ops.use: unknown plugin \"webhok\" (did you mean webhook?); built-in plugins are log, webhook, slack, email, crm, or give a path such as ./plugins/my-plugin.ts",
        "relay.yaml:9:5 plugins.crm.colour: unknown key; expected one of \"url\" | \"headers\"",
        "relay.yaml:8:5 plugins.crm.url: an http:// or https:// URL",
        "relay.yaml:14:15 routes.0.to.1: no plugin instance named \"opps\" (did you mean ops?); instances: ops, crm, audit",
        "relay.yaml:13:14 routes.0.match.event_type: unknown event type VKYC_USER_LINK_GENERATD (did you mean VKYC_USER_LINK_GENERATED?)"
      ])
      const third = yield* problemsOf([
        "cashfree:",
        "  secrets: [\"x\"]",
        "plugins:",
        "  slow:",
        "    use: log",
        "    timeout: 5m",
        "  default:",
        "    use: log",
        "  never:",
        "    use: log",
        "    timeout: 0s",
        "routes:",
        "  - match: { event_type: [VKYC_*, VKYC_USER_LINK_GENERATED_TYPO*] }",
        "    to: [slow, default, never]",
        "dispatch:",
        "  lease: 20s"
      ].join("\n"))
      assert.deepStrictEqual(third, [
        "relay.yaml:6:5 plugins.slow.timeout: must be shorter than dispatch.lease (20s), or a call still running would be run again",
        "relay.yaml:16:3 dispatch.lease: must be longer than the 30s default timeout of plugins.default, or a call still running would be run again",
        "relay.yaml:11:5 plugins.never.timeout: expected a duration longer than 0s",
        `relay.yaml:13:35 routes.0.match.event_type.1: VKYC_USER_LINK_GENERATED_TYPO* matches no event type kyc-relay knows; event types: ${EVENT_TYPES.join(", ")}`
      ])
    }))

  it.effect("loads a custom plugin by path and decodes its settings with its own Schema", () =>
    Effect.gen(function*() {
      const loaded = yield* parseConfigText(
        [
          "cashfree:",
          "  secrets: [\"x\"]",
          "plugins:",
          "  audit:",
          "    use: ./plugins/examples/audit-log.ts",
          "    file: /tmp/audit.jsonl",
          "    concurrency: 2",
          "    timeout: 5s",
          "routes:",
          "  - to: audit"
        ].join("\n"),
        "relay.yaml"
      )
      const audit = loaded.instances.get("audit")!
      assert.deepStrictEqual(
        [audit.plugin.name, audit.settings, audit.concurrency, Duration.toMillis(audit.timeout)],
        ["audit-log", { file: "/tmp/audit.jsonl" }, 2, 5000]
      )
      const missing = yield* problemsOf("cashfree:\n  secrets: [\"x\"]\nplugins:\n  audit:\n    use: ./plugins/examples/audit-log.ts\n")
      assert.deepStrictEqual(missing, ["relay.yaml:4:3 plugins.audit.file: is missing"])
    }))

  it.effect("leaves an instance whose environment is missing disabled instead of refusing to start", () =>
    Effect.gen(function*() {
      const text = [
        "cashfree:",
        "  secrets: [\"x\"]",
        "plugins:",
        "  ops:",
        "    use: webhook",
        "    url: \"${OPS_HOOK_URL}\"",
        "    headers: { authorization: \"Bearer ${OPS_TOKEN}\" }",
        "  log-all:",
        "    use: log",
        "routes:",
        "  - to: [ops, log-all]"
      ].join("\n")
      const without = yield* parseConfigText(text, "relay.yaml")
      assert.deepStrictEqual([...without.instances.keys()], ["log-all"])
      assert.deepStrictEqual([...without.disabled], [["ops", "environment variables OPS_HOOK_URL, OPS_TOKEN not set"]])
      const withEnv_ = yield* parseConfigText(text, "relay.yaml").pipe(
        withEnv({ OPS_HOOK_URL: "http://127.0.0.1:9/hook", OPS_TOKEN: "t" })
      )
      assert.deepStrictEqual([...withEnv_.instances.keys()], ["ops", "log-all"])
      assert.strictEqual(withEnv_.disabled.size, 0)

      // A disabled instance is still checked: a typo shows now, not on the day its variables are set.
      const typo = yield* Effect.either(parseConfigText(text.replace("    headers:", "    header:"), "relay.yaml"))
      assert.deepStrictEqual(
        Either.isLeft(typo) ? typo.left.message.split("\n") : "loaded",
        ["relay.yaml:7:5 plugins.ops.header: unknown key; expected one of \"url\" | \"headers\""]
      )

      // An instance name with a dot is one name: its unset variable disables it, not an instance named "ops".
      const dotted = yield* parseConfigText(text.replace("  ops:", "  ops.eu:").replace("to: [ops,", "to: [ops.eu,"), "relay.yaml")
      assert.deepStrictEqual([...dotted.disabled], [["ops.eu", "environment variables OPS_HOOK_URL, OPS_TOKEN not set"]])
    }))
})
