import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { fixture } from "../support/Fixtures.js"
import { post, signedHeaders, startRelay, tempSqlite } from "../support/Relay.js"

const SECRET = "hardening-secret"
const text = fixture("VKYC_USER_CALL_QUEUED").text

describe("optional hardening", () => {
  it.scopedLive("refuses header-signed webhooks whose timestamp is outside timestamp_tolerance", () =>
    Effect.gen(function*() {
      const relay = yield* startRelay({ store: yield* tempSqlite, secrets: [SECRET], cashfreeLines: ["  timestamp_tolerance: 5m"] })
      const old = yield* post(relay.webhookUrl, text, signedHeaders(SECRET, text, String(Date.now() - 6 * 60_000)))
      assert.deepStrictEqual([old.status, old.body.detail], [401, "x-webhook-timestamp is more than 5m away from now"])
      const future = yield* post(relay.webhookUrl, text, signedHeaders(SECRET, text, String(Date.now() + 6 * 60_000)))
      assert.strictEqual(future.status, 401)
      const garbage = yield* post(relay.webhookUrl, text, signedHeaders(SECRET, text, "soon"))
      assert.strictEqual(garbage.status, 401)
      const unsignedOld = yield* post(relay.webhookUrl, text, signedHeaders("wrong", text, String(Date.now() - 6 * 60_000)))
      assert.strictEqual(unsignedOld.body.detail, "x-webhook-signature does not match the timestamp and body for any configured secret")
      assert.strictEqual(yield* relay.events.count, 0)
      const fresh = yield* post(relay.webhookUrl, text, signedHeaders(SECRET, text))
      assert.strictEqual(fresh.status, 200)
    }))

  it.scopedLive("accepts webhooks only from allowed_ips, believing X-Forwarded-For only from trusted_proxies", () =>
    Effect.gen(function*() {
      const headers = signedHeaders(SECRET, text)
      const strict = yield* startRelay({ store: yield* tempSqlite, secrets: [SECRET], serverLines: ["  allowed_ips: [52.66.101.190, 10.0.0.0/8]"] })
      const direct = yield* post(strict.webhookUrl, text, headers)
      assert.deepStrictEqual([direct.status, direct.body.type], [403, "forbidden-source"])
      const spoofed = yield* post(strict.webhookUrl, text, { ...headers, "x-forwarded-for": "52.66.101.190" })
      assert.strictEqual(spoofed.status, 403, "X-Forwarded-For from an untrusted peer is ignored")
      assert.strictEqual(yield* strict.events.count, 0)

      const proxied = yield* startRelay({
        store: yield* tempSqlite,
        secrets: [SECRET],
        serverLines: ["  allowed_ips: [52.66.101.190, 10.0.0.0/8]", "  trusted_proxies: [127.0.0.1]"]
      })
      const viaProxy = yield* post(proxied.webhookUrl, text, { ...headers, "x-forwarded-for": "52.66.101.190" })
      assert.strictEqual(viaProxy.status, 200)
      const clientWritten = yield* post(proxied.webhookUrl, text, { ...headers, "x-forwarded-for": "52.66.101.190, 192.0.2.7" })
      assert.strictEqual(clientWritten.status, 403, "the hop the proxy saw is 192.0.2.7, whatever the client wrote before it")
      const subnet = yield* post(proxied.webhookUrl, text, { ...headers, "x-forwarded-for": "10.1.2.3" })
      assert.deepStrictEqual([subnet.status, subnet.body.status], [200, "duplicate"])
      const healthy = yield* Effect.promise(() => fetch(`${proxied.baseUrl}/healthz`).then((r) => r.status))
      assert.strictEqual(healthy, 200, "probes are not subject to the allowlist")
    }))

  it.effect("refuses addresses that are not IPs or CIDR ranges", () =>
    Effect.gen(function*() {
      const error = yield* startRelay({ store: "sqlite:/tmp/never.db", serverLines: ["  allowed_ips: [cashfree.com]"] }).pipe(
        Effect.scoped,
        Effect.flip
      )
      assert.strictEqual(error.message, "test.yaml:4:17 server.allowed_ips.0: an IP address or CIDR range, e.g. 52.66.101.190 or 10.0.0.0/8")
    }))
})
