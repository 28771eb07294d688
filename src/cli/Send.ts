import * as FileSystem from "@effect/platform/FileSystem"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import { Data, Effect, Either, type Redacted } from "effect"
import { fileURLToPath } from "node:url"
import { parse } from "../cashfree/LosslessJson.js"
import { signHeader, signLegacy, type Scheme } from "../cashfree/Signature.js"
import { EVENT_TYPES, isKnownEventType } from "../domain/Event.js"

export class SendFailed extends Data.TaggedError("SendFailed")<{ readonly message: string }> {}

const SAMPLES = fileURLToPath(new URL("../cashfree/samples/", import.meta.url))

/** A bundled sample for an event type, or the text of a JSON file the user names. */
export const loadPayload = (target: string) =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const file = isKnownEventType(target) ? `${SAMPLES}${target}.json` : target
    if (!isKnownEventType(target) && !target.endsWith(".json")) {
      return yield* new SendFailed({
        message: `"${target}" is neither an event type nor a .json file; event types: ${EVENT_TYPES.join(", ")}`
      })
    }
    return yield* fs.readFileString(file).pipe(
      Effect.mapError(() => new SendFailed({ message: `cannot read ${file}` }))
    )
  })

/** Rewrites the in-body `signature` so the legacy scheme verifies with `secret`; the rest of the text is kept. */
export const withLegacySignature = (text: string, secret: Redacted.Redacted<string>) =>
  parse(text).pipe(
    Either.mapLeft(() => new SendFailed({ message: "the payload is not valid JSON" })),
    Either.flatMap((document) =>
      Either.fromOption(
        signLegacy(secret, document),
        () => new SendFailed({ message: "the legacy scheme needs a `data` object in the payload" })
      )
    ),
    Either.map((signature) => {
      const field = /("signature"\s*:\s*)"(?:[^"\\]|\\.)*"/
      return field.test(text)
        ? text.replace(field, (_, key: string) => `${key}${JSON.stringify(signature)}`)
        : text.replace(/^\s*\{/, `{"signature":${JSON.stringify(signature)},`)
    })
  )

export interface Signed {
  readonly body: string
  readonly headers: Record<string, string>
}

export const sign = (text: string, secret: Redacted.Redacted<string>, scheme: Scheme, now: number) => {
  if (scheme === "body") return Either.map(withLegacySignature(text, secret), (body): Signed => ({ body, headers: {} }))
  const timestamp = String(now)
  return Either.right<Signed>({
    body: text,
    headers: {
      "x-webhook-timestamp": timestamp,
      "x-webhook-signature": signHeader(secret, timestamp, text),
      "x-webhook-version": "2025-01-01",
      "x-webhook-attempt": "1"
    }
  })
}

export const post = (url: string, signed: Signed) =>
  Effect.gen(function*() {
    const client = yield* HttpClient.HttpClient
    const response = yield* HttpClientRequest.post(url).pipe(
      HttpClientRequest.setHeaders(signed.headers),
      HttpClientRequest.bodyText(signed.body, "application/json"),
      client.execute,
      Effect.mapError((error) => new SendFailed({ message: `cannot reach ${url}: ${error.message}` }))
    )
    const text = yield* response.text.pipe(Effect.orElseSucceed(() => ""))
    return { status: response.status, text }
  })
