import * as NodeContext from "@effect/platform-node/NodeContext"
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Layer } from "effect"
import { ServeLive } from "../../src/App.js"
import { parseConfigText, Settings } from "../../src/config/ConfigFile.js"
import { Dispatcher } from "../../src/dispatch/Dispatcher.js"
import { ServerAddress } from "../../src/http/Server.js"
import { Deliveries } from "../../src/store/Deliveries.js"
import { uniqueEvent } from "../support/Fixtures.js"
import { eventually, pause, startReceiver } from "../support/Receiver.js"
import { post, relayConfigYaml, signedHeaders, STORES } from "../support/Relay.js"

const SECRET = "handover-secret"
const EVENTS = 6

// One worker, and a lease long enough next to the timeout that the instance claims ahead of it.
const config = (store: string, sinkUrl: string) =>
  relayConfigYaml({
    store,
    secrets: [SECRET],
    extra: `plugins:
  sink:
    use: webhook
    url: ${sinkUrl}/hook
    concurrency: 1
    timeout: 5s
routes:
  - to: sink
dispatch:
  poll_interval: 100ms
  lease: 60s
`
  })

describe.each(STORES)("reload on $name", ({ make }) => {
  it.scopedLive("a stopping generation hands back the deliveries it claimed and had not started", () =>
    Effect.gen(function*() {
      const store = yield* make
      const slow = yield* startReceiver(() => ({ status: 200, delayMs: 1_000 }))
      const fast = yield* startReceiver()
      const loaded = yield* parseConfigText(config(store, slow.url), "test.yaml")
      const context = yield* Layer.build(
        ServeLive.pipe(Layer.provide(Layer.succeed(Settings, loaded)), Layer.provide(NodeContext.layer))
      ).pipe(Effect.orDie)
      const webhookUrl = `${Context.get(context, ServerAddress).url}/webhooks/cashfree`
      const dispatcher = Context.get(context, Dispatcher)
      const deliveries = Context.get(context, Deliveries)

      // All of them are claimed ahead of the single worker, which is busy with the first for a second.
      yield* Effect.forEach(Array.from({ length: EVENTS }, (_, i) => uniqueEvent("handover", i)), (body) =>
        post(webhookUrl, body, signedHeaders(SECRET, body)), { concurrency: EVENTS })
      yield* eventually(() => slow.received.length === 1)
      yield* pause(100)
      const running = yield* deliveries.countByState
      assert.deepStrictEqual(running, { running: EVENTS }, "all claimed while the only worker is busy")

      // The new generation sends to the fast sink. The old one finishes its call, and gives the rest back at once.
      const started = Date.now()
      yield* dispatcher.reload(yield* parseConfigText(config(store, fast.url), "test.yaml"))
      const reloadMs = Date.now() - started
      yield* eventually(() => fast.received.length === EVENTS - 1)
      yield* pause(300)

      assert.isBelow(reloadMs, 2_000, "the reload waited for the call in flight only")
      assert.strictEqual(slow.received.length, 1)
      const ids = [...slow.received, ...fast.received].map((r) => r.headers["x-kyc-relay-event-id"])
      assert.strictEqual(new Set(ids).size, EVENTS, "each event delivered once")
      // A delivery handed back was never attempted: every call is attempt 1, and so is every row.
      assert.deepStrictEqual([...slow.received, ...fast.received].map((r) => r.headers["x-kyc-relay-attempt"]), Array(EVENTS).fill("1"))
      for (const r of [...slow.received, ...fast.received]) {
        assert.notProperty(r.headers, "traceparent", "no trace headers leave with a delivery")
        assert.notProperty(r.headers, "b3")
      }
      const rows = yield* deliveries.list({ limit: 100 })
      assert.deepStrictEqual(rows.map((row) => [row.state, row.attempts, row.lease_owner]), Array(EVENTS).fill(["done", 1, null]))
    }), 30_000)
})
