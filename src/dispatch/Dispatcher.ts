import * as HttpClient from "@effect/platform/HttpClient"
import { SqlClient, SqlError } from "@effect/sql"
import {
  Cause,
  Clock,
  DateTime,
  Deferred,
  Duration,
  Effect,
  Either,
  Exit,
  Fiber,
  FiberRef,
  LogLevel,
  Option,
  Queue,
  Ref,
  Runtime,
  Schedule,
  Schema,
  Scope
} from "effect"
import { randomUUID } from "node:crypto"
import { hostname } from "node:os"
import { type Loaded, Settings } from "../config/ConfigFile.js"
import { RetryOverrides } from "../config/RelayConfig.js"
import { type CashfreeEvent, decodeEventJson } from "../domain/Event.js"
import { isStale, stateOf, type VerificationState } from "../domain/Lifecycle.js"
import { Metrics } from "../observability/Metrics.js"
import { startInstances } from "../plugin/Instances.js"
import { type DeliveryReceipt, Permanent, type PluginError, type PluginInstance, Retryable } from "../plugin/Plugin.js"
import type { InstanceSpec } from "../plugin/Registry.js"
import { type ClaimedRow, claimedRows, Deliveries, type Finish } from "../store/Deliveries.js"
import type { ClaimSpec } from "../store/SqliteWrite.js"
import { SqliteWriterService } from "../store/SqliteWriterService.js"
import { Verifications } from "../store/Verifications.js"
import { startCall } from "./CallTimeout.js"
import { type HandedOver, Lanes } from "./Lanes.js"
import { decide, withOverrides } from "./RetryPolicy.js"
import { Rules } from "./Rules.js"
import { Wakeup } from "./Wakeup.js"

/** Most deliveries one claim takes, and most an instance holds at once (unless it has more workers). */
const MAX_CLAIM = 64

/** Most jobs (attempts to record, claims to make) one transaction of the writer handles. */
const MAX_WRITE = 256

/**
 * Least time (ms) between the starts of two commits of the dispatcher's writer. Below this rate it adds no wait;
 * at 500 deliveries/s on two busy cores, 25 gave a lower and steadier end-to-end p99 than 5 or 10 on SQLite, and on
 * PostgreSQL it turns a stream of small transactions into one of about a dozen attempts every 25 ms (BENCHMARKS.md).
 */
const COMMIT_SPACING = 25

/** Wait (ms) before an attempt whose write failed is written again. */
const RECORD_RETRY = 1_000

const decodeRetry = Schema.decodeUnknownSync(Schema.parseJson(RetryOverrides))

const iso = (millis: number) => new Date(millis).toISOString()

const describe = (error: PluginError) => `${error._tag}: ${error.message}`

const nextMacrotask = Effect.async<void>((resume) => {
  setImmediate(() => resume(Effect.void))
})

/** Real time, whatever the Clock says: the spacing of commits is about the disk, not the schedule. */
const pause = (millis: number) =>
  Effect.async<void>((resume) => {
    const timer = setTimeout(() => resume(Effect.void), millis)
    return Effect.sync(() => clearTimeout(timer))
  })

/** A claimed delivery waiting for a worker, with its event decoded (or why it cannot be) and its verification's state. */
interface Ready {
  readonly row: ClaimedRow
  readonly event: Either.Either<CashfreeEvent, Permanent>
  readonly current: VerificationState | null
  /** Past this time (epoch ms) too little of the lease is left to start the call: it is released instead. */
  readonly startBy: number
}

/** What became of a recorded attempt: moved on, overtaken (another worker took the delivery over), or not written. */
type Settled = "kept" | "lost" | "unrecorded"

interface RecordJob {
  readonly _tag: "Record"
  readonly finish: Finish
  /** Until when (epoch ms, the end of the claim's lease) a write that failed is tried again. */
  readonly retryUntil: number
  readonly settled: (result: Settled) => Effect.Effect<void>
}

/** What a claim took, and how many it asked for: fewer than asked means nothing more is due now. */
interface Claimed {
  readonly asked: number
  readonly rows: ReadonlyArray<ClaimedRow>
}

interface ClaimJob {
  readonly _tag: "Claim"
  readonly instance: string
  readonly lease: number
  /** How many to take, read when the claim runs: the room its instance has by then. */
  readonly room: Effect.Effect<number>
  readonly done: Deferred.Deferred<Claimed, SqlError.SqlError>
}

type Job = RecordJob | ClaimJob

/**
 * How many deliveries an instance holds at once (claimed and not yet attempted): one per worker, plus a buffer
 * so that one claim takes many. Small enough that a buffered delivery starts within `startWithin` of its claim
 * even if every call before it runs to its timeout.
 */
const holding = (concurrency: number, timeout: number, startWithin: number) =>
  Math.max(concurrency, Math.min(MAX_CLAIM, concurrency * (1 + Math.floor(startWithin / timeout))))

/**
 * Runs due deliveries. Each plugin instance has its own claimer and workers (its `concurrency`), so a slow or
 * failing destination only ever holds up itself. The claimer takes due deliveries in batches under a lease and
 * hands them to the workers; a delivery whose process died is claimed again once its lease has run out.
 *
 * One writer fiber records the attempts: each transaction records every attempt finished since the last one
 * (on SQLite it also makes the claims asked for meanwhile), so the store pays one commit, and on SQLite one
 * fsync, for many deliveries.
 */
export class Dispatcher extends Effect.Service<Dispatcher>()("kyc-relay/Dispatcher", {
  scoped: Effect.gen(function*() {
    const settings = yield* Settings
    const sql = yield* SqlClient.SqlClient
    const deliveries = yield* Deliveries
    const verifications = yield* Verifications
    const rules = yield* Rules
    const wakeup = yield* Wakeup
    const lanes = yield* Lanes
    const metrics = yield* Metrics
    const owner = `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`
    const http = yield* HttpClient.HttpClient
    const jobs = yield* Queue.unbounded<Job>()
    const scope = yield* Effect.scope
    const runFork = Runtime.runFork(yield* Effect.runtime<never>())
    // The service's clock rather than Date.now(), so that tests can move time.
    const clock = yield* Effect.clock
    // Each claim holds its rows under a name of its own: a result counts only while its claim holds, so a
    // delivery claimed again meanwhile (its lease ran out, or it was replayed) is not moved on by the old call.
    let claims = 0
    const nextHolder = () => `${owner}#${(++claims).toString(36)}`
    const { writer: sqliteWriter } = yield* SqliteWriterService

    // ------------------------------------------------------------------------------------------ the writer

    const claimNow = (instance: string, room: Effect.Effect<number>, lease: number) =>
      Effect.gen(function*() {
        const asked = yield* room
        const now = yield* Clock.currentTimeMillis
        const rows = asked === 0 ? [] : yield* deliveries.claim(instance, nextHolder(), iso(now), iso(now + lease), asked)
        return { asked, rows } satisfies Claimed
      })

    /** The same transaction on the SQLite writer thread: off the event loop, with its fsync. */
    const writeOnThread = (
      writer: NonNullable<typeof sqliteWriter>,
      records: ReadonlyArray<RecordJob>,
      claimJobs: ReadonlyArray<ClaimJob>
    ) =>
      Effect.gen(function*() {
        const specs: Array<ClaimSpec> = []
        for (const job of claimJobs) {
          const now = yield* Clock.currentTimeMillis
          const limit = yield* job.room
          specs.push({ instance: job.instance, holder: nextHolder(), now: iso(now), leaseUntil: iso(now + job.lease), limit })
        }
        const { claimed, kept } = yield* Effect.tryPromise({
          try: () => writer.dispatch(records.map((job) => job.finish), specs),
          catch: (cause) => new SqlError.SqlError({ cause, message: "the SQLite writer refused the dispatcher's write" })
        })
        const rows = yield* Effect.forEach(claimed, (rows) =>
          claimedRows(rows).pipe(Effect.mapError((cause) => new SqlError.SqlError({ cause, message: "a claimed delivery did not decode" }))))
        return [new Set(kept), rows.map((rows, i): Claimed => ({ asked: specs[i]!.limit, rows }))] as const
      })

    const commit = (batch: ReadonlyArray<Job>): Effect.Effect<void> =>
      Effect.gen(function*() {
        const records = batch.filter((job): job is RecordJob => job._tag === "Record")
        const claims = batch.filter((job): job is ClaimJob => job._tag === "Claim")
        const recorded = deliveries.record(records.map((job) => job.finish))
        // A record alone is atomic by itself: one statement on PostgreSQL, where claims never come through here.
        const generic = claims.length === 0
          ? Effect.map(recorded, (kept) => [kept, [] as Array<Claimed>] as const)
          : Effect.all([recorded, Effect.forEach(claims, (job) => claimNow(job.instance, job.room, job.lease))]).pipe(sql.withTransaction)
        const exit = yield* Effect.exit(sqliteWriter !== undefined ? writeOnThread(sqliteWriter, records, claims) : generic)
        // One job the store refuses must not fail the others.
        if (Exit.isFailure(exit) && batch.length > 1) return yield* Effect.forEach(batch, (job) => commit([job]), { discard: true })
        // An attempt made and not recorded would run again once its lease ends: while the lease holds, the write is
        // tried again, so that a store back within the lease costs no second call.
        const [record] = records
        if (Exit.isFailure(exit) && record !== undefined && (yield* Clock.currentTimeMillis) + RECORD_RETRY < record.retryUntil) {
          yield* Effect.logWarning("Dispatcher: an attempt could not be recorded; trying again while its lease holds", exit.cause)
          // Stopped by shutdown before it is queued again, it is reported as not recorded, so that nothing waits for it.
          yield* Effect.forkIn(
            Effect.zipRight(pause(RECORD_RETRY), Queue.offer(jobs, record)).pipe(Effect.onInterrupt(() => record.settled("unrecorded"))),
            scope
          )
          return
        }
        if (Exit.isFailure(exit)) yield* Effect.logError("Dispatcher: a write to the store failed", exit.cause)
        yield* Effect.forEach(claims, (job, i) => Deferred.done(job.done, Exit.map(exit, ([, claimed]) => claimed[i]!)))
        yield* Effect.forEach(records, (job) =>
          job.settled(
            Exit.isFailure(exit) ? "unrecorded" : exit.value[0].has(job.finish.deliveryId) ? "kept" : "lost"
          ))
      })

    // Commits are spaced out so that each carries more: on SQLite the writer thread commits for ingest too, and
    // claims ride along with the recorded attempts; on PostgreSQL claims run at once, each on its own connection,
    // and every statement of a small transaction costs the event loop about as much as a delivery.
    let lastCommit = 0
    const writeBatch = Effect.gen(function*() {
      const first = yield* Queue.take(jobs)
      // Let the event loop deliver the answers already waiting before committing, so that they share the commit.
      const wait = lastCommit + COMMIT_SPACING - performance.now()
      yield* wait > 0 ? pause(wait) : nextMacrotask
      lastCommit = performance.now()
      yield* commit([first, ...(yield* Queue.takeUpTo(jobs, MAX_WRITE - 1))])
    })
    yield* Effect.forkScoped(Effect.forever(writeBatch.pipe(
      Effect.catchAllCause((cause) => Effect.logError("Dispatcher: the writer failed", cause))
    )))

    /** Claims as many due deliveries of `instance` as `room` says, for `lease` milliseconds. */
    const claim = sql.onDialectOrElse({
      sqlite: () => (instance: string, room: Effect.Effect<number>, lease: number) =>
        Effect.gen(function*() {
          const done = yield* Deferred.make<Claimed, SqlError.SqlError>()
          yield* Queue.offer(jobs, { _tag: "Claim", instance, room, lease, done })
          return yield* Deferred.await(done)
        }),
      orElse: () => claimNow
    })

    // ------------------------------------------------------------------------------------------ one delivery

    const decodeStored = (row: ClaimedRow): Either.Either<CashfreeEvent, Permanent> =>
      row.body === null
        ? Either.left(new Permanent({ message: `event ${row.event_id} is not in the store` }))
        : Either.mapLeft(decodeEventJson(row.body), () => new Permanent({ message: "the stored event no longer decodes" }))

    /** Decodes a claimed batch and reads the verifications' states in one query. */
    const prepare = (rows: ReadonlyArray<ClaimedRow>, lease: number, startWithin: number) =>
      Effect.gen(function*() {
        const decoded = rows.map(decodeStored)
        const ids = new Set(decoded.flatMap((event) => Either.isRight(event) ? [event.right.data.verification_id] : []))
        const states = yield* verifications.getMany([...ids])
        return rows.map((row, i): Ready => {
          const event = decoded[i]!
          return {
            row,
            event,
            current: Either.isRight(event) ? states.get(event.right.data.verification_id) ?? null : null,
            startBy: Date.parse(row.lease_until!) - lease + startWithin
          }
        })
      })

    /**
     * Stale as stored, or since: a delivery retried after a newer event of its verification was applied (and
     * perhaps delivered) must not be handed over as current, or a CRM would go back to the older state.
     */
    const staleNow = (row: ClaimedRow, event: CashfreeEvent, current: VerificationState | null) =>
      row.stale || (
        current !== null && current.eventId !== row.event_id &&
        isStale(current, stateOf(row.event_id, event, DateTime.formatIso(event.event_time)))
      )

    const contextOf = (spec: InstanceSpec, { current, row }: Ready, event: CashfreeEvent) => ({
      deliveryId: row.id,
      eventId: row.event_id,
      instance: spec.name,
      attempt: row.attempts,
      idempotencyKey: `kyc-relay:${row.event_id}:${spec.name}`,
      params: JSON.parse(row.params) as Record<string, unknown>,
      lifecycle: { stale: staleNow(row, event, current), current }
    })

    /** A plugin that throws or dies instead of failing gets a recorded attempt like any other failure. */
    const unexpected = (defect: unknown) =>
      new Retryable({ message: `the plugin failed unexpectedly: ${Cause.pretty(Cause.die(defect)).split("\n")[0]}` })

    const outcomeOf = (exit: Exit.Exit<DeliveryReceipt, PluginError>): Either.Either<DeliveryReceipt, PluginError> => {
      if (Exit.isSuccess(exit)) return Either.right(exit.value)
      const failure = Cause.failureOption(exit.cause)
      if (Option.isSome(failure)) return Either.left(failure.value)
      const defect = Cause.dieOption(exit.cause)
      return Either.left(Option.isSome(defect) ? unexpected(defect.value) : new Retryable({ message: "the plugin's call was interrupted" }))
    }

    /** What an attempt's outcome makes of its delivery: done, a retry at a later time, or a dead letter. */
    const finishOf = (row: ClaimedRow, startedAt: number, outcome: Either.Either<DeliveryReceipt, PluginError>): Finish => {
      const now = clock.unsafeCurrentTimeMillis()
      const base = {
        deliveryId: row.id,
        owner,
        lease: row.lease_owner!,
        attempt: row.attempts,
        attemptId: randomUUID(),
        startedAt: iso(startedAt),
        finishedAt: iso(now)
      }
      if (Either.isRight(outcome)) {
        const remoteId = outcome.right.remoteId ?? null
        return { ...base, outcome: "done", state: "done", error: null, remoteId, nextAttemptAt: null }
      }
      const error = outcome.left
      const policy = withOverrides(rules.unsafeCurrent().retry, row.retry === null ? undefined : decodeRetry(row.retry))
      const decision = decide(policy, row.attempts, error, Date.parse(row.created_at), now, Math.random())
      return {
        ...base,
        outcome: error._tag,
        error: decision._tag === "Dead" ? decision.reason : describe(error),
        remoteId: null,
        state: decision._tag === "Dead" ? "dead" : "pending",
        nextAttemptAt: decision._tag === "Retry" ? iso(decision.at) : null
      }
    }

    // Read once: a delivery done is logged at debug level, and its annotations cost more than the rest of its report.
    const debug = LogLevel.greaterThanEqual(LogLevel.Debug, yield* FiberRef.get(FiberRef.currentMinimumLogLevel))

    const report = (spec: InstanceSpec, row: ClaimedRow, finish: Finish, settled: Settled) =>
      Effect.suspend(() => {
        // The attempt happened either way; the delivery reached an end state only if its result was kept.
        metrics.attempt(spec.name, finish.outcome, settled === "kept" ? finish.state : "pending", row.created_at)
        const log = settled === "unrecorded" || finish.state === "dead"
          ? Effect.logWarning
          : finish.state === "pending"
          ? Effect.logInfo
          : debug
          ? Effect.logDebug
          : undefined
        if (log === undefined) return Effect.void
        return log(`delivery ${finish.state === "pending" ? "will be retried" : finish.state}`).pipe(
          Effect.annotateLogs({
            delivery_id: row.id,
            event_id: row.event_id,
            ...(row.verification_id === null ? {} : { verification_id: row.verification_id }),
            instance: spec.name,
            attempt: row.attempts,
            ...(finish.error === null ? {} : { error: finish.error }),
            ...(finish.nextAttemptAt === null ? {} : { next_attempt_at: finish.nextAttemptAt }),
            ...(settled === "lost" ? { lease: "lost: another worker took this delivery over" } : {}),
            ...(settled === "unrecorded" ? { recorded: "no: the store failed; it runs again once its lease expires" } : {})
          })
        )
      })

    // ------------------------------------------------------------------------------------------ instances

    interface Generation {
      readonly scope: Scope.CloseableScope
      /** Plain rather than a Ref: ingest reads it synchronously when it reserves room in a lane. */
      readonly state: { stopping: boolean }
      readonly lease: number
      readonly pollInterval: Duration.Duration
    }

    /**
     * One plugin instance's claimer and workers. `inHand` counts the deliveries claimed (or reserved by ingest, see
     * Lanes) and not yet attempted, `recording` the attempts not yet recorded: a stopping generation waits for both
     * to be zero. The claimer is a fiber; the workers are `concurrency` slots for plugin calls, filled by plain
     * functions, so that a delivery costs one fiber (its call) rather than a worker loop's several.
     */
    const startLane = (spec: InstanceSpec, instance: PluginInstance, generation: Generation) =>
      Effect.gen(function*() {
        const { lease, state } = generation
        const timeout = Duration.toMillis(spec.timeout)
        // A delivery must start while its call can still finish within the lease (or, if the timeout is longer
        // than that, within half of it); otherwise another process could take it over while it is on the wire.
        const startWithin = Math.max(lease - timeout, lease / 2)
        const capacity = holding(spec.concurrency, timeout, startWithin)
        let inHand = 0
        let recording = 0
        // Deliveries in hand waiting for a worker, oldest first; the calls on the wire, and how many workers are busy.
        const waiting: Array<Ready> = []
        const calls = new Set<Fiber.RuntimeFiber<DeliveryReceipt, PluginError>>()
        let busy = 0
        let closed = false
        const freed = yield* Queue.sliding<void>(1)
        // Held by the claimer from before it reads the stop flag until what it claimed is in hand, so that a
        // stopping generation can wait for a claim under way.
        const claiming = yield* Effect.makeSemaphore(1)

        const unsafeLetGo = (n: number) => {
          inHand -= n
          Queue.unsafeOffer(freed, undefined)
        }
        const letGo = (n: number) => Effect.sync(() => unsafeLetGo(n))

        /** Hands claimed deliveries back to the queue, for this or another process to claim at once. */
        const handBack = (rows: ReadonlyArray<ClaimedRow>) =>
          Effect.gen(function*() {
            if (rows.length === 0) return
            yield* deliveries.release(rows, iso(yield* Clock.currentTimeMillis))
            yield* wakeup.notify(new Map([[spec.name, rows.length]]))
          }).pipe(
            Effect.catchAllCause((cause) =>
              Effect.logError("handing claimed deliveries back failed; they run once their lease expires", cause)
            )
          )

        /** Hands back deliveries in hand that no worker started. */
        const release = (batch: ReadonlyArray<Ready>) =>
          handBack(batch.map((ready) => ready.row)).pipe(Effect.ensuring(letGo(batch.length)))

        const roomBeside = (held: number) => Math.max(0, Math.min(MAX_CLAIM, capacity - held))
        const roomNow = () => roomBeside(inHand)
        // The claim under way holds the room it asks for from the moment it reads it. Read again if the claim is
        // retried, it gives back what it held. Ingest may still reserve that room (see Lanes): most claims find
        // nothing, and one that does find work leaves the instance holding more than its capacity for a while, which
        // costs at most a hand-back and a new claim for deliveries that then miss their start.
        let claimHolds = 0
        const takeRoom = Effect.sync(() => {
          inHand -= claimHolds
          claimHolds = roomNow()
          inHand += claimHolds
          return claimHolds
        })

        /** Claims what there is room for and hands it to the workers; undefined once the generation stops. */
        const claimBatch = Effect.gen(function*() {
          if (state.stopping) return undefined
          const { asked, rows } = yield* claim(spec.name, takeRoom, lease)
          // From here the room is accounted for below: kept by what is in hand, given back otherwise.
          claimHolds = 0
          const batch = rows.length === 0 ? [] : yield* prepare(rows, lease, startWithin).pipe(
            Effect.tapErrorCause(() => Effect.zipRight(handBack(rows), letGo(asked)))
          )
          if (asked > batch.length) unsafeLetGo(asked - batch.length)
          offer(batch)
          return { asked, got: rows.length }
        }).pipe(
          Effect.onError(() =>
            Effect.sync(() => {
              if (claimHolds > 0) unsafeLetGo(claimHolds)
              claimHolds = 0
            })
          )
        )

        const claimer = Effect.gen(function*() {
          const woken = yield* wakeup.next(spec.name)
          if (roomNow() === 0) return yield* Queue.take(freed)
          const claimed = yield* claiming.withPermits(1)(claimBatch)
          if (claimed === undefined) return yield* Effect.never
          if (claimed.got < claimed.asked) yield* Effect.race(woken, Effect.sleep(generation.pollInterval))
        })

        // Plugins' HTTP calls open no span and send no trace headers: no tracer is configured to collect them,
        // and the span alone costs about a fifth of a webhook call.
        // Interruptible even if the lane starts in an uninterruptible region, so that timeouts and the close stop calls.
        const callRuntime = yield* Effect.runtime<never>().pipe(
          Effect.interruptible,
          Effect.locally(HttpClient.currentTracerDisabledWhen, () => true),
          Effect.locally(HttpClient.currentTracerPropagation, false),
          Effect.annotateLogs({ service: "Dispatcher", instance: spec.name })
        )
        const onTimeout = () => new Retryable({ message: `no answer within ${Duration.format(spec.timeout)}` })

        /** Queues the attempt's result for the writer; the delivery stops counting as in hand. */
        const finished = (ready: Ready, startedAt: number, outcome: Either.Either<DeliveryReceipt, PluginError>) => {
          const { row } = ready
          busy -= 1
          let finish: Finish
          try {
            finish = finishOf(row, startedAt, outcome)
          } catch (defect) {
            unsafeLetGo(1)
            Runtime.runFork(callRuntime)(Effect.logError("a delivery's next step could not be decided; it runs again once its lease expires", Cause.die(defect)))
            return schedule()
          }
          // Counted as recording before it stops counting as in hand, so a stopping generation never sees neither.
          recording += 1
          unsafeLetGo(1)
          Queue.unsafeOffer(jobs, {
            _tag: "Record",
            finish,
            retryUntil: Date.parse(row.lease_until!),
            settled: (result) => Effect.ensuring(report(spec, row, finish, result), Effect.sync(() => (recording -= 1)))
          })
          schedule()
        }

        /** Makes one attempt: the plugin's call in a fiber of its own, bounded by the instance's timeout. */
        const start = (ready: Ready) => {
          busy += 1
          const startedAt = clock.unsafeCurrentTimeMillis()
          if (Either.isLeft(ready.event)) return finished(ready, startedAt, Either.left(ready.event.left))
          let handled: Effect.Effect<DeliveryReceipt, PluginError>
          try {
            handled = instance.handle(ready.event.right, contextOf(spec, ready, ready.event.right))
          } catch (defect) {
            return finished(ready, startedAt, Either.left(unexpected(defect)))
          }
          // A plugin effect that completes at once reports before startCall returns: `fiber` is still unset then, and
          // `ended` keeps the finished call out of `calls`.
          let fiber: Fiber.RuntimeFiber<DeliveryReceipt, PluginError> | undefined
          let ended = false
          fiber = startCall(callRuntime, handled, timeout, onTimeout, (exit) => {
            ended = true
            if (fiber !== undefined) calls.delete(fiber)
            // Interrupted by the generation's close: not recorded, so it runs again once its lease expires.
            if (closed) {
              busy -= 1
              return unsafeLetGo(1)
            }
            let outcome: Either.Either<DeliveryReceipt, PluginError>
            try {
              outcome = outcomeOf(exit)
            } catch (defect) {
              outcome = Either.left(unexpected(defect))
            }
            finished(ready, startedAt, outcome)
          })
          if (!ended) calls.add(fiber)
        }

        /** Starts waiting deliveries while workers are free; a delivery whose start came too late is handed back. */
        const startWaiting = () => {
          while (!closed && busy < spec.concurrency && waiting.length > 0) {
            const next = waiting.shift()!
            if (state.stopping || clock.unsafeCurrentTimeMillis() > next.startBy) runFork(release([next]))
            else start(next)
          }
        }
        // One event-loop turn later: the webhooks that handed deliveries over are answered first, and no call starts
        // inside another's completion.
        let scheduled = false
        const schedule = () => {
          if (scheduled) return
          scheduled = true
          setImmediate(() => {
            scheduled = false
            startWaiting()
          })
        }
        const offer = (batch: ReadonlyArray<Ready>) => {
          for (const one of batch) waiting.push(one)
          schedule()
        }
        // Closing the generation's scope stops the calls still on the wire (after its grace, see startGeneration).
        yield* Scope.addFinalizer(
          generation.scope,
          Effect.suspend(() => {
            closed = true
            return Fiber.interruptAll([...calls])
          })
        )

        // A store outage must not end a fiber: log it and try again after the poll interval.
        const keepGoing = <E>(step: Effect.Effect<void, E>, what: string) =>
          Effect.forever(step.pipe(
            Effect.catchAllCause((cause) =>
              Effect.logError(`delivery ${what} failed`, cause).pipe(Effect.zipRight(Effect.sleep(generation.pollInterval)))
            )
          )).pipe(Effect.annotateLogs({ service: "Dispatcher", instance: spec.name }), Effect.interruptible)

        // Interruptible even when started from an uninterruptible region, so that closing the scope stops it.
        yield* Effect.forkIn(keepGoing(claimer, "claim"), generation.scope)

        const accept = (handed: ReadonlyArray<HandedOver>, leasedAt: number) => {
          const batch = handed.map(({ body, current, event, row, verificationId }): Ready => ({
            row: { ...row, body, verification_id: verificationId, stale: false },
            event: Either.right(event),
            current,
            startBy: leasedAt + startWithin
          }))
          // Reserved before the generation began to stop, committed after: its workers may be gone, so hand them back.
          if (state.stopping) runFork(release(batch))
          else offer(batch)
        }
        const unregister = lanes.register(spec.name, {
          reserve: (wanted) => {
            const granted = state.stopping ? 0 : Math.min(wanted, roomBeside(inHand - claimHolds))
            inHand += granted
            return granted
          },
          accept,
          giveBack: unsafeLetGo,
          holder: nextHolder,
          lease
        })
        yield* Scope.addFinalizer(generation.scope, Effect.sync(unregister))

        return {
          claimDone: claiming.withPermits(1)(Effect.void),
          idle: Effect.sync(() => inHand + recording === 0),
          releaseWaiting: Effect.suspend(() => release(waiting.splice(0)))
        } as const
      })

    /**
     * One set of plugin instances and their workers, built from one configuration. A reload starts a new
     * generation and then stops the old one: it stops claiming, hands back what it claimed and did not start,
     * and lets its deliveries in flight finish and be recorded first.
     */
    const startGeneration = (loaded: Loaded) =>
      Effect.gen(function*() {
        const { dispatch } = loaded.config
        const generation: Generation = {
          scope: yield* Scope.make(),
          state: { stopping: false },
          lease: Duration.toMillis(dispatch.lease),
          pollInterval: dispatch.poll_interval
        }

        for (const [name, reason] of loaded.disabled) {
          yield* Effect.logWarning(`plugin instance ${name} is disabled: ${reason}; routes to it deliver nothing`)
        }
        // Deliveries of an instance taken out of the configuration would otherwise wait in silence.
        for (const { instance, waiting } of yield* deliveries.queueStats) {
          if (loaded.instances.has(instance) || loaded.disabled.has(instance)) continue
          yield* Effect.logWarning(
            `${waiting} ${waiting === 1 ? "delivery waits" : "deliveries wait"} for plugin instance ${instance}, which is not ` +
              `configured: add it back to run them (kyc-relay deliveries list --instance ${instance})`
          )
        }
        // Every instance is made before any lane starts, so a plugin that cannot start leaves nothing running.
        const made = yield* startInstances(loaded, generation.scope).pipe(
          Effect.onError((cause) => Scope.close(generation.scope, Exit.failCause(cause)))
        )
        const lanes: Array<Effect.Effect.Success<ReturnType<typeof startLane>>> = []
        for (const [spec, instance] of made) lanes.push(yield* startLane(spec, instance, generation))

        const stop = Effect.gen(function*() {
          generation.state.stopping = true
          yield* Effect.forEach(lanes, (lane) => Effect.zipRight(lane.claimDone, lane.releaseWaiting), { discard: true })
          yield* Effect.forEach(lanes, (lane) =>
            lane.idle.pipe(Effect.repeat({ until: (idle) => idle, schedule: Schedule.spaced("20 millis") })), {
            discard: true
          })
        }).pipe(
          // Stop runs in a finalizer, which is uninterruptible: without this the grace could not cut the wait short.
          Effect.interruptible,
          Effect.timeout(dispatch.shutdown_grace),
          Effect.ignore,
          Effect.zipRight(Scope.close(generation.scope, Exit.void))
        )
        return { stop } as const
      }).pipe(Effect.provideService(HttpClient.HttpClient, http))

    const current = yield* Ref.make(yield* startGeneration(settings))
    // Added after the writer was forked, so it runs first: the last attempts are recorded before the writer stops.
    yield* Effect.addFinalizer(() => Effect.flatMap(Ref.get(current), (generation) => generation.stop))

    /**
     * Switches to a new configuration's routes, retry policy and plugin instances without dropping work. The new
     * instances are started first: if one cannot start, nothing changes.
     */
    const reload = (loaded: Loaded) =>
      Effect.gen(function*() {
        const next = yield* startGeneration(loaded)
        yield* rules.replace(loaded)
        const previous = yield* Ref.getAndSet(current, next)
        yield* previous.stop
      })

    return { owner, reload } as const
  }),
  dependencies: [
    Deliveries.Default,
    Verifications.Default,
    Rules.Default,
    Wakeup.Default,
    Lanes.Default,
    Metrics.Default,
    SqliteWriterService.Default
  ]
}) {}
