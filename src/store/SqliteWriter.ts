import { readFileSync } from "node:fs"
import { createRequire } from "node:module"
import { pathToFileURL } from "node:url"
import { Worker } from "node:worker_threads"
import type { Arrival } from "../ingest/Apply.js"
import type { Finish } from "./Deliveries.js"
import type { ClaimSpec, Committed, Dispatched } from "./SqliteWrite.js"
import type { Request } from "./SqliteWriterThread.js"

type Reply =
  | { readonly _tag: "ready" }
  | { readonly _tag: "committed"; readonly committed: Committed }
  | { readonly _tag: "dispatched"; readonly dispatched: Dispatched }
  | { readonly _tag: "failed"; readonly message: string; readonly code: string | undefined }

export class SqliteWriteFailed extends Error {
  constructor(message: string, readonly code: string | undefined) {
    super(message)
  }
}

const utf8 = new TextEncoder()

const threadUrl = new URL(`./SqliteWriterThread${import.meta.url.endsWith(".ts") ? ".ts" : ".js"}`, import.meta.url)

/** tsx's ES module API, found through its package.json (resolving the specifier from here would give its CommonJS build). */
const tsxApi = () => {
  const manifest = createRequire(import.meta.url).resolve("tsx/package.json")
  const { exports } = JSON.parse(readFileSync(manifest, "utf8")) as { exports: Record<string, { import: { default: string } }> }
  return new URL(exports["./esm/api"]!.import.default, pathToFileURL(manifest)).href
}

// Run from the TypeScript sources (development, tests), the thread needs the same loader as this process.
const startThread = (filename: string) =>
  threadUrl.pathname.endsWith(".ts")
    ? new Worker(
      `import(${JSON.stringify(tsxApi())}).then(({ register }) => { register(); return import(${JSON.stringify(threadUrl.href)}) })`,
      { eval: true, workerData: { filename } }
    )
    : new Worker(threadUrl, { workerData: { filename } })

/**
 * SQLite ingest commits on a thread of their own. better-sqlite3 is synchronous: on the event loop, every
 * commit and its fsync would stop the service from reading the next requests, so reading and committing
 * would take turns. On its own thread, the next batch fills while the previous one reaches the disk.
 * The thread commits batches in the order they come and answers each once it is on disk; the caller may send
 * the next batch before the previous one is answered, so that the thread always has work.
 */
export const startSqliteWriter = async (filename: string, onLost: (error: SqliteWriteFailed) => void) => {
  const worker = startThread(filename)
  let closing = false
  // Answers come back in the order the requests went out.
  const pending: Array<{ readonly resolve: (reply: Reply) => void; readonly reject: (error: Error) => void }> = []
  let exited: Error | undefined

  const next = () =>
    new Promise<Reply>((resolve, reject) => {
      if (exited !== undefined) return reject(exited)
      pending.push({ resolve, reject })
    })
  worker.on("message", (reply: Reply) => pending.shift()?.resolve(reply))
  const fail = (error: SqliteWriteFailed) => {
    const first = exited === undefined
    exited ??= error
    for (const waiting of pending.splice(0)) waiting.reject(error)
    if (first && !closing) onLost(error)
  }
  worker.on("error", (error) => fail(new SqliteWriteFailed(`the SQLite writer thread failed: ${error.message}`, undefined)))
  worker.on("exit", (code) => fail(new SqliteWriteFailed(`the SQLite writer thread stopped (exit code ${code})`, undefined)))

  const send = (request: Request) => {
    const reply = next()
    const moved = request._tag === "commit" ? request.batch : request._tag === "dispatch" ? request.work : undefined
    worker.postMessage(request, moved === undefined ? [] : [moved.buffer as ArrayBuffer])
    return reply
  }

  await next() // "ready", or the failure to open the database
  return {
    commit: async (batch: ReadonlyArray<Arrival>, now: string): Promise<Committed> => {
      const reply = await send({ _tag: "commit", batch: utf8.encode(JSON.stringify(batch)), now })
      if (reply._tag === "failed") throw new SqliteWriteFailed(reply.message, reply.code)
      if (reply._tag !== "committed") throw new SqliteWriteFailed(`unexpected answer from the SQLite writer: ${reply._tag}`, undefined)
      return reply.committed
    },
    /** Records the dispatcher's finished attempts and makes its claims, in one transaction on disk before the answer. */
    dispatch: async (finishes: ReadonlyArray<Finish>, claims: ReadonlyArray<ClaimSpec>): Promise<Dispatched> => {
      const reply = await send({ _tag: "dispatch", work: utf8.encode(JSON.stringify({ finishes, claims })) })
      if (reply._tag === "failed") throw new SqliteWriteFailed(reply.message, reply.code)
      if (reply._tag !== "dispatched") throw new SqliteWriteFailed(`unexpected answer from the SQLite writer: ${reply._tag}`, undefined)
      return reply.dispatched
    },
    close: () =>
      new Promise<void>((resolve) => {
        if (exited !== undefined) return resolve()
        closing = true
        worker.once("exit", () => resolve())
        worker.postMessage({ _tag: "close" } satisfies Request)
      })
  }
}
