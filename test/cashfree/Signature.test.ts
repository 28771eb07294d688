import { assert, describe, it } from "@effect/vitest"
import { Either, Option, Redacted } from "effect"
import { isObject, legacySigningString, parse } from "../../src/cashfree/LosslessJson.js"
import { signHeader, signLegacy, verifyHeader, verifyLegacy } from "../../src/cashfree/Signature.js"
import { eventFixtures, FIXTURE_SECRET, signingVectors } from "../support/Fixtures.js"

const secret = Redacted.make
const document = (text: string) => Either.getOrThrow(parse(text))
const reason = (result: Either.Either<unknown, { readonly reason: string }>) =>
  Either.isLeft(result) ? result.left.reason : "verified"

describe("header scheme", () => {
  const vectors = signingVectors.filter((v) => v.scheme === "header")

  it("has vectors to check", () => assert.isAtLeast(vectors.length, 4))

  for (const v of vectors) {
    it(`${v.id}: signs and verifies`, () => {
      assert.strictEqual(signHeader(secret(v.secret), v.timestamp!, Buffer.from(v.body)), v.expected_signature)
      const verified = verifyHeader([secret(v.secret)], { signature: v.expected_signature, timestamp: v.timestamp! }, Buffer.from(v.body))
      assert.deepStrictEqual(verified, Either.right({ scheme: "header" as const, secretIndex: 0 }))
    })

    it(`${v.id}: rejects a changed timestamp, body, secret and a trailing newline`, () => {
      const body = Buffer.from(v.body)
      const sig = { signature: v.expected_signature, timestamp: v.timestamp! }
      const rejected = (result: Either.Either<unknown, { readonly reason: string }>) =>
        assert.strictEqual(reason(result), "mismatch")
      rejected(verifyHeader([secret(v.secret)], { ...sig, timestamp: String(Number(v.timestamp) + 1) }, body))
      rejected(verifyHeader([secret(v.secret)], sig, Buffer.concat([body, Buffer.from("\n")])))
      rejected(verifyHeader([secret(`${v.secret}x`)], sig, body))
      const tampered = Buffer.from(body)
      tampered[Math.floor(tampered.length / 2)]! ^= 1
      rejected(verifyHeader([secret(v.secret)], sig, tampered))
    })
  }

  it("tries every configured secret and reports which matched", () => {
    const v = vectors[0]!
    const verified = verifyHeader(
      [secret("new-secret"), secret(v.secret)],
      { signature: v.expected_signature, timestamp: v.timestamp! },
      Buffer.from(v.body)
    )
    assert.deepStrictEqual(verified, Either.right({ scheme: "header" as const, secretIndex: 1 }))
  })

  it("names the missing header", () => {
    const result = verifyHeader([secret("s")], { signature: "abc", timestamp: undefined }, Buffer.from("{}"))
    assert.deepStrictEqual(Either.map(Either.flip(result), (e) => [e.reason, e.message]), Either.right(["missing", "The x-webhook-timestamp header is missing"]))
  })
})

describe("legacy in-body scheme", () => {
  const vectors = signingVectors.filter((v) => v.scheme === "legacy-body")

  it("has vectors to check", () => assert.isAtLeast(vectors.length, 4))

  for (const v of vectors) {
    it(`${v.id}: builds the exact Java string and signature`, () => {
      const doc = document(v.body)
      assert.isTrue(isObject(doc))
      const data = isObject(doc) ? doc.fields.get("data") : undefined
      assert.isTrue(data !== undefined && isObject(data))
      if (data !== undefined && isObject(data)) assert.strictEqual(legacySigningString(data), v.canonical_string)
      assert.deepStrictEqual(signLegacy(secret(v.secret), doc), Option.some(v.expected_signature))
    })
  }

  for (const f of eventFixtures) {
    it(`${f.eventType}: the fixture's in-body signature verifies`, () => {
      assert.deepStrictEqual(
        verifyLegacy([secret("other"), secret(FIXTURE_SECRET)], document(f.text)),
        Either.right({ scheme: "body" as const, secretIndex: 1 })
      )
    })
  }

  it("rejects a changed value in data and a missing signature", () => {
    const f = eventFixtures.find((x) => x.eventType === "VKYC_USER_LINK_GENERATED")!
    const changed = f.text.replace("10449", "10450")
    assert.strictEqual(reason(verifyLegacy([secret(FIXTURE_SECRET)], document(changed))), "mismatch")
    const unsigned = f.text.replace(/"signature": "[^"]*"/, "\"signature\": \"\"")
    assert.strictEqual(reason(verifyLegacy([secret(FIXTURE_SECRET)], document(unsigned))), "missing")
  })
})
