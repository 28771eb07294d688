import { hash, randomFillSync } from "node:crypto"
import type { IncomingHttpHeaders } from "node:http"
import { DateTime, Duration, Effect, Either, FiberRef, FiberRefs, LogLevel, Runtime } from "effect"
import { canonical, exactCanonical, lexemeAt, parse, type LosslessJson } from "../cashfree/LosslessJson.js"
import { hasHeaderSignature, verifyHeader, verifyLegacy, type Verified } from "../cashfree/Signature.js"
import { Settings } from "../config/ConfigFile.js"
import { decodeBody } from "../domain/Decode.js"
import { eventTimeIso, isKnownEventType } from "../domain/Event.js"
import { Ingest } from "../ingest/Ingest.js"
import type { EventRow, Stored } from "../store/Events.js"
import { storable } from "../store/Storable.js"
import { json, problem, type Reply } from "./Reply.js"

export interface WebhookRequest {
  readonly headers: IncomingHttpHeaders
  readonly body: Buffer
}

const utf8 = new TextDecoder("utf-8", { fatal: true })

const header = (headers: IncomingHttpHeaders, name: string): string | undefined => {
  const value = headers[name]
  return Array.isArray(value) ? value[0] : value
}

// Random bytes drawn 4 KiB at a time: one call into the CSPRNG per 512 ids instead of one per id.
const entropy = Buffer.alloc(4096)
let drawn = entropy.length

const randomHex8 = () => {
  if (drawn === entropy.length) {
    randomFillSync(entropy)
    drawn = 0
  }
  drawn += 8
  return entropy.toString("hex", drawn - 8, drawn)
}

/** Sortable by arrival, unique without coordination between instances (64 random bits after the time). */
export const newEventId = () => `evt_${Date.now().toString(36).padStart(9, "0")}${randomHex8()}`

/**
 * The event's time (see eventTimeIso), then the SHA-256 of the canonical body minus `signature`: a retry signed
 * again with a new timestamp is still a duplicate. Both parts come from the body alone, and the time is read the
 * same way whether or not the rest of the event decodes, so a retry of a quarantined event that a later release
 * accepts keeps its key. The time first keeps new keys together at the end of the unique index instead of on a
 * random page each; a time that does not read as one gives an empty prefix.
 */
export const dedupeKey = (eventTime: string | undefined, canonicalBody: string) =>
  `${eventTime ?? ""}|${hash("sha256", canonicalBody, "hex")}`

// A number's text where JSON.parse's result is exact (see Body): re-serialising it gives the lexeme back.
const numberAt = (value: unknown, path: ReadonlyArray<string | number>): string | undefined => {
  let here = value
  for (const step of path) here = typeof here === "object" && here !== null ? (here as Record<string, unknown>)[step] : undefined
  return typeof here === "number" ? String(here) : undefined
}

/**
 * A body as read: `parsed` is JSON.parse's result. `canonical` is set when that result is exact (see
 * exactCanonical); otherwise `document`, the lossless parse, is, and it holds what JSON.parse rounded or dropped.
 */
type Body =
  | { readonly text: string; readonly parsed: unknown; readonly canonical: string; readonly document?: undefined }
  | { readonly text: string; readonly parsed: unknown; readonly canonical?: undefined; readonly document: LosslessJson }

const NOT_JSON = Symbol("NOT_JSON")

const parseJson = (text: string): unknown => {
  try {
    return JSON.parse(text)
  } catch {
    return NOT_JSON
  }
}

const malformed = (detail: string) => problem(400, "malformed-body", "Malformed body", detail)

const unauthorized = (detail: string) => problem(401, "invalid-signature", "Invalid signature", detail)

// Under the legacy scheme the signature is inside the body: a body that cannot be read has no signature to check.
const unreadableBody = (legacy: boolean, detail: string) =>
  legacy
    ? unauthorized(`No signature to check: ${detail}, so it carries no in-body signature`)
    : malformed(`${detail[0]!.toUpperCase()}${detail.slice(1)}`)

// A copy for a query column; the raw body keeps the original.
const textField = (value: unknown): string | null => (typeof value === "string" ? storable(value) : null)

export class Webhook extends Effect.Service<Webhook>()("kyc-relay/Webhook", {
  effect: Effect.gen(function*() {
    const { config } = yield* Settings
    const ingest = yield* Ingest
    const { secrets, signature: setting, timestamp_tolerance: tolerance } = config.cashfree

    /** Verifies first, then reads: an unauthenticated request never reaches the store. */
    const authenticate = (request: WebhookRequest, now: number): Either.Either<
      { readonly verified: Verified; readonly body: Body },
      Reply
    > => {
      const signed = { signature: header(request.headers, "x-webhook-signature"), timestamp: header(request.headers, "x-webhook-timestamp") }
      const useHeader = setting === "header" || (setting === "auto" && hasHeaderSignature(signed))
      const headerCheck = useHeader ? verifyHeader(secrets, signed, request.body) : undefined
      if (headerCheck !== undefined && Either.isLeft(headerCheck)) return Either.left(unauthorized(headerCheck.left.message))
      // Checked after the signature, so the answer says nothing about timestamps to someone without the secret.
      if (headerCheck !== undefined && tolerance !== undefined && !(Math.abs(now - Number(signed.timestamp)) <= Duration.toMillis(tolerance))) {
        return Either.left(unauthorized(`x-webhook-timestamp is more than ${Duration.format(tolerance)} away from now`))
      }
      const legacy = headerCheck === undefined
      let text: string
      try {
        text = utf8.decode(request.body)
      } catch {
        return Either.left(unreadableBody(legacy, "the body is not valid UTF-8"))
      }
      const parsed = parseJson(text)
      // The legacy scheme's signing string needs the lossless parse whatever the body looks like.
      const exact = parsed === NOT_JSON || legacy ? undefined : exactCanonical(parsed, text, "signature")
      let body: Body
      if (exact !== undefined) body = { text, parsed, canonical: exact }
      else {
        const document = parse(text)
        if (Either.isLeft(document)) return Either.left(unreadableBody(legacy, `the body is not valid JSON: ${document.left.message}`))
        if (parsed === NOT_JSON) return Either.left(unreadableBody(legacy, "the body is not valid JSON"))
        body = { text, parsed, document: document.right }
      }
      const verified = headerCheck ?? verifyLegacy(secrets, body.document!)
      return Either.isLeft(verified)
        ? Either.left(unauthorized(verified.left.message))
        : Either.right({ verified: verified.right, body })
    }

    // The service's clock rather than Date.now(), so that tests can move time.
    const clock = yield* Effect.clock
    const runtime = yield* Effect.runtime<never>()
    const runFork = Runtime.runFork(runtime)
    const debug = FiberRefs.getOrDefault(runtime.fiberRefs, FiberRef.currentMinimumLogLevel).ordinal <= LogLevel.Debug.ordinal
    const log = (effect: Effect.Effect<void>) => runFork(effect.pipe(Effect.annotateLogs({ service: "Webhook" })))

    /**
     * A plain function, not an effect: verifying, parsing and decoding are synchronous, and the runtime's
     * per-request cost showed in the bench. Only the logs go through the runtime.
     */
    const handle = async (request: WebhookRequest): Promise<Reply> => {
      const now = clock.unsafeCurrentTimeMillis()
      const authenticated = authenticate(request, now)
      if (Either.isLeft(authenticated)) {
        log(Effect.logWarning("webhook rejected").pipe(
          Effect.annotateLogs({ status: authenticated.left.status, reason: (authenticated.left.body as { type: string }).type })
        ))
        return authenticated.left
      }
      const { verified, body } = authenticated.right
      if (typeof body.parsed !== "object" || body.parsed === null || Array.isArray(body.parsed)) {
        return malformed("The body must be a JSON object")
      }
      const { text } = body
      const raw = body.parsed as Record<string, unknown>
      const data = typeof raw.data === "object" && raw.data !== null && !Array.isArray(raw.data) ? raw.data as Record<string, unknown> : {}
      const decoded = decodeBody(
        raw,
        body.document === undefined ? (path) => numberAt(raw, path) : (path) => lexemeAt(body.document, path)
      )

      const eventTime = Either.isRight(decoded) ? DateTime.formatIso(decoded.right.event_time) : textField(raw.event_time)
      const row: EventRow = {
        id: newEventId(),
        dedupe_key: dedupeKey(
          Either.isRight(decoded) ? eventTime! : eventTimeIso(raw.event_time),
          body.canonical ?? canonical(body.document, "signature")
        ),
        status: Either.isRight(decoded) ? "accepted" : "quarantined",
        event_type: textField(raw.event_type),
        verification_id: textField(data.verification_id),
        event_status: textField(data.status) ?? textField(data.form_status),
        event_sub_status: textField(data.sub_status),
        event_time: eventTime,
        received_at: new Date(now).toISOString(),
        scheme: verified.scheme,
        secret_index: verified.secretIndex,
        webhook_attempt: header(request.headers, "x-webhook-attempt") ?? null,
        webhook_version: header(request.headers, "x-webhook-version") ?? null,
        webhook_timestamp: header(request.headers, "x-webhook-timestamp") ?? null,
        idempotency_key: header(request.headers, "x-idempotency-key") ?? null,
        body: text,
        problems: Either.isLeft(decoded) ? JSON.stringify(decoded.left) : null
      }

      let stored: Stored
      try {
        stored = await ingest.store(row, Either.getOrUndefined(decoded))
      } catch {
        return problem(503, "store-unavailable", "Store unavailable", "The event could not be stored; retry later", {
          headers: { "retry-after": "5" }
        })
      }
      const { eventId, duplicate } = stored
      if (debug) {
        log(Effect.logDebug("webhook stored").pipe(
          Effect.annotateLogs({ event_id: eventId, status: duplicate ? "duplicate" : row.status, verification_id: row.verification_id, secret: verified.secretIndex })
        ))
      }
      if (duplicate) return json(200, { status: "duplicate", event_id: eventId })
      if (Either.isRight(decoded)) return json(200, { status: "accepted", event_id: eventId })
      // Other Secure ID products share the webhook URL: their events are kept, and told apart from a decode failure.
      return {
        ...json(200, { status: "quarantined", event_id: eventId, errors: decoded.left }),
        reason: isKnownEventType(raw.event_type) ? "invalid-fields" : "unknown-event-type"
      }
    }

    return { handle } as const
  }),
  dependencies: [Ingest.Default]
}) {}
