import { closeSync, fsync, openSync } from "node:fs"
import { parentPort, workerData } from "node:worker_threads"
import type { Arrival } from "../ingest/Apply.js"
import type { Finish } from "./Deliveries.js"
import { type ClaimSpec, openSqliteWrite } from "./SqliteWrite.js"

/** The SQLite writer thread: batches in, in order; each batch's answer out once it is on disk. See SqliteWriter. */

export type Request =
  /**
   * `batch` is the arrivals as UTF-8 JSON, moved (not copied) to the thread: cheaper for the event loop than a
   * structured clone of the rows (measured at ~25 µs per event) or a copy of the JSON string.
   */
  | { readonly _tag: "commit"; readonly batch: Uint8Array; readonly now: string }
  /** The dispatcher's recorded attempts and claims (see SqliteWrite's `dispatch`), as UTF-8 JSON. */
  | { readonly _tag: "dispatch"; readonly work: Uint8Array }
  | { readonly _tag: "close" }

const port = parentPort!
const utf8 = new TextDecoder()
const { filename } = workerData as { readonly filename: string }
const store = openSqliteWrite(filename)
// openSqliteWrite has read the database, so its WAL file exists; an fsync through any descriptor flushes it.
const wal = openSync(`${filename}-wal`, "r")

let syncing: Promise<void> | undefined
let queued: Promise<void> | undefined
const fsyncWal = () => new Promise<void>((resolve, reject) => fsync(wal, (error) => (error === null ? resolve() : reject(error))))

/** Resolves once every commit made before the call is on disk; one fsync covers every commit made before it started. */
const durable = (): Promise<void> => {
  if (syncing === undefined) {
    syncing = fsyncWal().finally(() => {
      syncing = undefined
    })
    return syncing
  }
  // The fsync under way may have started before this commit: wait for the next one.
  queued ??= syncing.catch(() => undefined).then(() => {
    queued = undefined
    return durable()
  })
  return queued
}

/**
 * Committed rows whose fsync failed may or may not be on disk, and a retry of such a webhook would be answered
 * as a duplicate: the only safe course is to stop, as PostgreSQL does, and recover from what is on disk. The
 * thread ends; the service, seeing its writer gone, stops the process.
 */
const diskFailed = (error: unknown) => {
  process.stderr.write(`kyc-relay: the disk did not confirm a write (${String(error)})\n`)
  process.exit(70)
}

// Replies leave in the order the batches came in: each waits for the previous one.
let answered: Promise<void> = Promise.resolve()

port.on("message", (request: Request) => {
  if (request._tag === "close") {
    void answered.then(() => {
      store.close()
      closeSync(wal)
      port.close()
    })
    return
  }
  let reply: unknown
  try {
    if (request._tag === "commit") {
      reply = { _tag: "committed", committed: store.commit(JSON.parse(utf8.decode(request.batch)) as ReadonlyArray<Arrival>, request.now) }
    } else {
      const { claims, finishes } = JSON.parse(utf8.decode(request.work)) as { finishes: Array<Finish>; claims: Array<ClaimSpec> }
      reply = { _tag: "dispatched", dispatched: store.dispatch(finishes, claims) }
    }
  } catch (error) {
    const { code, message } = error as { code?: unknown; message?: unknown }
    reply = { _tag: "failed", message: String(message ?? error), code: typeof code === "string" ? code : undefined }
  }
  const synced = durable()
  answered = answered.then(() => synced).then(() => port.postMessage(reply), diskFailed)
})
port.postMessage({ _tag: "ready" })
