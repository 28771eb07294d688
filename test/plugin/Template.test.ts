import { assert, describe, it } from "@effect/vitest"
import { Either, Schema } from "effect"
import { minimisedData, render, TemplateText, viewOf } from "../../src/plugin/Template.js"
import { contextFor, decodeFixture, PERSONAL_VALUES } from "../support/Conformance.js"

describe("templates", () => {
  const event = decodeFixture("KYC_LINK_EXPIRED")

  it("leaves personal fields out unless the instance opts in, field by field", () => {
    const view = viewOf(event, contextFor(), [])
    const text = JSON.stringify(view)
    for (const value of PERSONAL_VALUES) assert.notInclude(text, value)
    assert.deepStrictEqual(Object.keys(minimisedData(event, ["email"])).filter((k) => ["name", "phone", "email"].includes(k)), ["email"])
  })

  it("renders values and escapes them for the channel", () => {
    const view = { ...viewOf(event, contextFor({ params: { note: "<b>&\"'" } }), []) }
    const template = "{{event_type}} {{data.verification_id}} {{params.note}}"
    assert.strictEqual(render(template, view, "html"), "KYC_LINK_EXPIRED kyclink_ananya_0001 &lt;b&gt;&amp;&quot;&#39;")
    assert.strictEqual(render(template, view, "slack"), "KYC_LINK_EXPIRED kyclink_ananya_0001 &lt;b&gt;&amp;\"'")
    assert.strictEqual(render("/c/{{params.note}}", view, "url"), "/c/%3Cb%3E%26%22'")
    assert.strictEqual(render(template, view, "text"), "KYC_LINK_EXPIRED kyclink_ananya_0001 <b>&\"'")
    assert.strictEqual(render("{{status}} {{sub_status}} {{stale}}", view, "text"), "EXPIRED  false")
  })

  it("refuses a template that does not parse", () => {
    assert.isTrue(Either.isLeft(Schema.decodeUnknownEither(TemplateText)("{{#section}} never closed")))
    assert.isTrue(Either.isRight(Schema.decodeUnknownEither(TemplateText)("{{#stale}}late{{/stale}}")))
  })
})
