import { Either, Schema } from "effect"
import { lexemeAt, parse } from "../cashfree/LosslessJson.js"
import { CashfreeEvent, isKnownEventType } from "./Event.js"
import { issuesOf, pathText } from "./Issues.js"

/** A field that failed to decode, as `data.reference_id`; never its value, which may be personal data. */
export interface FieldProblem {
  readonly path: string
  readonly message: string
}

/** The text of the number at a path of the body as received, or undefined if there is no number there. */
export type Lexeme = (path: ReadonlyArray<string | number>) => string | undefined

const decodeEvent = Schema.decodeUnknownEither(CashfreeEvent, { errors: "all" })

const INTEGER = /^-?\d+$/

/**
 * Cashfree ids must arrive as integer lexemes: JSON.parse would turn 4503599627370497.5 into the integer
 * 4503599627370498, a different id, before any Schema could see the fraction.
 */
const inexactIds = (data: Record<string, unknown>, lexeme: Lexeme) => {
  const details = data.verification_details
  const paths: Array<ReadonlyArray<string | number>> = [["data", "reference_id"], ["data", "user_reference_id"]]
  if (Array.isArray(details)) details.forEach((_, i) => paths.push(["data", "verification_details", i, "reference_id"]))
  return paths.filter((path) => {
    const text = lexeme(path)
    return text !== undefined && !INTEGER.test(text)
  }).map((path) => path.join("."))
}

/**
 * An event from a body's `JSON.parse` result, with the checks every way into the store makes (ingest and
 * replay): a known event type, ids exact as written, then the Schema.
 */
export const decodeBody = (body: Record<string, unknown>, lexeme: Lexeme): Either.Either<CashfreeEvent, ReadonlyArray<FieldProblem>> => {
  if (!isKnownEventType(body.event_type)) {
    return Either.left([{
      path: "event_type",
      message: typeof body.event_type === "string" ? "not an event type kyc-relay knows" : "expected a string"
    }])
  }
  const data = typeof body.data === "object" && body.data !== null && !Array.isArray(body.data) ? body.data as Record<string, unknown> : {}
  const inexact = inexactIds(data, lexeme)
  if (inexact.length > 0) return Either.left(inexact.map((path) => ({ path, message: "expected an integer, written without a fraction or exponent" })))
  return Either.mapLeft(decodeEvent(body), (error) => issuesOf(error).map((issue) => ({ path: pathText(issue.path), message: issue.message })))
}

/** A stored body, read as it was received (see decodeBody). */
export const decodeStoredBody = (text: string): Either.Either<CashfreeEvent, ReadonlyArray<FieldProblem>> => {
  const document = parse(text)
  if (Either.isLeft(document)) return Either.left([{ path: "", message: "not valid JSON" }])
  const body = JSON.parse(text) as unknown
  if (typeof body !== "object" || body === null || Array.isArray(body)) return Either.left([{ path: "", message: "not a JSON object" }])
  return decodeBody(body as Record<string, unknown>, (path) => lexemeAt(document.right, path))
}
