import type { HttpClient } from "@effect/platform"
import type { Effect, Scope } from "effect"
import { Schema } from "effect"
import type { CashfreeEvent } from "../domain/Event.js"
import type { Lifecycle } from "../domain/Lifecycle.js"

/** The remote call failed but trying again later can succeed (timeouts, 5xx, connection reset). */
export class Retryable extends Schema.TaggedError<Retryable>()("Retryable", {
  message: Schema.String
}) {}

/** Retrying cannot help (4xx other than 408/429, invalid recipient, rejected payload). */
export class Permanent extends Schema.TaggedError<Permanent>()("Permanent", {
  message: Schema.String
}) {}

/** The remote asked us to slow down; the host waits at least `retryAfter` before the next attempt. */
export class RateLimited extends Schema.TaggedError<RateLimited>()("RateLimited", {
  message: Schema.String,
  retryAfter: Schema.DurationFromMillis
}) {}

export type PluginError = Retryable | Permanent | RateLimited
export const PluginError = Schema.Union(Retryable, Permanent, RateLimited)

/** What a plugin knows about the delivery it is asked to make. */
export interface DeliveryContext {
  readonly deliveryId: string
  readonly eventId: string
  /** Instance name from the `plugins:` section, e.g. "ops-webhook". */
  readonly instance: string
  /** 1 on the first attempt. */
  readonly attempt: number
  /** Stable across retries and replays of this (event, instance) pair; forward it where the remote supports one. */
  readonly idempotencyKey: string
  /** The route's `params:` block, as written in the YAML. */
  readonly params: Readonly<Record<string, unknown>>
  /** The verification's latest known state, and whether this event is older than it. */
  readonly lifecycle: Lifecycle
}

export interface DeliveryReceipt {
  /** Message id, contact id…, kept in the attempt log. */
  readonly remoteId?: string
}

export interface PluginInstance {
  readonly handle: (event: CashfreeEvent, ctx: DeliveryContext) => Effect.Effect<DeliveryReceipt, PluginError>
}

/** What the host gives a plugin's constructor: an HTTP client and a Scope for resources it opens. */
export type PluginEnv = HttpClient.HttpClient | Scope.Scope

/**
 * A plugin: its settings Schema (decoded from the instance's YAML block, without the host's keys) and a
 * constructor. `make` may acquire resources (connections, files) in the Scope; they are released on shutdown.
 */
export interface Plugin<Name extends string = string, Settings = any, Encoded = any> {
  readonly name: Name
  readonly settings: Schema.Schema<Settings, Encoded>
  readonly make: (settings: Settings, instance: string) => Effect.Effect<PluginInstance, never, PluginEnv>
}

export const definePlugin = <const Name extends string, Settings, Encoded>(plugin: Plugin<Name, Settings, Encoded>) =>
  plugin
