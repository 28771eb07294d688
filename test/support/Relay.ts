import { PgClient } from "@effect/sql-pg"
import * as NodeContext from "@effect/platform-node/NodeContext"
import { Context, Effect, Layer, Redacted } from "effect"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { ServeLive } from "../../src/App.js"
import { Dispatcher } from "../../src/dispatch/Dispatcher.js"
import { Replay } from "../../src/dispatch/Replay.js"
import { signHeader } from "../../src/cashfree/Signature.js"
import { parseConfigText, Settings } from "../../src/config/ConfigFile.js"
import { ServerAddress } from "../../src/http/Server.js"
import { Deliveries } from "../../src/store/Deliveries.js"
import { Events } from "../../src/store/Events.js"

/** The PostgreSQL the suite may create scratch databases in. */
export const PG_ADMIN_URL = process.env.KYC_RELAY_TEST_PG_URL ?? "postgres://postgres@127.0.0.1:5432/test"

/** A SQLite file in a fresh temporary directory, removed with the scope. */
export const tempSqlite = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "kyc-relay-test-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
).pipe(Effect.map((dir) => `sqlite:${join(dir, "relay.db")}`))

/** A new, empty PostgreSQL database, dropped with the scope. */
export const tempPostgres = Effect.gen(function*() {
  const name = `kyc_relay_test_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 8)}`
  const admin = PgClient.layer({ url: Redacted.make(PG_ADMIN_URL), maxConnections: 1 })
  const run = (statement: string) =>
    Effect.flatMap(PgClient.PgClient, (sql) => sql.unsafe(statement)).pipe(Effect.provide(admin), Effect.orDie)
  yield* Effect.acquireRelease(
    run(`CREATE DATABASE ${name}`),
    () => run(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
  )
  return PG_ADMIN_URL.replace(/\/[^/]*$/, `/${name}`)
})

export const STORES = [
  { name: "sqlite", make: tempSqlite },
  { name: "postgres", make: tempPostgres }
] as const

export interface RelayOptions {
  readonly store: string
  readonly secrets?: ReadonlyArray<string>
  readonly signature?: "auto" | "header" | "body"
  readonly maxBodyBytes?: number
  /** More lines for the server: and cashfree: sections, indented by two spaces. */
  readonly serverLines?: ReadonlyArray<string>
  readonly cashfreeLines?: ReadonlyArray<string>
  /** More YAML appended as is: plugins, routes, retry, dispatch sections. */
  readonly extra?: string
}

export const relayConfigYaml = (options: RelayOptions) =>
  [
    "server:",
    "  host: 127.0.0.1",
    "  port: 0",
    ...(options.maxBodyBytes === undefined ? [] : [`  max_body_bytes: ${options.maxBodyBytes}`]),
    ...(options.serverLines ?? []),
    "cashfree:",
    "  secrets:",
    ...(options.secrets ?? ["test-secret"]).map((secret) => `    - ${JSON.stringify(secret)}`),
    `  signature: ${options.signature ?? "auto"}`,
    ...(options.cashfreeLines ?? []),
    "store:",
    `  url: ${JSON.stringify(options.store)}`,
    options.extra ?? ""
  ].join("\n")

export interface Relay {
  readonly webhookUrl: string
  readonly baseUrl: string
  readonly events: Events
  readonly deliveries: Deliveries
  readonly replay: Replay
  readonly dispatcher: Dispatcher
}

/** The real service on an ephemeral port, stopped with the scope. */
export const startRelay = (options: RelayOptions) =>
  Effect.gen(function*() {
    const loaded = yield* parseConfigText(relayConfigYaml(options), "test.yaml")
    const settings = Layer.succeed(Settings, loaded)
    const context = yield* Layer.build(
      Replay.Default.pipe(Layer.provideMerge(ServeLive), Layer.provide(settings), Layer.provide(NodeContext.layer))
    ).pipe(Effect.orDie)
    const address = Context.get(context, ServerAddress)
    return {
      baseUrl: address.url,
      webhookUrl: `${address.url}${loaded.config.server.path}`,
      events: Context.get(context, Events),
      deliveries: Context.get(context, Deliveries),
      replay: Context.get(context, Replay),
      dispatcher: Context.get(context, Dispatcher)
    } satisfies Relay
  })

export interface Posted {
  readonly status: number
  readonly contentType: string | null
  readonly body: any
}

export const post = (url: string, body: string | Uint8Array, headers: Record<string, string> = {}) =>
  Effect.promise(async (): Promise<Posted> => {
    const response = await fetch(url, { method: "POST", body, headers: { "content-type": "application/json", ...headers } })
    const text = await response.text()
    let parsed: unknown = text
    try {
      parsed = JSON.parse(text)
    } catch {
      // not JSON; the raw text is returned
    }
    return { status: response.status, contentType: response.headers.get("content-type"), body: parsed }
  })

/** Headers Cashfree sends with the current (header) signature scheme. */
export const signedHeaders = (secret: string, body: string | Uint8Array, timestamp = String(Date.now())) => ({
  "x-webhook-timestamp": timestamp,
  "x-webhook-signature": signHeader(Redacted.make(secret), timestamp, body),
  "x-webhook-version": "2025-01-01",
  "x-webhook-attempt": "1"
})
