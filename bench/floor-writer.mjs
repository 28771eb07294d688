// The durable floor's writer thread (see floor.ts): batches of rows in, in order; each batch's answer (which rows
// were new) out once the WAL is on disk. One fsync covers every commit made before it started.
import Database from "better-sqlite3"
import { fsync, openSync } from "node:fs"
import { parentPort, workerData } from "node:worker_threads"

const { filename } = workerData
const db = new Database(filename)
db.pragma("journal_mode = WAL")
db.pragma("synchronous = NORMAL")
db.exec("CREATE TABLE IF NOT EXISTS events (id TEXT PRIMARY KEY, key TEXT NOT NULL UNIQUE, body TEXT NOT NULL)")
const insert = db.prepare("INSERT INTO events (id, key, body) VALUES (?, ?, ?) ON CONFLICT (key) DO NOTHING")
const write = db.transaction((rows) => rows.map((row) => insert.run(row.id, row.key, row.body).changes === 1))
const wal = openSync(`${filename}-wal`, "r")

let syncing
let queued
const durable = () => {
  if (syncing === undefined) {
    syncing = new Promise((resolve, reject) => fsync(wal, (error) => (error === null ? resolve() : reject(error))))
      .finally(() => {
        syncing = undefined
      })
    return syncing
  }
  queued ??= syncing.then(() => {
    queued = undefined
    return durable()
  })
  return queued
}

let answered = Promise.resolve()
parentPort.on("message", (batch) => {
  const fresh = write(JSON.parse(batch))
  const synced = durable()
  answered = answered.then(() => synced).then(() => parentPort.postMessage(fresh), (error) => {
    process.stderr.write(`floor: fsync failed: ${String(error)}\n`)
    process.exit(70)
  })
})
