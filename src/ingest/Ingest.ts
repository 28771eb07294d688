import { Deferred, Effect, Exit, Queue } from "effect"
import { Events, type EventRow, type Stored } from "../store/Events.js"

/** Largest number of webhooks committed together in one transaction. */
const MAX_BATCH = 256

const nextMacrotask = Effect.async<void>((resume) => {
  setImmediate(() => resume(Effect.void))
})

interface Pending {
  readonly row: EventRow
  readonly done: Deferred.Deferred<Stored, unknown>
}

/**
 * Group commit: requests that arrive while a transaction is being written wait for the next one, so the
 * store pays one commit (one fsync on SQLite) per batch rather than one per webhook. Each caller still
 * gets its answer only after the transaction holding its event has committed.
 */
export class Ingest extends Effect.Service<Ingest>()("kyc-relay/Ingest", {
  scoped: Effect.gen(function*() {
    const events = yield* Events
    const queue = yield* Queue.bounded<Pending>(16 * MAX_BATCH)

    const writeBatch = Effect.gen(function*() {
      const first = yield* Queue.take(queue)
      // Let the event loop read the requests already waiting on their sockets before committing; otherwise
      // every transaction would hold one event and pay a whole fsync.
      yield* nextMacrotask
      const batch = [first, ...(yield* Queue.takeUpTo(queue, MAX_BATCH - 1))]
      const exit = yield* Effect.exit(events.insertBatch(Array.from(batch, (pending) => pending.row)))
      let i = 0
      for (const pending of batch) {
        const index = i++
        yield* Deferred.done(pending.done, Exit.map(exit, (results) => results[index]!))
      }
      if (Exit.isFailure(exit)) yield* Effect.logError("Ingest.writeBatch failed", exit.cause)
    })

    yield* Effect.forkScoped(Effect.forever(writeBatch))

    /** Resolves once the event is durably stored (or found to be a duplicate); fails if the store failed. */
    const store = (row: EventRow) =>
      Effect.gen(function*() {
        const done = yield* Deferred.make<Stored, unknown>()
        yield* Queue.offer(queue, { row, done })
        return yield* Deferred.await(done)
      })

    return { store } as const
  }),
  dependencies: [Events.Default]
}) {}
