import { SqlClient } from "@effect/sql"
import { Cause, Effect, Runtime } from "effect"
import { Settings } from "../config/ConfigFile.js"
import { sqliteFile } from "./Sql.js"
import { startSqliteWriter } from "./SqliteWriter.js"

type Writer = Awaited<ReturnType<typeof startSqliteWriter>>

/**
 * The SQLite writer thread (see SqliteWriter) when the store is a SQLite file, shared by ingest and the
 * dispatcher so that every write of the service goes through one connection off the event loop; `writer` is
 * undefined on PostgreSQL.
 */
export class SqliteWriterService extends Effect.Service<SqliteWriterService>()("kyc-relay/SqliteWriter", {
  scoped: Effect.gen(function*() {
    const { config } = yield* Settings
    // The store is open and migrated before the thread opens its own connection.
    yield* SqlClient.SqlClient
    const file = sqliteFile(config.store.url)
    if (file === undefined) return { writer: undefined as Writer | undefined }
    const runSync = Runtime.runSync(yield* Effect.runtime<never>())
    // Without its writer the service could only refuse webhooks: stop, so that a supervisor restarts it
    // and SQLite recovers from what is on disk.
    const writerLost = (error: Error) => {
      runSync(Effect.logError("the SQLite writer stopped; stopping the service", Cause.fail(error)))
      process.exit(70)
    }
    const writer = yield* Effect.acquireRelease(
      Effect.promise(() => startSqliteWriter(file, writerLost)),
      (writer) => Effect.promise(writer.close)
    )
    return { writer: writer as Writer | undefined }
  })
}) {}
