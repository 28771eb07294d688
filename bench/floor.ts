/**
 * The "durable floor" for `bench/ingest.ts`: about the least a durable SQLite ingest can do, so that the bench
 * shows how much of kyc-relay's distance from the baseline is durability itself. The baseline's `node:http`
 * handler (header HMAC check, `JSON.parse`), then one row per webhook (a unique key: the event time and the
 * SHA-256 of the body; the body) in a SQLite table, group-committed on a writer thread (floor-writer.mjs) that
 * fsyncs the WAL before the answers go out, as kyc-relay's writer does. No canonical form, no Schema decode, no
 * lifecycle, no routing, no metrics.
 *
 * Environment: CASHFREE_CLIENT_SECRET, FLOOR_DATABASE (a SQLite file), FLOOR_PORT, FLOOR_HOST (default
 * 127.0.0.1), FLOOR_PATH (default /webhooks/cashfree).
 */
import { createHash } from "node:crypto"
import { Worker } from "node:worker_threads"
import { newEventId, serveBare } from "./bare.js"

interface Row {
  readonly id: string
  readonly key: string
  readonly body: string
}

const filename = process.env.FLOOR_DATABASE ?? ""
if (filename.length === 0) {
  console.error("floor: FLOOR_DATABASE is not set")
  process.exit(1)
}

// Plain JavaScript: a worker thread does not inherit the tsx loader this script runs under.
const thread = new Worker(new URL("./floor-writer.mjs", import.meta.url), { workerData: { filename } })
thread.on("exit", (code) => {
  console.error(`floor: the writer thread stopped (exit code ${code})`)
  process.exit(70)
})

// Two batches in flight, as kyc-relay's SQLite writer allows: the next one is written while the last is fsynced.
const IN_FLIGHT = 2
let pending: Array<{ readonly row: Row; readonly done: (fresh: boolean) => void }> = []
const sent: Array<ReadonlyArray<{ readonly done: (fresh: boolean) => void }>> = []
let scheduled = false

const flush = () => {
  scheduled = false
  if (pending.length === 0 || sent.length >= IN_FLIGHT) return
  const batch = pending
  pending = []
  sent.push(batch)
  thread.postMessage(JSON.stringify(batch.map((item) => item.row)))
}
thread.on("message", (fresh: ReadonlyArray<boolean>) => {
  sent.shift()!.forEach((item, i) => item.done(fresh[i]!))
  flush()
})

const store = (row: Row, done: (fresh: boolean) => void) => {
  pending.push({ row, done })
  if (!scheduled) {
    scheduled = true
    setImmediate(flush)
  }
}

serveBare({
  name: "floor",
  accept: (text, parsed, answer) => {
    const eventTime = (parsed as { readonly event_time?: unknown } | null)?.event_time
    const id = newEventId()
    const key = `${String(eventTime)}|${createHash("sha256").update(text).digest("hex")}`
    store({ id, key, body: text }, (fresh) => answer({ status: fresh ? "accepted" : "duplicate", event_id: id }))
  }
})
