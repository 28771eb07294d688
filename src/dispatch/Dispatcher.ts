import { HttpClient } from "@effect/platform"
import { Cause, Clock, DateTime, Duration, Effect, Either, Exit, Random, Ref, Schedule, Schema, Scope } from "effect"
import { randomUUID } from "node:crypto"
import { hostname } from "node:os"
import { type Loaded, Settings } from "../config/ConfigFile.js"
import { RetryOverrides } from "../config/RelayConfig.js"
import { decodeEventJson } from "../domain/Event.js"
import { Metrics } from "../observability/Metrics.js"
import { Permanent, type PluginError, type PluginInstance, Retryable } from "../plugin/Plugin.js"
import type { InstanceSpec } from "../plugin/Registry.js"
import { Deliveries, type DeliveryRow, type Finish } from "../store/Deliveries.js"
import { Events } from "../store/Events.js"
import { Verifications } from "../store/Verifications.js"
import { decide, withOverrides } from "./RetryPolicy.js"
import { Rules } from "./Rules.js"
import { Wakeup } from "./Wakeup.js"

const decodeRetry = Schema.decodeUnknownSync(Schema.parseJson(RetryOverrides))

const iso = (millis: number) => DateTime.formatIso(DateTime.unsafeMake(millis))

const describe = (error: PluginError) => `${error._tag}: ${error.message}`

/**
 * Runs due deliveries. Each plugin instance has its own workers (its `concurrency`), so a slow or failing
 * destination only ever holds up itself. A worker claims one delivery at a time under a lease; a delivery
 * whose worker died is claimed again once the lease has run out.
 */
export class Dispatcher extends Effect.Service<Dispatcher>()("kyc-relay/Dispatcher", {
  scoped: Effect.gen(function*() {
    const settings = yield* Settings
    const deliveries = yield* Deliveries
    const events = yield* Events
    const verifications = yield* Verifications
    const rules = yield* Rules
    const wakeup = yield* Wakeup
    const metrics = yield* Metrics
    const owner = `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`
    const http = yield* HttpClient.HttpClient

    const attemptDelivery = (spec: InstanceSpec, instance: PluginInstance, row: DeliveryRow) =>
      Effect.gen(function*() {
        const found = yield* events.forDelivery(row.event_id)
        const decoded = found === undefined
          ? Either.left(new Permanent({ message: `event ${row.event_id} is not in the store` }))
          : Either.mapLeft(decodeEventJson(found.body), () => new Permanent({ message: "the stored event no longer decodes" }))
        if (Either.isLeft(decoded)) return yield* decoded.left
        const event = decoded.right
        const current = yield* verifications.get(event.data.verification_id)
        return yield* instance.handle(event, {
          deliveryId: row.id,
          eventId: row.event_id,
          instance: spec.name,
          attempt: row.attempts,
          idempotencyKey: `kyc-relay:${row.event_id}:${spec.name}`,
          params: JSON.parse(row.params) as Record<string, unknown>,
          lifecycle: { stale: found!.stale, current }
        }).pipe(
          Effect.timeoutFail({
            duration: spec.timeout,
            onTimeout: () => new Retryable({ message: `no answer within ${Duration.format(spec.timeout)}` })
          }),
          Effect.catchAllDefect((defect) =>
            Effect.fail(new Retryable({ message: `the plugin failed unexpectedly: ${Cause.pretty(Cause.die(defect)).split("\n")[0]}` }))
          )
        )
      })

    const runDelivery = (spec: InstanceSpec, instance: PluginInstance, row: DeliveryRow) =>
      Effect.gen(function*() {
        const startedAt = iso(yield* Clock.currentTimeMillis)
        const outcome = yield* Effect.either(attemptDelivery(spec, instance, row))
        const now = yield* Clock.currentTimeMillis
        const base = {
          deliveryId: row.id,
          owner,
          attempt: row.attempts,
          attemptId: randomUUID(),
          startedAt,
          finishedAt: iso(now)
        }
        let finish: Finish
        if (Either.isRight(outcome)) {
          finish = { ...base, outcome: "done", state: "done", error: null, remoteId: outcome.right.remoteId ?? null, nextAttemptAt: null }
        } else {
          const error = outcome.left
          const { retry } = yield* rules.current
          const policy = withOverrides(retry, row.retry === null ? undefined : decodeRetry(row.retry))
          const decision = decide(policy, row.attempts, error, Date.parse(row.created_at), now, yield* Random.next)
          finish = {
            ...base,
            outcome: error._tag,
            error: decision._tag === "Dead" ? decision.reason : describe(error),
            remoteId: null,
            state: decision._tag === "Dead" ? "dead" : "pending",
            nextAttemptAt: decision._tag === "Retry" ? iso(decision.at) : null
          }
        }
        const kept = yield* deliveries.finish(finish)
        metrics.attempt(spec.name, finish.outcome, finish.state, row.created_at)
        const log = finish.state === "dead" ? Effect.logWarning : finish.state === "pending" ? Effect.logInfo : Effect.logDebug
        yield* log(`delivery ${finish.state === "pending" ? "will be retried" : finish.state}`).pipe(
          Effect.annotateLogs({
            delivery_id: row.id,
            event_id: row.event_id,
            instance: spec.name,
            attempt: row.attempts,
            ...(finish.error === null ? {} : { error: finish.error }),
            ...(finish.nextAttemptAt === null ? {} : { next_attempt_at: finish.nextAttemptAt }),
            ...(kept ? {} : { lease: "lost: another worker took this delivery over" })
          })
        )
      })

    /**
     * One set of plugin instances and their workers, built from one configuration. A reload starts a new
     * generation and then stops the old one: it stops claiming and its deliveries in flight finish first.
     */
    const startGeneration = (loaded: Loaded) =>
      Effect.gen(function*() {
        const { dispatch } = loaded.config
        const lease = Duration.toMillis(dispatch.lease)
        const scope = yield* Scope.make()
        const stopping = yield* Ref.make(false)
        const inFlight = yield* Ref.make(0)

        const worker = (spec: InstanceSpec, instance: PluginInstance) =>
          Effect.gen(function*() {
            const wait = yield* wakeup.waiter(spec.name)
            const idle = wait(Effect.sleep(dispatch.poll_interval))
            // Counted before the stop flag is read, so a stopping generation always waits for a claim under way.
            const claimAndRun = Effect.acquireUseRelease(
              Ref.update(inFlight, (n) => n + 1),
              () =>
                Effect.gen(function*() {
                  if (yield* Ref.get(stopping)) return false
                  const now = yield* Clock.currentTimeMillis
                  const claimed = yield* deliveries.claim(spec.name, owner, iso(now), iso(now + lease), 1)
                  if (claimed.length === 0) return false
                  yield* runDelivery(spec, instance, claimed[0]!)
                  return true
                }),
              () => Ref.update(inFlight, (n) => n - 1)
            )
            const step = Effect.gen(function*() {
              if (yield* claimAndRun) return
              if (yield* Ref.get(stopping)) return yield* Effect.never
              yield* idle
            }).pipe(
              // A store outage must not end the worker: log it and try again after the poll interval.
              Effect.catchAllCause((cause) =>
                Effect.logError("delivery worker step failed", cause).pipe(Effect.zipRight(Effect.sleep(dispatch.poll_interval)))
              )
            )
            yield* Effect.forever(step)
          }).pipe(Effect.annotateLogs({ service: "Dispatcher", instance: spec.name }))

        for (const [name, reason] of loaded.disabled) {
          yield* Effect.logWarning(`plugin instance ${name} is disabled: ${reason}; routes to it deliver nothing`)
        }
        for (const spec of loaded.instances.values()) {
          const instance = yield* spec.plugin.make(spec.settings, spec.name).pipe(Scope.extend(scope))
          // Interruptible even when started from an uninterruptible region, so that closing the scope stops them.
          for (let i = 0; i < spec.concurrency; i++) yield* Effect.forkIn(Effect.interruptible(worker(spec, instance)), scope)
        }

        const stop = Ref.set(stopping, true).pipe(
          Effect.zipRight(
            Ref.get(inFlight).pipe(Effect.repeat({ until: (n) => n === 0, schedule: Schedule.spaced("20 millis") }))
          ),
          Effect.timeout(dispatch.shutdown_grace),
          Effect.ignore,
          Effect.zipRight(Scope.close(scope, Exit.void))
        )
        return { stop } as const
      }).pipe(Effect.provideService(HttpClient.HttpClient, http))

    const current = yield* Ref.make(yield* startGeneration(settings))
    yield* Effect.addFinalizer(() => Effect.flatMap(Ref.get(current), (generation) => generation.stop))

    /** Switches to a new configuration's routes, retry policy and plugin instances without dropping work. */
    const reload = (loaded: Loaded) =>
      Effect.gen(function*() {
        yield* rules.replace(loaded)
        const previous = yield* Ref.getAndSet(current, yield* startGeneration(loaded))
        yield* previous.stop
      })

    return { owner, reload } as const
  }),
  dependencies: [Deliveries.Default, Events.Default, Verifications.Default, Rules.Default, Wakeup.Default, Metrics.Default]
}) {}
