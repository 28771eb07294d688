import { assert, describe, it } from "@effect/vitest"
import { Either } from "effect"
import fc from "fast-check"
import { canonical, exactCanonical, isObject, javaString, MAX_DEPTH, parse } from "../../src/cashfree/LosslessJson.js"
import { eventFixtures } from "../support/Fixtures.js"

const ok = (text: string) => Either.getOrThrow(parse(text))

describe("LosslessJson", () => {
  it("keeps number lexemes and key order, including integer-like keys", () => {
    const doc = ok(`{"b":1.50,"2":12345678901234567890,"a":[1,2.0]}`)
    assert.isTrue(isObject(doc))
    if (isObject(doc)) assert.deepStrictEqual([...doc.fields.keys()], ["b", "2", "a"])
    assert.strictEqual(javaString(doc), "{b=1.5, 2=12345678901234567890, a=[1, 2.0]}")
  })

  it("lets a repeated key keep its first place and take the last value, as Jackson does", () => {
    assert.strictEqual(javaString(ok(`{"a":1,"b":2,"a":3}`)), "{a=3, b=2}")
  })

  it("treats __proto__ and constructor as ordinary keys", () => {
    const doc = ok(`{"__proto__":{"x":1},"constructor":2}`)
    assert.strictEqual(canonical(doc), `{"__proto__":{"x":1},"constructor":2}`)
    assert.strictEqual(({} as Record<string, unknown>).x, undefined)
  })

  it("renders Java doubles", () => {
    const cases: ReadonlyArray<readonly [string, string]> = [
      ["1e2", "100.0"], ["1e7", "1.0E7"], ["0.0001", "1.0E-4"], ["0.001", "0.001"], ["-2.5e-10", "-2.5E-10"],
      ["170.00", "170.0"], ["-0.0", "-0.0"], ["-0", "0"], ["1.2345e10", "1.2345E10"], ["1e400", "Infinity"]
    ]
    for (const [lexeme, java] of cases) assert.strictEqual(javaString(ok(lexeme)), java, lexeme)
  })

  it("gives the same canonical text for the same content however it is laid out", () => {
    const a = ok(`{"signature":"x","b":{"d":1,"c":[true,null]},"a":"\\u00e9"}`)
    const b = ok(`{\n  "a": "é",\n  "b": { "c": [true, null], "d": 1 },\n  "signature": "y"\n}`)
    assert.strictEqual(canonical(a, "signature"), canonical(b, "signature"))
    assert.strictEqual(canonical(a, "signature"), `{"a":"é","b":{"c":[true,null],"d":1}}`)
  })

  it("refuses malformed input with a position", () => {
    for (const text of ["", "{", "{\"a\":}", "[1,]", "{\"a\":1}x", "01", "\"\\x\"", "{\"a\" 1}", "tru", "\"a\nb\""]) {
      assert.isTrue(Either.isLeft(parse(text)), JSON.stringify(text))
    }
    const error = Either.flip(parse(`{"a":1,}`))
    assert.deepStrictEqual(Either.map(error, (e) => e.position), Either.right(7))
  })

  it(`refuses nesting deeper than ${MAX_DEPTH} without overflowing the stack`, () => {
    assert.isTrue(Either.isRight(parse("[".repeat(MAX_DEPTH) + "]".repeat(MAX_DEPTH))))
    assert.isTrue(Either.isLeft(parse("[".repeat(10_000) + "]".repeat(10_000))))
  })

  it("gives the lossless canonical text from JSON.parse when the body is compact, and nothing otherwise", () => {
    const values = fc.oneof(fc.jsonValue({ maxDepth: 6 }), fc.jsonValue({ maxDepth: 4, stringUnit: "binary" }))
    fc.assert(fc.property(values, (value) => {
      const text = JSON.stringify(value)
      assert.strictEqual(exactCanonical(JSON.parse(text), text, "signature"), canonical(ok(text), "signature"))
    }), { numRuns: 1000 })
    for (const text of [`{"__proto__":{"x":1},"constructor":2,"signature":"s"}`, `{"b":[{"signature":1}],"a":-1.5e-7}`]) {
      assert.strictEqual(exactCanonical(JSON.parse(text), text, "signature"), canonical(ok(text), "signature"), text)
    }
    const escapes = `{"b":"\\"\\\\\\n\\u0001\\ud800","a":"\u00e9\ud83d\ude00"}`
    assert.strictEqual(exactCanonical(JSON.parse(escapes), escapes), canonical(ok(escapes)))
    for (const { text } of eventFixtures) {
      const compact = JSON.stringify(JSON.parse(text))
      assert.strictEqual(exactCanonical(JSON.parse(compact), compact, "signature"), canonical(ok(compact), "signature"))
    }
    const lossy = [`{"a": 1}`, `{"a":1,"a":2}`, `{"a":1.0}`, `{"a":12345678901234567890}`, `{"a":-0}`, `{"a":"\\u00e9"}`, `{"a":1e2}`]
    for (const text of lossy) assert.strictEqual(exactCanonical(JSON.parse(text), text), undefined, text)
    const deep = "[".repeat(MAX_DEPTH + 1) + "]".repeat(MAX_DEPTH + 1)
    assert.strictEqual(exactCanonical(JSON.parse(deep), deep), undefined)
  })
})
