import * as NodeContext from "@effect/platform-node/NodeContext"
import { SqlClient } from "@effect/sql"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Schedule } from "effect"
import { writeFileSync } from "node:fs"
import { join } from "node:path"
import { Deliveries } from "../../src/store/Deliveries.js"
import * as Sql from "../../src/store/Sql.js"
import { uniqueEvent } from "../support/Fixtures.js"
import { listening, spawnCli, stop, tempDir } from "../support/Process.js"
import { eventually, pause, startReceiver } from "../support/Receiver.js"
import { post, relayConfigYaml, signedHeaders, tempPostgres } from "../support/Relay.js"

const SECRET = "multi-instance-secret"
const EVENTS = 500
const INSTANCES = ["sink-a", "sink-b", "sink-c"] as const
const DELIVERIES = EVENTS * INSTANCES.length

const configYaml = (store: string, sinkUrl: string) => `
${relayConfigYaml({ store, secrets: [SECRET] })}plugins:
${INSTANCES.map((name) => `  ${name}:\n    use: webhook\n    url: ${sinkUrl}/${name}\n    concurrency: 4\n    timeout: 10s`).join("\n")}
routes:
  - match: { event_type: "*" }
    to: [${INSTANCES.join(", ")}]
retry:
  initial_delay: 200ms
  jitter: 0
dispatch:
  poll_interval: 200ms
  lease: 30s
  shutdown_grace: 2s
`

describe("dispatch from several processes", () => {
  it.scopedLive("two processes on one PostgreSQL database run each delivery once", () =>
    Effect.gen(function*() {
      const started = Date.now()
      const store = yield* tempPostgres
      const dir = yield* tempDir("kyc-relay-multi-")
      const sink = yield* startReceiver([{ status: 200 }])
      const env = { KYC_RELAY_LOG_LEVEL: "info" }

      // One configuration (port 0: each process listens where it can); both start together on the new database.
      const config = join(dir, "relay.yaml")
      writeFileSync(config, configYaml(store, sink.url))
      const procs = [yield* spawnCli(["serve", "--config", config], env), yield* spawnCli(["serve", "--config", config], env)]
      const servers = yield* Effect.forEach(procs, (proc) =>
        Effect.map(listening(proc), (url) => ({ proc, webhookUrl: `${url}/webhooks/cashfree` })))
      const logs = () => servers.map((s, n) => `--- server ${n} ---\n${s.proc.output.stdout}${s.proc.output.stderr}`).join("\n")

      const sendStarted = Date.now()
      const answers = yield* Effect.forEach(
        Array.from({ length: EVENTS }, (_, i) => i),
        (i) => {
          const body = uniqueEvent("multi", i)
          return post(servers[i % 2]!.webhookUrl, body, signedHeaders(SECRET, body))
        },
        { concurrency: 20 }
      ).pipe(
        Effect.catchAllDefect((defect) =>
          Effect.dieMessage(`sending failed: ${defect}${
            defect instanceof Error && defect.cause instanceof Error ? ` (${defect.cause.message})` : ""
          }\n${servers.map((s, n) => `server ${n}: exit ${s.proc.child.exitCode} ${s.proc.child.signalCode}`).join("\n")}\n${logs()}`)
        )
      )
      const sendMs = Date.now() - sendStarted
      const refused = answers.filter((a) => a.status !== 200 || a.body.status !== "accepted")
      assert.deepStrictEqual(refused, [], "every event accepted")
      const acknowledged = new Set<string>(answers.map((a) => a.body.event_id as string))
      assert.strictEqual(acknowledged.size, EVENTS)

      yield* eventually(() => sink.received.length >= DELIVERIES, 60_000).pipe(
        Effect.catchAllDefect(() =>
          Effect.dieMessage(`only ${sink.received.length} of ${DELIVERIES} deliveries reached the sink\n${logs()}`)
        )
      )
      const drainMs = Date.now() - sendStarted
      // Anything delivered twice would show up within a poll interval or two.
      yield* pause(1_000)

      const perPair = new Map<string, number>()
      for (const r of sink.received) {
        const key = `${r.headers["x-kyc-relay-event-id"]} ${r.path}`
        perPair.set(key, (perPair.get(key) ?? 0) + 1)
      }
      const duplicates = [...perPair].filter(([, n]) => n > 1)
      const duplicateCount = sink.received.length - perPair.size

      // The store's side: every delivery done after a single attempt, and which processes did the work.
      const ctx = yield* Layer.build(
        Deliveries.Default.pipe(Layer.provideMerge(Sql.layer(store)), Layer.provide(NodeContext.layer))
      ).pipe(Effect.orDie)
      const deliveries = yield* Effect.provide(Deliveries, ctx)
      const sql = yield* Effect.provide(SqlClient.SqlClient, ctx)
      // The sink sees a delivery just before its worker records it: give the last ones a moment.
      const counts = yield* deliveries.countByState.pipe(
        Effect.filterOrFail((c) => c.done === DELIVERIES),
        Effect.retry(Schedule.spaced("100 millis")),
        Effect.timeout("10 seconds"),
        Effect.catchAll(() => deliveries.countByState)
      )
      const workers = yield* sql<{ worker: string; n: number | string }>`
        SELECT worker, COUNT(*) AS n FROM attempts GROUP BY worker ORDER BY worker`.pipe(Effect.orDie)
      const attempts = yield* sql<{ n: number | string }>`SELECT COUNT(*) AS n FROM attempts`.pipe(Effect.orDie)

      console.log(
        `multi-instance: ${EVENTS} events, ${sink.received.length} deliveries, ${duplicateCount} duplicates, ` +
          `workers: ${workers.length} (${workers.map((w) => Number(w.n)).join(" + ")} attempts), ` +
          `sent in ${sendMs} ms, all delivered ${drainMs} ms after the first send, ${Date.now() - started} ms in all`
      )

      assert.deepStrictEqual(
        duplicates,
        [],
        `${duplicateCount} duplicate deliveries (event_id path, count): ${JSON.stringify(duplicates)}`
      )
      assert.strictEqual(perPair.size, DELIVERIES)
      for (const id of acknowledged) {
        for (const name of INSTANCES) assert.isTrue(perPair.has(`${id} /${name}`), `${id} delivered to ${name}`)
      }
      assert.deepStrictEqual(counts, { done: DELIVERIES })
      assert.strictEqual(Number(attempts[0]!.n), DELIVERIES, "one attempt per delivery")
      assert.strictEqual(workers.length, 2, "both processes delivered some of the events")
      for (const w of workers) assert.isAbove(Number(w.n), 0)

      // Both stop gracefully: SIGTERM, exit 0.
      const codes = yield* Effect.forEach(servers, (s) => stop(s.proc.child), { concurrency: "unbounded" })
      assert.deepStrictEqual(codes, [0, 0], logs())
    }), 90_000)
})
