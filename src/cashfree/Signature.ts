import { createHmac, timingSafeEqual } from "node:crypto"
import { Data, Either, Option, Redacted } from "effect"
import { isObject, legacySigningString, type LosslessJson } from "./LosslessJson.js"

/** `header`: x-webhook-signature over timestamp + raw body. `body`: the legacy in-body `signature` over `data`. */
export type Scheme = "header" | "body"
export type SchemeSetting = Scheme | "auto"

export class SignatureInvalid extends Data.TaggedError("SignatureInvalid")<{
  readonly reason: "missing" | "mismatch" | "scheme_not_allowed"
  readonly message: string
}> {}

export interface Verified {
  readonly scheme: Scheme
  /** Position in `cashfree.secrets` of the secret that matched (0 = current). */
  readonly secretIndex: number
}

const hmac = (secret: Redacted.Redacted<string>, ...parts: ReadonlyArray<string | Uint8Array>): string => {
  const mac = createHmac("sha256", Redacted.value(secret))
  for (const part of parts) mac.update(part)
  return mac.digest("base64")
}

/** Compares every secret's digest so the time taken does not reveal which one (if any) matched. */
const matchSecret = (
  secrets: ReadonlyArray<Redacted.Redacted<string>>,
  received: string,
  digest: (secret: Redacted.Redacted<string>) => string
): Option.Option<number> => {
  const receivedBytes = Buffer.from(received)
  let matched = -1
  secrets.forEach((secret, index) => {
    const expected = Buffer.from(digest(secret))
    const equal = expected.length === receivedBytes.length && timingSafeEqual(expected, receivedBytes)
    if (equal && matched === -1) matched = index
  })
  return matched === -1 ? Option.none() : Option.some(matched)
}

export const signHeader = (secret: Redacted.Redacted<string>, timestamp: string, body: Uint8Array | string): string =>
  hmac(secret, timestamp, body)

export const signLegacy = (secret: Redacted.Redacted<string>, document: LosslessJson): Option.Option<string> => {
  const data = isObject(document) ? document.fields.get("data") : undefined
  return data !== undefined && isObject(data) ? Option.some(hmac(secret, legacySigningString(data))) : Option.none()
}

export interface HeaderSignature {
  readonly signature: string | undefined
  readonly timestamp: string | undefined
}

/** True when the request carries the header scheme; Cashfree's current deliveries always do. */
export const hasHeaderSignature = (headers: HeaderSignature) =>
  headers.signature !== undefined || headers.timestamp !== undefined

export const verifyHeader = (
  secrets: ReadonlyArray<Redacted.Redacted<string>>,
  headers: HeaderSignature,
  body: Uint8Array
): Either.Either<Verified, SignatureInvalid> => {
  const { signature, timestamp } = headers
  if (signature === undefined || timestamp === undefined) {
    const absent = signature === undefined ? "x-webhook-signature" : "x-webhook-timestamp"
    return Either.left(new SignatureInvalid({ reason: "missing", message: `The ${absent} header is missing` }))
  }
  return Option.match(matchSecret(secrets, signature, (secret) => hmac(secret, timestamp, body)), {
    onNone: () =>
      Either.left(
        new SignatureInvalid({
          reason: "mismatch",
          message: "x-webhook-signature does not match the timestamp and body for any configured secret"
        })
      ),
    onSome: (secretIndex) => Either.right({ scheme: "header", secretIndex })
  })
}

export const verifyLegacy = (
  secrets: ReadonlyArray<Redacted.Redacted<string>>,
  document: LosslessJson
): Either.Either<Verified, SignatureInvalid> => {
  const signature = isObject(document) ? document.fields.get("signature") : undefined
  if (typeof signature !== "string" || signature.length === 0) {
    return Either.left(new SignatureInvalid({ reason: "missing", message: "The request carries no signature" }))
  }
  const data = isObject(document) ? document.fields.get("data") : undefined
  if (data === undefined || !isObject(data)) {
    return Either.left(
      new SignatureInvalid({ reason: "mismatch", message: "The in-body signature needs a `data` object to verify" })
    )
  }
  const signingString = legacySigningString(data)
  return Option.match(matchSecret(secrets, signature, (secret) => hmac(secret, signingString)), {
    onNone: () =>
      Either.left(
        new SignatureInvalid({
          reason: "mismatch",
          message: "The in-body signature does not match `data` for any configured secret"
        })
      ),
    onSome: (secretIndex) => Either.right({ scheme: "body", secretIndex })
  })
}
