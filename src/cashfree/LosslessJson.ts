import { Data, Either } from "effect"

/**
 * A JSON value that keeps what `JSON.parse` throws away: the exact lexeme of every number and the
 * order in which object keys appeared. The legacy signature scheme (Java `String.valueOf` of a
 * Jackson map) depends on both, and the dedupe key must not round big integers.
 */
export type LosslessJson =
  | null
  | boolean
  | string
  | JsonNumber
  | ReadonlyArray<LosslessJson>
  | JsonObject

export interface JsonNumber {
  readonly _tag: "Number"
  readonly lexeme: string
}

/** Keys keep first-seen order; a repeated key keeps its first position and takes the last value (Jackson's LinkedHashMap). */
export interface JsonObject {
  readonly _tag: "Object"
  readonly fields: ReadonlyMap<string, LosslessJson>
}

export class JsonSyntaxError extends Data.TaggedError("JsonSyntaxError")<{
  readonly message: string
  readonly position: number
}> {}

/** Deeper documents are refused: no Cashfree payload nests more than three levels. */
export const MAX_DEPTH = 64

const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y
const WHITESPACE = /[ \t\n\r]*/y

export const isObject = (value: LosslessJson): value is JsonObject =>
  value !== null && typeof value === "object" && !Array.isArray(value) && (value as JsonObject)._tag === "Object"

export const isNumber = (value: LosslessJson | undefined): value is JsonNumber =>
  value !== undefined && value !== null && typeof value === "object" && !Array.isArray(value) &&
  (value as JsonNumber)._tag === "Number"

export const parse = (text: string): Either.Either<LosslessJson, JsonSyntaxError> => {
  let pos = 0
  const fail = (message: string): never => {
    throw new JsonSyntaxError({ message: `${message} at position ${pos}`, position: pos })
  }
  const skip = () => {
    const c = text.charCodeAt(pos)
    if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) return
    WHITESPACE.lastIndex = pos
    WHITESPACE.exec(text)
    pos = WHITESPACE.lastIndex
  }
  const expect = (literal: string) => {
    if (!text.startsWith(literal, pos)) fail(`Expected ${literal}`)
    pos += literal.length
  }
  const string = (): string => {
    const start = pos
    // Most strings have no escapes and no control characters: those are sliced, the others left to JSON.parse.
    let plain = true
    pos++
    while (pos < text.length) {
      const c = text.charCodeAt(pos)
      if (c === 0x22) {
        pos++
        if (plain) return text.slice(start + 1, pos - 1)
        try {
          return JSON.parse(text.slice(start, pos)) as string
        } catch {
          pos = start
          return fail("Invalid string")
        }
      }
      if (c === 0x5c || c < 0x20) plain = false
      pos += c === 0x5c ? 2 : 1
    }
    return fail("Unterminated string")
  }
  const value = (depth: number): LosslessJson => {
    if (depth > MAX_DEPTH) fail(`Nesting deeper than ${MAX_DEPTH}`)
    skip()
    const c = text[pos]
    switch (c) {
      case "{": {
        pos++
        const fields = new Map<string, LosslessJson>()
        skip()
        if (text[pos] === "}") {
          pos++
          return { _tag: "Object", fields }
        }
        for (;;) {
          skip()
          if (text[pos] !== "\"") fail("Expected a key")
          const key = string()
          skip()
          expect(":")
          fields.set(key, value(depth + 1))
          skip()
          if (text[pos] === ",") {
            pos++
            continue
          }
          expect("}")
          return { _tag: "Object", fields }
        }
      }
      case "[": {
        pos++
        const items: Array<LosslessJson> = []
        skip()
        if (text[pos] === "]") {
          pos++
          return items
        }
        for (;;) {
          items.push(value(depth + 1))
          skip()
          if (text[pos] === ",") {
            pos++
            continue
          }
          expect("]")
          return items
        }
      }
      case "\"":
        return string()
      case "t":
        expect("true")
        return true
      case "f":
        expect("false")
        return false
      case "n":
        expect("null")
        return null
      default: {
        NUMBER.lastIndex = pos
        const match = NUMBER.exec(text)
        if (match === null || match[0].length === 0) return fail("Unexpected character")
        pos = NUMBER.lastIndex
        return { _tag: "Number", lexeme: match[0] }
      }
    }
  }
  try {
    const result = value(0)
    skip()
    if (pos !== text.length) fail("Unexpected data after the JSON value")
    return Either.right(result)
  } catch (error) {
    if (error instanceof JsonSyntaxError) return Either.left(error)
    throw error
  }
}

const compareCodeUnits = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0)

/**
 * Deterministic text for hashing: object keys sorted by UTF-16 code unit at every level, no
 * whitespace, strings re-escaped by `JSON.stringify`, numbers exactly as received.
 */
export const canonical = (value: LosslessJson, omitTopLevel?: string): string => {
  if (value === null || typeof value === "boolean") return String(value)
  if (typeof value === "string") return JSON.stringify(value)
  if (Array.isArray(value)) return `[${value.map((item) => canonical(item)).join(",")}]`
  if (!isObject(value)) return (value as JsonNumber).lexeme
  const keys = [...value.fields.keys()].filter((key) => key !== omitTopLevel).sort(compareCodeUnits)
  return `{${keys.map((key) => `${JSON.stringify(key)}:${canonical(value.fields.get(key)!)}`).join(",")}}`
}

/**
 * `canonical` for a `JSON.parse` result, or undefined when `text` holds more than that result shows: it is
 * exact only when serialising the result gives back `text` itself (compact, no repeated key, every number in
 * its shortest form), which is how Cashfree sends its bodies. It saves the lossless parse on the hot path.
 */
export const exactCanonical = (parsed: unknown, text: string, omitTopLevel?: string): string | undefined => {
  const write = (value: unknown, depth: number): string | undefined => {
    if (typeof value === "string") return quote(value)
    if (value === null || typeof value !== "object") return String(value)
    if (depth >= MAX_DEPTH) return undefined
    let out = ""
    if (Array.isArray(value)) {
      for (let i = 0; i < value.length; i++) {
        const part = write(value[i], depth + 1)
        if (part === undefined) return undefined
        out += i === 0 ? part : `,${part}`
      }
      return `[${out}]`
    }
    // The default sort compares UTF-16 code units, as compareCodeUnits does.
    const keys = Object.keys(value).sort()
    for (const key of keys) {
      if (depth === 0 && key === omitTopLevel) continue
      const part = write((value as Record<string, unknown>)[key], depth + 1)
      if (part === undefined) return undefined
      out += `${out === "" ? "" : ","}${quote(key)}:${part}`
    }
    return `{${out}}`
  }
  const result = write(parsed, 0)
  return result !== undefined && JSON.stringify(parsed) === text ? result : undefined
}

const ESCAPED = /[\u0000-\u001f"\\\ud800-\udfff]/

/** JSON.stringify of a string, without the call for the usual string that needs no escape. */
const quote = (value: string) => (ESCAPED.test(value) ? JSON.stringify(value) : `"${value}"`)

/** The text of the number at `path`, or undefined if there is no number there. */
export const lexemeAt = (value: LosslessJson, path: ReadonlyArray<string | number>): string | undefined => {
  let here: LosslessJson | undefined = value
  for (const step of path) {
    if (typeof step === "number") here = Array.isArray(here) ? here[step] : undefined
    else here = here !== undefined && isObject(here) ? here.fields.get(step) : undefined
  }
  return isNumber(here) ? here.lexeme : undefined
}

/** Java's `Double.toString`: plain for 1e-3 <= |x| < 1e7, otherwise `d.dddE±n`; always one fractional digit. */
const javaDouble = (x: number): string => {
  if (Number.isNaN(x)) return "NaN"
  if (!Number.isFinite(x)) return x > 0 ? "Infinity" : "-Infinity"
  if (x === 0) return Object.is(x, -0) ? "-0.0" : "0.0"
  const abs = Math.abs(x)
  if (abs >= 1e-3 && abs < 1e7) {
    const plain = String(x)
    return plain.includes(".") ? plain : `${plain}.0`
  }
  const [mantissa, exponent] = x.toExponential().split("e") as [string, string]
  return `${mantissa.includes(".") ? mantissa : `${mantissa}.0`}E${exponent.replace("+", "")}`
}

const javaNumber = (lexeme: string): string =>
  /^-?\d+$/.test(lexeme) ? BigInt(lexeme).toString() : javaDouble(Number(lexeme))

/** `String.valueOf` of the value Jackson builds for this JSON (LinkedHashMap, ArrayList, Integer/Long/BigInteger, Double). */
export const javaString = (value: LosslessJson): string => {
  if (value === null || typeof value === "boolean") return String(value)
  if (typeof value === "string") return value
  if (Array.isArray(value)) return `[${value.map(javaString).join(", ")}]`
  if (!isObject(value)) return javaNumber((value as JsonNumber).lexeme)
  return `{${[...value.fields].map(([key, item]) => `${key}=${javaString(item)}`).join(", ")}}`
}

/** The legacy scheme's HMAC input: the values of `data`, its keys sorted as Java's TreeMap sorts them, concatenated. */
export const legacySigningString = (data: JsonObject): string =>
  [...data.fields.keys()].sort(compareCodeUnits).map((key) => javaString(data.fields.get(key)!)).join("")
