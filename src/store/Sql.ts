import { Migrator } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { SqliteClient } from "@effect/sql-sqlite-node"
import { Context, Data, Duration, Effect, Layer, Schedule } from "effect"
import { mkdirSync } from "node:fs"
import { dirname } from "node:path"
import Pg from "pg"
import { createEvents } from "./migrations/0001_events.js"
import { createDeliveries } from "./migrations/0002_deliveries.js"
import { prefixDedupeKeys } from "./migrations/0003_dedupe_time.js"
import { readDedupeTimes } from "./migrations/0004_dedupe_time_read.js"

export type StoreKind = "sqlite" | "postgres"

export const storeKind = (url: string): StoreKind => (url.startsWith("sqlite:") ? "sqlite" : "postgres")

/** The database file of a SQLite store URL; undefined for PostgreSQL and for in-memory SQLite, which a second connection cannot share. */
export const sqliteFile = (url: string): string | undefined => {
  if (storeKind(url) !== "sqlite") return undefined
  const filename = url.slice("sqlite:".length)
  return filename === ":memory:" || filename.startsWith("file::memory:") ? undefined : filename
}

/** The store URL with any password removed, for logs and `check-config`. */
export const describeStore = (url: string): string =>
  storeKind(url) === "sqlite" ? url : url.replace(/\/\/([^:@/]*)(:[^@/]*)?@/, (_, user) => `//${user}${user ? ":***@" : ""}`)

const sqliteLayer = (filename: string) =>
  Layer.effectDiscard(
    Effect.gen(function*() {
      const sql = yield* SqliteClient.SqliteClient
      // WAL is on already; FULL makes every commit reach the disk before we answer 200.
      yield* sql`PRAGMA synchronous = FULL`
      yield* sql`PRAGMA busy_timeout = 5000`
    })
  ).pipe(
    Layer.provideMerge(SqliteClient.layer({ filename })),
    Layer.provide(Layer.effectDiscard(Effect.sync(() => mkdirSync(dirname(filename), { recursive: true }))))
  )

/**
 * The `pg` pool behind the SQL client on PostgreSQL (undefined on SQLite): ingest's usual transaction runs on it
 * directly (see PgIngest), as SQLite's runs on the writer thread, without the SQL client's per-statement effects.
 */
export class PgPool extends Context.Tag("kyc-relay/PgPool")<PgPool, { readonly pool: Pg.Pool | undefined }>() {}

const CONNECT_TIMEOUT = Duration.seconds(5)

const openPool = (url: string) =>
  Effect.acquireRelease(
    Effect.gen(function*() {
      const pool = new Pg.Pool({ connectionString: url, max: 10, application_name: "kyc-relay" })
      // An idle connection that drops is replaced on the next checkout; without a listener it would end the process.
      pool.on("error", () => {})
      // Only the first connection has a time limit: later checkouts wait for a connection to come free, as before.
      yield* Effect.tryPromise({ try: () => pool.query("SELECT 1"), catch: (cause) => cause }).pipe(
        Effect.timeoutFail({
          duration: CONNECT_TIMEOUT,
          onTimeout: () => new Error(`no connection within ${Duration.format(CONNECT_TIMEOUT)}`)
        }),
        Effect.tapError(() => Effect.sync(() => void pool.end()))
      )
      return pool
    }),
    // A finalizer is uninterruptible: without `interruptible` a connection still checked out would hold the timeout off.
    (pool) => Effect.promise(() => pool.end()).pipe(Effect.interruptible, Effect.timeoutOption(1000))
  )

const postgresLayer = (url: string) =>
  Layer.unwrapScoped(Effect.map(openPool(url), (pool) =>
    PgClient.layerFromPool({ acquire: Effect.succeed(pool) }).pipe(
      Layer.merge(Layer.succeed(PgPool, { pool }))
    )))

// Instances starting together on a new PostgreSQL database race to create the migrations table;
// the loser's next attempt finds it and waits on its lock instead.
const runMigrations = Migrator.make({})({
  table: "kyc_relay_migrations",
  loader: Migrator.fromRecord({
    "0001_events": createEvents,
    "0002_deliveries": createDeliveries,
    "0003_dedupe_time": prefixDedupeKeys,
    "0004_dedupe_time_read": readDedupeTimes
  })
}).pipe(Effect.retry({ times: 3, schedule: Schedule.spaced("200 millis") }))

/** The store could not be opened or migrated at start-up. */
export class StoreUnavailable extends Data.TaggedError("StoreUnavailable")<{
  readonly store: string
  readonly cause: unknown
}> {
  override get message() {
    const reason = this.cause instanceof Error ? this.cause.message : String(this.cause)
    return `cannot open the store ${this.store} (check store.url): ${reason}`
  }
}

/** The generic `SqlClient` for `store.url`, as it is: not migrated. */
export const clientLayer = (url: string) =>
  storeKind(url) === "sqlite"
    ? sqliteLayer(url.slice("sqlite:".length)).pipe(Layer.merge(Layer.succeed(PgPool, { pool: undefined })))
    : postgresLayer(url)

/** The generic `SqlClient` for `store.url`, migrated to the latest schema before anything else uses it. */
export const layer = (url: string) =>
  Layer.effectDiscard(runMigrations).pipe(
    Layer.provideMerge(clientLayer(url)),
    Layer.mapError((cause) => new StoreUnavailable({ store: describeStore(url), cause }))
  )
