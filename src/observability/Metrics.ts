import { Effect } from "effect"
import { Counter, Gauge, Histogram, Registry } from "prom-client"
import { Deliveries, type QueueStats } from "../store/Deliveries.js"

/** What became of one webhook request: a stored outcome, or the problem type it was refused with. */
export type WebhookOutcome = "accepted" | "duplicate" | "quarantined" | "rejected"

const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5]
const DELIVERY_BUCKETS = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600]

/**
 * Prometheus metrics, one registry per service instance (tests run several relays in one process).
 * Queue depth and the age of the oldest due delivery are read from the store when scraped.
 */
export class Metrics extends Effect.Service<Metrics>()("kyc-relay/Metrics", {
  effect: Effect.gen(function*() {
    const deliveries = yield* Deliveries
    const registry = new Registry()
    const registers = [registry]

    const webhooks = new Counter({
      name: "kyc_relay_webhooks_total",
      help: "Webhook requests by outcome; rejected ones by reason (the problem type)",
      labelNames: ["outcome", "reason"],
      registers
    })
    const ingestSeconds = new Histogram({
      name: "kyc_relay_ingest_seconds",
      help: "Time from the request's arrival to its answer",
      labelNames: ["outcome"],
      buckets: LATENCY_BUCKETS,
      registers
    })
    const attempts = new Counter({
      name: "kyc_relay_delivery_attempts_total",
      help: "Delivery attempts by plugin instance and result (done, Retryable, Permanent, RateLimited)",
      labelNames: ["instance", "result"],
      registers
    })
    const finished = new Counter({
      name: "kyc_relay_deliveries_total",
      help: "Deliveries that reached an end state, by plugin instance and state (done, dead)",
      labelNames: ["instance", "state"],
      registers
    })
    const unrouted = new Counter({
      name: "kyc_relay_unrouted_events_total",
      help: "Accepted events that matched no route (stored, not delivered)",
      registers
    })
    const endToEnd = new Histogram({
      name: "kyc_relay_delivery_seconds",
      help: "Time from the webhook's arrival to the delivery's success",
      labelNames: ["instance"],
      buckets: DELIVERY_BUCKETS,
      registers
    })
    // One lookup per webhook instead of prom-client's label hashing on every request.
    const series = new Map<string, { readonly count: ReturnType<typeof webhooks.labels>; readonly latency: ReturnType<typeof ingestSeconds.labels> }>()
    const webhookSeries = (outcome: WebhookOutcome, reason: string) => {
      const key = `${outcome}\u0000${reason}`
      let found = series.get(key)
      if (found === undefined) {
        found = { count: webhooks.labels({ outcome, reason }), latency: ingestSeconds.labels({ outcome }) }
        series.set(key, found)
      }
      return found
    }
    // Both gauges are collected in one scrape; they share one query.
    let inFlight: Promise<ReadonlyArray<QueueStats>> | undefined
    const readStats = () =>
      (inFlight ??= Effect.runPromise(deliveries.queueStats).finally(() => {
        inFlight = undefined
      }))
    new Gauge({
      name: "kyc_relay_queue_depth",
      help: "Deliveries waiting (pending or running), by plugin instance",
      labelNames: ["instance"],
      registers,
      async collect() {
        this.reset()
        for (const row of await readStats()) this.set({ instance: row.instance }, row.waiting)
      }
    })
    new Gauge({
      name: "kyc_relay_oldest_due_seconds",
      help: "Age of the oldest delivery that is due and not yet done, by plugin instance",
      labelNames: ["instance"],
      registers,
      async collect() {
        this.reset()
        const now = Date.now()
        for (const row of await readStats()) {
          if (row.oldestDue !== null) this.set({ instance: row.instance }, Math.max(0, (now - Date.parse(row.oldestDue)) / 1000))
        }
      }
    })

    return {
      webhook: (outcome: WebhookOutcome, reason: string, seconds: number) => {
        const { count, latency } = webhookSeries(outcome, reason)
        count.inc()
        latency.observe(seconds)
      },
      attempt: (instance: string, result: string, state: "pending" | "done" | "dead", receivedAt: string | undefined) => {
        attempts.inc({ instance, result })
        if (state !== "pending") finished.inc({ instance, state })
        if (state === "done" && receivedAt !== undefined) endToEnd.observe({ instance }, (Date.now() - Date.parse(receivedAt)) / 1000)
      },
      unrouted: (count: number) => {
        if (count > 0) unrouted.inc(count)
      },
      contentType: registry.contentType,
      render: Effect.promise(() => registry.metrics())
    } as const
  }),
  dependencies: [Deliveries.Default]
}) {}
