import { parentPort, workerData } from "node:worker_threads"
import type { Arrival } from "../ingest/Apply.js"
import { openSqliteWrite } from "./SqliteWrite.js"

/** The SQLite writer thread: one batch at a time in, its answers out. See SqliteWriter. */

export type Request =
  | { readonly _tag: "commit"; readonly batch: ReadonlyArray<Arrival>; readonly now: string }
  | { readonly _tag: "close" }

const port = parentPort!
const store = openSqliteWrite((workerData as { readonly filename: string }).filename)

port.on("message", (request: Request) => {
  if (request._tag === "close") {
    store.close()
    port.close()
    return
  }
  try {
    port.postMessage({ _tag: "committed", committed: store.commit(request.batch, request.now) })
  } catch (error) {
    const { code, message } = error as { code?: unknown; message?: unknown }
    port.postMessage({ _tag: "failed", message: String(message ?? error), code: typeof code === "string" ? code : undefined })
  }
})
port.postMessage({ _tag: "ready" })
