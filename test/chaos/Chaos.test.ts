import * as NodeContext from "@effect/platform-node/NodeContext"
import { SqlClient } from "@effect/sql"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Schedule } from "effect"
import { type ChildProcess, spawn } from "node:child_process"
import { writeFileSync } from "node:fs"
import { join, resolve } from "node:path"
import { Deliveries } from "../../src/store/Deliveries.js"
import { Events } from "../../src/store/Events.js"
import * as Sql from "../../src/store/Sql.js"
import { repoRoot, uniqueEvent } from "../support/Fixtures.js"
import { alive, kill, listening, stop, tempDir } from "../support/Process.js"
import { eventually, pause, startReceiver } from "../support/Receiver.js"
import { relayConfigYaml, signedHeaders, tempPostgres, tempSqlite } from "../support/Relay.js"

/**
 * A Jepsen-style crash suite. A client posts signed webhooks (with duplicates and re-signed retries) to
 * random `kyc-relay serve` processes while they are SIGKILLed and restarted on the same file and database, at
 * random moments during ingest (some just after a POST was sent) and during dispatch (some while a delivery is
 * open at a sink). SQLite runs one process; PostgreSQL two, killed one at a time except every third round,
 * which kills both at once. Then everything drains and the client's own record, the sinks and the store must
 * agree: each acknowledged event stored once, each delivery done, each (event, instance) delivered at least
 * once, and repeats only where a killed process had that delivery in flight.
 *
 * `npm test` runs a small configuration; `CHAOS_ROUNDS` (kill rounds) and `CHAOS_EVENTS` (unique events)
 * make it bigger (`npm run test:chaos`).
 */

const positiveInt = (name: string, fallback: number): number => {
  const raw = process.env[name]
  if (raw === undefined || raw === "") return fallback
  const value = Number(raw)
  if (!Number.isInteger(value) || value < 1) throw new Error(`${name} must be a positive integer, not ${JSON.stringify(raw)}`)
  return value
}

const ROUNDS = positiveInt("CHAOS_ROUNDS", 3)
const EVENTS = positiveInt("CHAOS_EVENTS", 60)
const SECRET = "chaos-test-secret"
const INSTANCES = ["sink-a", "sink-b"] as const
type Instance = typeof INSTANCES[number]
/** Workers per plugin instance and process: at most this many deliveries of one instance in flight per process. */
const CONCURRENCY = 4
const SINK_MAX_DELAY_MS = 150
/** Concurrent client requests. */
const CLIENT_CONCURRENCY = 4
/** Roughly how long the client spreads its sends over, so that kills land while it is still sending. */
const INGEST_WINDOW_MS = ROUNDS * 2_000
const DRAIN_MS = 30_000
const BIN = resolve(repoRoot, "bin/kyc-relay.js")

/** Fails with the first offenders spelled out (chai would abbreviate them). */
const none = (offenders: ReadonlyArray<unknown>, what: string) =>
  assert.strictEqual(offenders.length, 0, `${what}; ${offenders.length} offenders: ${JSON.stringify(offenders.slice(0, 10))}`)

const random = (min: number, max: number) => min + Math.floor(Math.random() * (max - min + 1))

const configYaml = (store: string, sinks: Readonly<Record<Instance, string>>) => `
${relayConfigYaml({ store, secrets: [SECRET] })}plugins:
${
  INSTANCES.map((name) =>
    [
      `  ${name}:`,
      "    use: webhook",
      `    url: ${sinks[name]}/${name}`,
      // The same file for every process; the environment tells the sinks which process sent each request.
      "    headers: { x-chaos-process: \"${CHAOS_PROCESS}\" }",
      `    concurrency: ${CONCURRENCY}`,
      "    timeout: 1500ms"
    ].join("\n")
  ).join("\n")
}
routes:
  - match: { event_type: "*" }
    to: [${INSTANCES.join(", ")}]
retry:
  initial_delay: 100ms
  jitter: 0
dispatch:
  poll_interval: 100ms
  lease: 2s
  shutdown_grace: 1s
`

/** A started `kyc-relay serve`; `gen` numbers every process started in one scenario. */
interface Spawned {
  readonly gen: number
  readonly child: ChildProcess
  readonly output: { stdout: string; stderr: string }
}

/** A process that is listening. */
interface Proc extends Spawned {
  readonly webhookUrl: string
}

type Kind = "original" | "duplicate" | "resigned"

/** One POST the client has to get acknowledged. A duplicate replays the original's exact headers. */
interface Op {
  readonly key: number
  readonly kind: Kind
  readonly body: string
  readonly headers: Record<string, string> | undefined
  readonly order: number
}

interface Answer {
  readonly key: number
  readonly kind: Kind
  readonly status: string
  readonly eventId: string
}

type Attempted =
  | { readonly _tag: "answered"; readonly status: number; readonly body: any }
  | { readonly _tag: "failed"; readonly reason: string }

/** One POST; a refused or reset connection (the target was killed) is a result, not an error. */
const postOnce = (url: string, body: string, headers: Record<string, string>) =>
  Effect.promise(async (interrupted): Promise<Attempted> => {
    try {
      const response = await fetch(url, {
        method: "POST",
        body,
        headers: { "content-type": "application/json", ...headers },
        signal: AbortSignal.any([interrupted, AbortSignal.timeout(10_000)])
      })
      const text = await response.text()
      let parsed: unknown = text
      try {
        parsed = JSON.parse(text)
      } catch {
        // not JSON
      }
      return { _tag: "answered", status: response.status, body: parsed }
    } catch (error) {
      const cause = error instanceof Error && error.cause instanceof Error ? error.cause : error
      const code = (cause as NodeJS.ErrnoException).code
      return { _tag: "failed", reason: code ?? (cause instanceof Error ? cause.message : String(cause)) }
    }
  })

interface Kill {
  readonly gen: number
  readonly at: number
  readonly duringIngest: boolean
  /** A POST to the victim was open at that moment. */
  readonly midPost: boolean
  /** The victim had a request open at a sink at that moment. */
  readonly onTheWire: boolean
  /** Some acknowledged (event, instance) pair had not reached its sink yet. */
  readonly outstanding: boolean
}

interface SinkMeta {
  readonly at: number
  readonly gen: number
}

const STORES = [
  { name: "sqlite", make: tempSqlite, processes: 1 },
  { name: "postgres", make: tempPostgres, processes: 2 }
] as const

describe.each(STORES)("chaos on $name", ({ name, make, processes }) => {
  it.scopedLive(`${processes} process(es), ${ROUNDS} SIGKILL rounds, ${EVENTS} events: nothing lost, nothing stored twice`, () =>
    Effect.gen(function*() {
      const started = Date.now()
      const store = yield* make
      const dir = yield* tempDir("kyc-relay-chaos-")

      // ---- sinks: one per instance, each records when and from which process every request came ----
      const sinkMeta: Record<Instance, Array<SinkMeta>> = { "sink-a": [], "sink-b": [] }
      const onWire = new Map<number, number>()
      const sinkFor = (instance: Instance) =>
        startReceiver((req, index) => {
          const delayMs = random(0, SINK_MAX_DELAY_MS)
          const gen = Number(req.headers["x-chaos-process"])
          sinkMeta[instance][index] = { at: Date.now(), gen }
          onWire.set(gen, (onWire.get(gen) ?? 0) + 1)
          setTimeout(() => onWire.set(gen, onWire.get(gen)! - 1), delayMs)
          return { status: 200, delayMs }
        })
      const sinks = { "sink-a": yield* sinkFor("sink-a"), "sink-b": yield* sinkFor("sink-b") }
      const config = join(dir, "relay.yaml")
      writeFileSync(config, configYaml(store, { "sink-a": sinks["sink-a"].url, "sink-b": sinks["sink-b"].url }))

      // ---- processes: every one ever started is SIGKILLed in the finalizer if still alive, even on failure ----
      const everyProc: Array<Spawned> = []
      yield* Effect.addFinalizer(() =>
        Effect.forEach(everyProc.filter((p) => alive(p.child)), (p) => kill(p.child), { concurrency: "unbounded", discard: true })
      )
      let nextGen = 0
      const startProc = Effect.gen(function*() {
        const gen = nextGen++
        const child = spawn(process.execPath, [BIN, "serve", "--config", config], {
          cwd: repoRoot,
          env: { ...process.env, KYC_RELAY_LOG_LEVEL: "info", CHAOS_PROCESS: String(gen) }
        })
        const output = { stdout: "", stderr: "" }
        child.stdout.on("data", (chunk) => (output.stdout += chunk))
        child.stderr.on("data", (chunk) => (output.stderr += chunk))
        everyProc.push({ gen, child, output })
        const url = yield* listening({ child, output })
        return { gen, child, output, webhookUrl: `${url}/webhooks/cashfree` } satisfies Proc
      })
      /** The processes the client knows, one slot each; a killed one stays until its replacement listens. */
      const slots: Array<Proc> = yield* Effect.forEach(Array.from({ length: processes }), () => startProc, {
        concurrency: "unbounded"
      })
      const logs = () =>
        everyProc.map((p) => {
          const lines = `${p.output.stdout}${p.output.stderr}`.split("\n")
          const notable = lines.filter((l) => /ERROR|WARN|Error|error/.test(l))
          return `--- process ${p.gen} (${p.child.signalCode ?? p.child.exitCode ?? "running"}): ${notable.length} warnings/errors ---\n${
            notable.slice(-15).join("\n")
          }`
        }).join("\n")

      // ---- the client: unique events, ~10 % exact duplicates, ~10 % re-signed copies, retried until answered ----
      const ops: Array<Op> = []
      for (let i = 0; i < EVENTS; i++) {
        const body = uniqueEvent(`chaos_${name}`, i)
        const headers = signedHeaders(SECRET, body)
        ops.push({ key: i, kind: "original", body, headers, order: i })
        if (Math.random() < 0.1) ops.push({ key: i, kind: "duplicate", body, headers, order: i + Math.random() * EVENTS * 0.3 })
        if (Math.random() < 0.1) {
          ops.push({ key: i, kind: "resigned", body, headers: undefined, order: i + Math.random() * EVENTS * 0.3 })
        }
      }
      ops.sort((a, b) => a.order - b.order)
      const gapMs = (INGEST_WINDOW_MS * CLIENT_CONCURRENCY) / ops.length
      const answers: Array<Answer> = []
      const failures = new Map<string, number>()
      const posting = new Map<number, number>()
      /** Set by the killer to hear of the next POST (and its target process). */
      let onPost: ((gen: number) => void) | null = null
      let acked = 0
      let clientDone = false

      // Like Cashfree, the client knows the servers' addresses, not whether they are up: a killed process stays in
      // its view until its replacement listens, so requests to it are refused and retried later.
      const sendOp = (op: Op) =>
        Effect.gen(function*() {
          yield* pause(random(0, 2 * gapMs))
          for (let attempt = 1;; attempt++) {
            const target = slots[random(0, slots.length - 1)]!
            // A retry is signed again with a fresh timestamp; a duplicate's first try replays the original exactly.
            const headers = attempt === 1 && op.headers !== undefined
              ? op.headers
              : { ...signedHeaders(SECRET, op.body), "x-webhook-attempt": String(attempt) }
            posting.set(target.gen, (posting.get(target.gen) ?? 0) + 1)
            onPost?.(target.gen)
            const result = yield* postOnce(target.webhookUrl, op.body, headers).pipe(
              Effect.ensuring(Effect.sync(() => posting.set(target.gen, posting.get(target.gen)! - 1)))
            )
            if (result._tag === "answered" && result.status === 200) {
              answers.push({ key: op.key, kind: op.kind, status: result.body.status, eventId: result.body.event_id })
              acked++
              return
            }
            if (result._tag === "answered" && result.status !== 503) {
              return yield* Effect.dieMessage(`unexpected answer ${result.status}: ${JSON.stringify(result.body)}`)
            }
            const reason = result._tag === "failed" ? result.reason : `HTTP ${result.status}`
            failures.set(reason, (failures.get(reason) ?? 0) + 1)
            yield* pause(random(100, 300))
          }
        })

      const client = Effect.forEach(ops, sendOp, { concurrency: CLIENT_CONCURRENCY, discard: true }).pipe(
        Effect.timeoutFail({
          duration: INGEST_WINDOW_MS + 60_000,
          onTimeout: () => new Error(`the client could not get every webhook acknowledged: ${acked} of ${ops.length}`)
        }),
        Effect.orDie,
        Effect.ensuring(Effect.sync(() => (clientDone = true)))
      )

      // ---- the killer: SQLite's only process; one of PostgreSQL's two, or both at once every third round ----
      const kills: Array<Kill> = []
      const restartMs: Array<number> = []
      const pairsOutstanding = () => {
        const ids = new Set(answers.map((a) => a.eventId))
        return INSTANCES.some((instance) => {
          const seen = new Set(sinks[instance].received.map((r) => r.headers["x-kyc-relay-event-id"]))
          return [...ids].some((id) => !seen.has(id))
        })
      }
      /** The process the next POST goes to, 0-5 ms after the client sends it (null if none within 2 s). */
      const nextPost = Effect.async<number | null>((resume) => {
        const timer = setTimeout(() => {
          onPost = null
          resume(Effect.succeed(null))
        }, 2_000)
        onPost = (gen) => {
          onPost = null
          clearTimeout(timer)
          setTimeout(() => resume(Effect.succeed(gen)), random(0, 5))
        }
        return Effect.sync(() => {
          clearTimeout(timer)
          onPost = null
        })
      })
      /** A process with a delivery open at a sink (null if none within 1 s). */
      const deliveringNow = Effect.promise(async () => {
        const deadline = Date.now() + 1_000
        for (;;) {
          const busy = slots.filter((p) => (onWire.get(p.gen) ?? 0) > 0)
          if (busy.length > 0) return busy[random(0, busy.length - 1)]!.gen
          if (Date.now() > deadline) return null
          await new Promise((done) => setTimeout(done, 2))
        }
      })
      const killer = Effect.gen(function*() {
        for (let round = 0; round < ROUNDS; round++) {
          const last = round === ROUNDS - 1
          // The last round comes after the client has finished: a kill during dispatch alone.
          if (last && ROUNDS > 1) yield* eventually(() => clientDone, INGEST_WINDOW_MS + 90_000)
          yield* pause(random(last ? 0 : 200, last ? 300 : 1_000))
          // While the client sends, every other kill hits a POST just sent; otherwise a delivery on the wire.
          const chosen = !clientDone && round % 2 === 0 ? yield* nextPost : yield* deliveringNow
          const first = slots.findIndex((p) => p.gen === chosen)
          const victim = first >= 0 ? first : random(0, slots.length - 1)
          const victims = processes === 2 && round % 3 === 2 ? slots.map((_, slot) => slot) : [victim]
          const procs = victims.map((slot) => slots[slot]!)
          const at = Date.now()
          const duringIngest = !clientDone
          const outstanding = pairsOutstanding()
          for (const proc of procs) {
            kills.push({
              gen: proc.gen,
              at,
              duringIngest,
              midPost: (posting.get(proc.gen) ?? 0) > 0,
              onTheWire: (onWire.get(proc.gen) ?? 0) > 0,
              outstanding
            })
          }
          const signals = yield* Effect.forEach(procs, (proc) => kill(proc.child), { concurrency: "unbounded" })
          assert.deepStrictEqual(signals, procs.map(() => "SIGKILL"))
          // Restarted on the same configuration and database; the client's view changes once it listens.
          yield* Effect.forEach(victims, (slot) =>
            Effect.map(startProc, (proc) => {
              slots[slot] = proc
              restartMs.push(Date.now() - at)
            }), { concurrency: "unbounded" })
        }
      })

      yield* Effect.all([client, killer], { concurrency: 2, discard: true }).pipe(
        Effect.catchAllDefect((defect) => Effect.dieMessage(`${defect}\n${logs()}`))
      )
      const chaosMs = Date.now() - started

      // ---- the client's own record ----
      assert.strictEqual(answers.length, ops.length, "every POST was eventually answered 200")
      const idsByKey = new Map<number, Set<string>>()
      const acceptedByKey = new Map<number, number>()
      for (const a of answers) {
        assert.include(["accepted", "duplicate"], a.status, `answer ${JSON.stringify(a)}`)
        idsByKey.set(a.key, (idsByKey.get(a.key) ?? new Set()).add(a.eventId))
        if (a.status === "accepted") acceptedByKey.set(a.key, (acceptedByKey.get(a.key) ?? 0) + 1)
      }
      const acknowledgedKeys = idsByKey.size
      assert.strictEqual(acknowledgedKeys, EVENTS)
      const split = [...idsByKey].filter(([, ids]) => ids.size > 1)
      none(split.map(([key, ids]) => [key, [...ids]]), "every answer for one body names the same event")
      const acceptedTwice = [...acceptedByKey].filter(([, n]) => n > 1)
      none(acceptedTwice, "no body accepted twice")
      const eventIdOf = new Map([...idsByKey].map(([key, ids]) => [key, [...ids][0]!]))
      const acknowledged = new Set(eventIdOf.values())
      const lostAccepts = EVENTS - acceptedByKey.size

      // ---- drain: every (event, instance) at its sink, then every delivery recorded as done (bounded) ----
      const drainStarted = Date.now()
      const missingPairs = () =>
        INSTANCES.flatMap((instance) => {
          const seen = new Set(sinks[instance].received.map((r) => r.headers["x-kyc-relay-event-id"]))
          return [...acknowledged].filter((id) => !seen.has(id)).map((id) => `${id} ${instance}`)
        })
      yield* eventually(() => missingPairs().length === 0, DRAIN_MS).pipe(
        Effect.catchAllDefect(() =>
          Effect.dieMessage(`not delivered within ${DRAIN_MS} ms: ${missingPairs().slice(0, 20).join(", ")}\n${logs()}`)
        )
      )

      const ctx = yield* Layer.build(
        Layer.mergeAll(Deliveries.Default, Events.Default).pipe(Layer.provideMerge(Sql.layer(store)), Layer.provide(NodeContext.layer))
      ).pipe(Effect.orDie)
      const deliveries = yield* Effect.provide(Deliveries, ctx)
      const events = yield* Effect.provide(Events, ctx)
      const sql = yield* Effect.provide(SqlClient.SqlClient, ctx)
      const expectedDeliveries = EVENTS * INSTANCES.length
      const counts = yield* deliveries.countByState.pipe(
        Effect.filterOrFail((c) => c.done === expectedDeliveries),
        Effect.retry(Schedule.spaced("100 millis")),
        Effect.timeout(Math.max(1_000, DRAIN_MS - (Date.now() - drainStarted))),
        Effect.catchAll(() => deliveries.countByState)
      )
      const drainMs = Date.now() - drainStarted
      // A repeat still on its way would arrive within a poll interval or two.
      yield* pause(500)

      // ---- the store ----
      const storedEvents = yield* events.count
      const twiceByKey = yield* sql<{ dedupe_key: string; n: number | string }>`
        SELECT dedupe_key, COUNT(*) AS n FROM events GROUP BY dedupe_key HAVING COUNT(*) > 1`.pipe(Effect.orDie)
      const twiceByVerification = yield* sql<{ verification_id: string; n: number | string }>`
        SELECT verification_id, COUNT(*) AS n FROM events GROUP BY verification_id HAVING COUNT(*) > 1`.pipe(Effect.orDie)
      const storedIds = yield* sql<{ id: string; verification_id: string }>`SELECT id, verification_id FROM events`.pipe(Effect.orDie)
      const rows = yield* deliveries.list({ limit: 1_000_000 })
      const dead = rows.filter((r) => r.state === "dead")
      const attempts = yield* sql<{ delivery_id: string; outcome: string; n: number | string }>`
        SELECT delivery_id, outcome, COUNT(*) AS n FROM attempts GROUP BY delivery_id, outcome`.pipe(Effect.orDie)

      // ---- the sinks ----
      interface Copy {
        readonly at: number
        readonly gen: number
        readonly attempt: number
        readonly idempotencyKey: string
      }
      const copies = new Map<string, Array<Copy>>()
      const unknown: Array<string> = []
      for (const instance of INSTANCES) {
        sinks[instance].received.forEach((r, index) => {
          const id = r.headers["x-kyc-relay-event-id"] as string
          if (!acknowledged.has(id) || r.path !== `/${instance}`) unknown.push(`${id} ${r.path}`)
          const pair = `${id} ${instance}`
          const meta = sinkMeta[instance][index]!
          copies.set(pair, [
            ...(copies.get(pair) ?? []),
            {
              at: meta.at,
              gen: meta.gen,
              attempt: Number(r.headers["x-kyc-relay-attempt"]),
              idempotencyKey: r.headers["idempotency-key"] as string
            }
          ])
        })
      }
      const sinkRequests = INSTANCES.reduce((n, instance) => n + sinks[instance].received.length, 0)
      const repeats = sinkRequests - copies.size
      const processKills = kills.length
      const bound = processKills * CONCURRENCY * INSTANCES.length
      const killAt = new Map(kills.map((k) => [k.gen, k.at]))
      // A repeat is explained only if the copy before it came from a process that was SIGKILLed after sending it
      // and before the next copy arrived (the lease of a live worker must never be taken over).
      const unexplained: Array<string> = []
      const repeatsByGen = new Map<string, number>()
      for (const [pair, list] of copies) {
        const sorted = [...list].sort((a, b) => a.at - b.at)
        for (let i = 0; i + 1 < sorted.length; i++) {
          const before = sorted[i]!
          const after = sorted[i + 1]!
          const killedAt = killAt.get(before.gen)
          if (killedAt === undefined || killedAt > after.at || after.gen === before.gen) {
            unexplained.push(`${pair}: process ${before.gen} at ${before.at} then ${after.gen} at ${after.at} (killed: ${killedAt ?? "never"})`)
          }
          if (after.attempt <= before.attempt || after.idempotencyKey !== before.idempotencyKey) {
            unexplained.push(`${pair}: attempt ${before.attempt} then ${after.attempt}, keys ${before.idempotencyKey} / ${after.idempotencyKey}`)
          }
          const slot = `${before.gen} ${pair.split(" ")[1]}`
          repeatsByGen.set(slot, (repeatsByGen.get(slot) ?? 0) + 1)
        }
      }
      const attemptsOf = new Map(rows.map((r) => [`${r.event_id} ${r.instance}`, r.attempts]))
      const lastCopyBehind = [...copies]
        .filter(([pair, list]) => Math.max(...list.map((c) => c.attempt)) !== attemptsOf.get(pair))
        .map(([pair, list]) => `${pair}: copies ${list.map((c) => c.attempt).join(",")}, row ${attemptsOf.get(pair)}`)

      const ingestKills = kills.filter((k) => k.duringIngest).length
      const dispatchKills = kills.filter((k) => k.onTheWire || k.outstanding).length
      const wireKills = kills.filter((k) => k.onTheWire).length
      const postKills = kills.filter((k) => k.midPost).length
      const restartAvg = Math.round(restartMs.reduce((a, b) => a + b, 0) / Math.max(1, restartMs.length))
      const failed = [...failures].map(([reason, n]) => `${n} ${reason}`).join(", ") || "none"
      const kinds = (kind: Kind) => ops.filter((o) => o.kind === kind).length
      console.log(
        `chaos ${name}: ${processes} process(es), ${processKills} SIGKILLs in ${ROUNDS} rounds ` +
          `(${ingestKills} during ingest, ${dispatchKills} during dispatch; ${postKills} with a POST open, ` +
          `${wireKills} with a delivery on the wire; restart ${restartAvg} ms on average); ` +
          `client: ${ops.length} POSTs (${EVENTS} events + ${kinds("duplicate")} duplicates + ${kinds("resigned")} re-signed), ` +
          `${answers.filter((a) => a.status === "accepted").length} accepted + ${answers.filter((a) => a.status === "duplicate").length} duplicate answers, ` +
          `${lostAccepts} acceptances lost to a kill, failed tries retried: ${failed}; ` +
          `store: ${storedEvents} events (${twiceByKey.length} dedupe keys twice), deliveries ${JSON.stringify(counts)}; ` +
          `sinks: ${sinkRequests} requests for ${copies.size} pairs, ${repeats} repeats (bound ${bound}); ` +
          `chaos ${chaosMs} ms, drained in ${drainMs} ms, ${Date.now() - started} ms in all`
      )

      // Stored exactly once.
      assert.strictEqual(storedEvents, acknowledgedKeys, "store event count == distinct bodies acknowledged")
      none(twiceByKey, "no dedupe key stored twice")
      none(twiceByVerification, "no body stored twice")
      assert.deepStrictEqual(
        new Map(storedIds.map((r) => [r.verification_id, r.id])),
        new Map([...eventIdOf].map(([key, id]) => [`chaos_${name}_${key}`, id])),
        "the stored event of each body is the one the client was told"
      )
      // Every routed delivery done, none dead.
      none(dead.map((r) => `${r.id}: ${r.last_error}`), "no dead letters")
      assert.deepStrictEqual(counts, { done: expectedDeliveries }, logs())
      assert.strictEqual(rows.length, expectedDeliveries)
      for (const row of rows) {
        assert.isTrue(acknowledged.has(row.event_id), `${row.event_id} was acknowledged`)
        assert.isNull(row.lease_owner, `${row.id} lease released`)
      }
      // A kill mid-call leaves no attempt row: exactly one recorded attempt per delivery, and it is "done".
      const notOnce = attempts.filter((a) => a.outcome !== "done" || Number(a.n) !== 1)
      none(notOnce, "one recorded attempt per delivery, done")
      assert.strictEqual(attempts.length, expectedDeliveries)
      // Every (event, instance) reached its sink; nothing else did.
      none(unknown, "only acknowledged events at the right sink")
      assert.strictEqual(copies.size, expectedDeliveries)
      none(lastCopyBehind, "the last copy at the sink is the attempt that finished the delivery")
      // Repeats only for deliveries a killed process had in flight.
      none(unexplained, "every repeat follows a copy from a process killed in between")
      for (const [slot, n] of repeatsByGen) assert.isAtMost(n, CONCURRENCY, `repeats after process/instance ${slot}`)
      assert.isAtMost(repeats, bound, "repeats <= kills x concurrency x instances")

      // The survivors stop gracefully.
      const codes = yield* Effect.forEach(slots, (p) => stop(p.child).pipe(Effect.timeout("10 seconds"), Effect.orDie), {
        concurrency: "unbounded"
      })
      assert.deepStrictEqual(codes, slots.map(() => 0), logs())
    }), 60_000 + ROUNDS * 12_000 + EVENTS * 100)
})
